import fs from 'node:fs'

/** Flips the bits of `mask` in the byte at `at` of `file`, in place (a stored object gone bad on disk). */
export function flipByte(file: string, at: number, mask = 0x10): void {
  const fd = fs.openSync(file, 'r+')
  try {
    const b = Buffer.alloc(1)
    if (fs.readSync(fd, b, 0, 1, at) !== 1) throw new Error(`${file} has no byte at ${at}`)
    b[0]! ^= mask
    fs.writeSync(fd, b, 0, 1, at)
  } finally {
    fs.closeSync(fd)
  }
}
