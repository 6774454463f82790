import { UsageError } from '../../errors.js'
import type { SchemeUrl, StoreAddress } from '../url-forms.js'

/** `s3://BUCKET[/PREFIX]?endpoint=URL&region=R`: where a store's blobs live in an S3 bucket. */
export interface S3Address extends StoreAddress {
  kind: 's3'
  bucket: string
  /** Key prefix, without leading or trailing slash ('' for the bucket's root). */
  prefix: string
  /** Base URL of the S3 server; requests are path-style (`ENDPOINT/BUCKET/KEY`), as S3-compatible servers want. */
  endpoint: string
  region: string
}

const KNOWN = new Set(['endpoint', 'region'])
/** S3's own rule for bucket names (3-63 lower-case letters, digits, dots, hyphens). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/

/** Checks an `s3://` URL; loads nothing. Without `endpoint`, AWS's own endpoint of the region. */
export function s3Form({ url, u }: SchemeUrl): S3Address {
  const bucket = u.hostname
  if (!BUCKET.test(bucket)) throw new UsageError(`store URL ${JSON.stringify(url)}: want s3://BUCKET[/PREFIX] with a valid bucket name`)
  if (u.port || u.username || u.password || u.hash) throw new UsageError(`store URL ${JSON.stringify(url)}: an s3:// URL names a bucket, not a server (the server goes in ?endpoint=URL)`)
  for (const k of u.searchParams.keys()) {
    if (!KNOWN.has(k)) throw new UsageError(`store URL ${JSON.stringify(url)}: unknown setting ${JSON.stringify(k)} (known: endpoint, region)`)
  }
  const prefix = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '')
  const region = u.searchParams.get('region') || process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1'
  let endpoint = u.searchParams.get('endpoint') ?? `https://s3.${region}.amazonaws.com`
  let e: URL
  try {
    e = new URL(endpoint)
  } catch {
    throw new UsageError(`store URL ${JSON.stringify(url)}: endpoint ${JSON.stringify(endpoint)} is not a URL`)
  }
  if ((e.protocol !== 'http:' && e.protocol !== 'https:') || e.search || e.hash || e.username) {
    throw new UsageError(`store URL ${JSON.stringify(url)}: endpoint must be http://HOST[:PORT] or https://HOST[:PORT]`)
  }
  endpoint = e.origin + e.pathname.replace(/\/+$/, '')
  return { kind: 's3', bucket, prefix, endpoint, region }
}
