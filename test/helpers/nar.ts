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
