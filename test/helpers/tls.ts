import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

/** Why `openssl` cannot make the test certificates, or undefined when it can. */
export function opensslMissing(): string | undefined {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' })
  return r.error || r.status !== 0 ? 'openssl not found on PATH (apt-get install openssl)' : undefined
}

/** What makeTlsFiles writes, each a file path. */
export interface TlsFiles {
  /** The CA that signed `cert`: what a client trusts (--tls-ca, grpcio's root certificates, Nix's ssl-cert-file). */
  ca: string
  cert: string
  key: string
  /** Another CA, which signed nothing here: trusting it alone must fail. */
  otherCa: string
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`)
}

/**
 * A private CA and a server certificate it signed for localhost,
 * 127.0.0.1 and ::1 (P-256 keys: quick to make), plus an unrelated CA,
 * in `dir` (which the caller removes with its temp root).
 */
export function makeTlsFiles(dir: string): TlsFiles {
  fs.mkdirSync(dir, { recursive: true })
  const days = ['-days', '2']
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  for (const name of ['ca', 'other-ca']) openssl(['req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, ...days, '-subj', `/CN=tvix-store test ${name}`], dir)
  openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], dir)
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n')
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', ...days, '-extfile', 'san.ext'], dir)
  const at = (f: string) => path.join(dir, f)
  return { ca: at('ca.pem'), cert: at('server.pem'), key: at('server.key'), otherCa: at('other-ca.pem') }
}
