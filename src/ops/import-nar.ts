import { ingestNar } from '../store/nar/ingest.js'
import { validateStorePathName } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { type Imported, registerSource, withStage } from './register.js'

/** Ingests a NAR stream (e.g. from `nix-store --dump`) as the source path `name`. */
export async function importNar(store: Store, src: AsyncIterable<Uint8Array>, name: string): Promise<Imported> {
  validateStorePathName(name)
  return withStage(store, async (stage, store) => {
    const ingested = await ingestNar(src, stage)
    return registerSource(store, ingested, stage, name)
  })
}
