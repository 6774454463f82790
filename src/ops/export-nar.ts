import type { RenderOptions } from '../store/nar/render.js'
import { renderNarAhead } from '../store/nar/render-ahead.js'
import type { Store } from '../store/store.js'
import { resolvePath } from './resolve.js'

/** The NAR of a store path (or of a path inside one), as `nix-store --dump` writes it. `lend`: see RenderOptions. */
export async function exportNar(store: Store, arg: string, opts: Pick<RenderOptions, 'lend'> = {}): Promise<AsyncIterable<Uint8Array>> {
  const { node } = await resolvePath(store, arg)
  return renderNarAhead(node, store, opts)
}
