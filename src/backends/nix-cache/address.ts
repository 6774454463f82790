import type { SchemeUrl, StoreAddress } from '../url-forms.js'
import { type CacheUrl, parseCacheUrl } from './cache-url.js'

/** A Nix binary cache named as a store (`nix+file:///dir`, `http(s)://…`, `nix+http(s)://…`). */
export interface NixCacheAddress extends StoreAddress {
  kind: 'nix-cache'
  cache: CacheUrl
}

/** The registry's form for binary cache URLs: parsed without loading the backend. */
export function nixCacheForm({ url }: SchemeUrl): NixCacheAddress {
  return { kind: 'nix-cache', cache: parseCacheUrl(url) }
}
