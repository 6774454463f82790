import { UsageError } from '../errors.js'
import { type BackendModule, SERVICE_KINDS, type ServiceKind } from './backend.js'
import { nixCacheForm } from './nix-cache/address.js'
import { refuseNixScheme, refuseNixWord } from './nix-urls.js'
import { postgresForm } from './postgres/address.js'
import { s3Form } from './s3/address.js'
import { type SchemeUrl, type StoreAddress, grpcForm, localForm, memoryForm } from './url-forms.js'

/*
 * The backends by URL scheme, as tvix's `from_addr` / snix's composition
 * registry: each names the services it can serve, checks its URL form
 * without loading anything, and imports its folder only when a URL uses
 * it (start-up stays light). Adding a backend is a folder whose index.ts
 * exports `backend` (a BackendModule) and one line in BACKENDS.
 */

interface BackendEntry<A extends StoreAddress = StoreAddress> {
  /** URL schemes naming this backend, each shown in messages with a sample of its form. */
  schemes: Record<string, string>
  serves: readonly ServiceKind[]
  /** Said when a URL of this backend is asked for a service it does not serve. */
  unservedNote?: string
  /** Checks a URL of one of `schemes` and takes what `open` needs; loads nothing. */
  form(p: SchemeUrl): A
  load(): Promise<{ backend: BackendModule<A> }>
}

/** Ties a form to its backend's address type, then forgets it: the table holds entries of every kind. */
const entry = <A extends StoreAddress>(e: BackendEntry<A>) => e as unknown as BackendEntry

const BACKENDS: Record<string, BackendEntry> = {
  local: entry({ schemes: { file: 'file:///PATH' }, serves: SERVICE_KINDS, form: localForm, load: () => import('./local/index.js') }),
  memory: entry({ schemes: { memory: 'memory://' }, serves: SERVICE_KINDS, form: memoryForm, load: () => import('./memory/index.js') }),
  grpc: entry({
    schemes: { 'grpc+http': 'grpc+http://HOST:PORT', 'grpc+https': 'grpc+https://HOST:PORT', 'grpc+unix': 'grpc+unix:///SOCKET' },
    serves: SERVICE_KINDS,
    form: grpcForm,
    load: () => import('./grpc/index.js'),
  }),
  'nix-cache': entry({
    schemes: { 'nix+file': 'nix+file:///DIR', http: 'http://HOST[:PORT][/PATH]', https: 'https://HOST[:PORT][/PATH]', 'nix+http': 'nix+http://…', 'nix+https': 'nix+https://…' },
    serves: SERVICE_KINDS,
    form: nixCacheForm,
    load: () => import('./nix-cache/index.js'),
  }),
  s3: entry({
    schemes: { s3: 's3://BUCKET[/PREFIX]?endpoint=URL&region=R' },
    serves: ['blobs'],
    unservedNote: "s3:// holds a tvix store's blobs, not a Nix binary cache",
    form: s3Form,
    load: () => import('./s3/index.js'),
  }),
  postgres: entry({
    schemes: { postgres: 'postgres://USER@HOST[:PORT]/DB', postgresql: 'postgresql://…' },
    serves: ['directories', 'pathInfos'],
    unservedNote: 'postgres:// holds Directories and PathInfos; blobs go to s3:// or a local folder',
    form: postgresForm,
    load: () => import('./postgres/index.js'),
  }),
}

export { type BackendModule, type ClientSecurity, type OpenContext, type OpenedServices, SERVICE_KINDS, type ServiceKind } from './backend.js'

/** Every form the registry knows, for messages: "a path, file:///PATH, memory://, …". */
export function knownForms(): string {
  return ['a path', ...Object.values(BACKENDS).flatMap((b) => Object.values(b.schemes))].join(', ')
}

function backendOfScheme(scheme: string): BackendEntry | undefined {
  return Object.values(BACKENDS).find((b) => Object.hasOwn(b.schemes, scheme))
}

/**
 * Parses a store URL into its backend's address: a plain path, or a URL
 * whose scheme a registered backend serves. Nix's store URLs and unknown
 * schemes are refused naming what is known.
 */
export function parseStoreUrl(url: string): StoreAddress {
  if (url === '') throw new UsageError('empty store URL')
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase()
  if (!scheme) {
    // A folder, for the local backend.
    refuseNixWord(url)
    return localForm(url)
  }
  const backend = backendOfScheme(scheme)
  refuseNixScheme(url, scheme, backend !== undefined, knownForms())
  if (!backend) throw new UsageError(`unknown store URL scheme ${JSON.stringify(scheme + ':')} (known: ${knownForms()})`)
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new UsageError(`invalid store URL ${JSON.stringify(url)}`)
  }
  return backend.form({ url, scheme, u })
}

/** The backend an address names: what it serves, and its module (imported now, on first use). */
export function backendOf(addr: StoreAddress): { serves: readonly ServiceKind[]; unservedNote?: string; load(): Promise<BackendModule> } {
  const backend = Object.hasOwn(BACKENDS, addr.kind) ? BACKENDS[addr.kind] : undefined
  if (!backend) throw new Error(`no backend registered as ${JSON.stringify(addr.kind)}`)
  return { serves: backend.serves, unservedNote: backend.unservedNote, load: async () => (await backend.load()).backend }
}
