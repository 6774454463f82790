import { UnsupportedError, UsageError } from '../errors.js'

/*
 * Nix's own store URLs, refused with one line saying what they name
 * rather than taken for folder names or unknown schemes.
 */

/** Nix's own stores, by the bare word (`daemon`, `local?root=/x`) or the scheme of their URL (Nix 2.8). */
const NIX_WORDS: Record<string, string> = { auto: "Nix's default store", daemon: 'the Nix daemon', local: 'a Nix local store' }
const NIX_SCHEMES: Record<string, string> = {
  unix: 'the Nix daemon on a socket',
  ssh: 'a Nix store over SSH',
  'ssh-ng': 'a Nix store over SSH',
  dummy: "Nix's dummy store",
}
/** Schemes of Nix binary caches no backend may serve (`file://` is one only with parameters: plain `file:///abs` is our local folder, `nix+file://` the cache). */
const BINARY_CACHES = new Set(['http', 'https', 's3'])

function nixStoreRefusal(url: string, what: string, hint = ''): UsageError {
  return new UsageError(
    `${JSON.stringify(url)} is a Nix store URL (${what}); tvix-store cannot open Nix's own stores: ` +
      'give a tvix store (a folder, grpc+http://HOST:PORT, grpc+unix:///SOCKET), and import from a Nix store with `copy --closure` (--nix-root DIR for a chroot store)' +
      hint,
  )
}

/**
 * A scheme-less URL is a folder, unless it is one of Nix's words or
 * carries parameters: refused rather than created as a folder named
 * `daemon` or `local?root=/x`. Such a folder is still reachable as ./NAME.
 */
export function refuseNixWord(url: string): void {
  if (/^\.{0,2}\//.test(url)) return
  const word = url.split('?')[0]!
  const hint = ` (for a folder of that name, write ${JSON.stringify('./' + url)})`
  if (Object.hasOwn(NIX_WORDS, word)) throw nixStoreRefusal(url, NIX_WORDS[word]!, hint)
  if (url.includes('?')) throw new UsageError(`store URL ${JSON.stringify(url)} has parameters, and tvix-store takes none${hint}`)
}

/**
 * Nix store schemes, and the binary cache schemes no registered backend
 * serves (`registered`): a backend registered for one of them (S3 for
 * blobs, say) takes precedence over the refusal.
 */
export function refuseNixScheme(url: string, scheme: string, registered: boolean, known: string): void {
  if (Object.hasOwn(NIX_SCHEMES, scheme)) throw nixStoreRefusal(url, NIX_SCHEMES[scheme]!)
  // Nix takes every file:// URL for a binary cache; ours without parameters stays the local folder it always was.
  if (scheme === 'file' && url.includes('?')) {
    throw new UsageError(`${JSON.stringify(url)} is a Nix binary cache URL, and file:// names a tvix store folder here: write the cache as ${JSON.stringify('nix+' + url)}`)
  }
  if (BINARY_CACHES.has(scheme) && !registered) {
    throw new UnsupportedError(`${JSON.stringify(url)} is a Nix binary cache URL that tvix-store cannot open: give a tvix store or a binary cache (${known})`)
  }
}
