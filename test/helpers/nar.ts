/**
 * Builds NARs token by token, including malformed ones, for reader tests.
 * Independent of the encoder under test.
 */
export function str(b: string | Uint8Array, opts: { pad?: number[] } = {}): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : Buffer.from(b)
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(data.length))
  const padLen = (8 - (data.length % 8)) % 8
  const pad = Buffer.from(opts.pad ?? new Array(padLen).fill(0))
  return Buffer.concat([len, data, pad])
}

export const toks = (...t: Array<string | Buffer>) => Buffer.concat(t.map((x) => (typeof x === 'string' ? str(x) : x)))

export const regular = (contents: string, exec = false) =>
  toks('(', 'type', 'regular', ...(exec ? ['executable', ''] : []), 'contents', str(contents), ')')
export const symlink = (target: string) => toks('(', 'type', 'symlink', 'target', str(target), ')')
export const entry = (name: string | Buffer, node: Buffer) => toks('entry', '(', 'name', str(name), 'node', node, ')')
export const directory = (...entries: Buffer[]) => toks('(', 'type', 'directory', ...entries, ')')
export const nar = (root: Buffer) => Buffer.concat([str('nix-archive-1'), root])

/**
 * The NAR of a chain of `depth` directories, each holding one entry `d`,
 * the last one a file, streamed token by token (independent of the
 * encoder under test): the opening tokens of every level, the file, then
 * the closing tokens of every level.
 */
export async function* deepChainNar(depth: number): AsyncGenerator<Buffer> {
  yield str('nix-archive-1')
  const open = Buffer.concat(['(', 'type', 'directory', 'entry', '(', 'name', 'd', 'node'].map((t) => str(t)))
  for (let i = 0; i < depth; i++) yield open
  yield Buffer.concat(['(', 'type', 'regular', 'contents', 'at the bottom\n', ')'].map((t) => str(t)))
  const close = Buffer.concat([str(')'), str(')')])
  for (let i = 0; i < depth; i++) yield close
}
