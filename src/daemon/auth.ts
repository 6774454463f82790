import { Metadata, ServerInterceptingCall, type ServerInterceptor, status as Status } from '@grpc/grpc-js'
import { UsageError } from '../errors.js'
import { SecretSet } from '../util/secret-set.js'
import type { Log } from './calls.js'

/** What a token allows: `read` every read RPC, `write` the Puts too (and every read). */
export type Rights = 'read' | 'write'

/** The RPCs that change the store; every other RPC (tvix's, our batch ReadBlobs) reads. */
const WRITE_METHODS = new Set([
  '/tvix.castore.v1.BlobService/Put',
  '/tvix.castore.v1.DirectoryService/Put',
  '/tvix.store.v1.PathInfoService/Put',
  '/tvix_store.ext.v1.BatchBlobService/PutBlobs',
])
/** Open to anyone: load balancers probe health, and reflection describes only the protocol (no data). */
const OPEN_SERVICES = ['/grpc.health.v1.Health/', '/grpc.reflection.v1.ServerReflection/', '/grpc.reflection.v1alpha.ServerReflection/']

/** A token: RFC 6750's b64token (what fits an `authorization: Bearer` header), long enough not to be guessed. */
const TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/
const MIN_TOKEN_CHARS = 16

/**
 * Parses an `--auth-file`: one `read TOKEN` or `write TOKEN` per line,
 * blank lines and `#` comments ignored. A bad line is named by its number,
 * never echoed: it may hold a secret.
 */
export function parseTokenFile(text: string, file: string): SecretSet<Rights> {
  const tokens = new SecretSet<Rights>()
  const lineOf = new SecretSet<number>()
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const where = `--auth-file ${file}: line ${i + 1}`
    const m = /^(read|write)\s+(\S+)$/.exec(line)
    if (!m) throw new UsageError(`${where} is not "read TOKEN" or "write TOKEN"`)
    const token = m[2]!
    if (!TOKEN.test(token) || token.length < MIN_TOKEN_CHARS) {
      throw new UsageError(`${where}: a token has at least ${MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 - . _ ~ + / (e.g. openssl rand -hex 32)`)
    }
    const earlier = lineOf.find(token)
    if (earlier !== undefined) throw new UsageError(`${where} repeats the token of line ${earlier}`)
    lineOf.add(token, i + 1)
    tokens.add(token, m[1] as Rights)
  })
  if (tokens.size === 0) throw new UsageError(`--auth-file ${file} holds no tokens (want "read TOKEN" or "write TOKEN" lines)`)
  return tokens
}

/** The token of an `authorization: Bearer TOKEN` header, or undefined for anything else. */
function bearerToken(metadata: Metadata): string | undefined {
  const header = metadata.get('authorization')[0]
  const m = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header) : null
  return m?.[1]
}

/** Why a call may not go on (its status and details), or undefined if it may. */
export function refusal(tokens: SecretSet<Rights>, path: string, metadata: Metadata): { code: Status; details: string } | undefined {
  if (OPEN_SERVICES.some((s) => path.startsWith(s))) return undefined
  const token = bearerToken(metadata)
  if (token === undefined) return { code: Status.UNAUTHENTICATED, details: 'this daemon needs a token (authorization: Bearer TOKEN)' }
  const rights = tokens.find(token)
  if (rights === undefined) return { code: Status.UNAUTHENTICATED, details: 'the token is not valid for this daemon' }
  if (rights === 'read' && WRITE_METHODS.has(path)) return { code: Status.PERMISSION_DENIED, details: 'the token may only read' }
  return undefined
}

/**
 * Checks every call's token before its handler sees it (or any message of
 * it). Refusals are logged at most once a minute, with how many there
 * were, and never with the token.
 */
export function authInterceptor(tokens: SecretSet<Rights>, log: Log): ServerInterceptor {
  let lastLog = 0
  let unlogged = 0
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, pass) => {
            const refused = refusal(tokens, method.path, metadata)
            if (!refused) return pass(metadata)
            unlogged++
            if (Date.now() - lastLog >= 60_000) {
              lastLog = Date.now()
              log(`refused ${unlogged === 1 ? 'a call' : `${unlogged} calls`} (the last ${method.path} from ${call.getPeer()}): ${refused.details} (${Status[refused.code]})`)
              unlogged = 0
            }
            call.sendStatus({ ...refused, metadata: new Metadata() })
          },
        }),
    })
}
