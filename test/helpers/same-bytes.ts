import assert from 'node:assert/strict'

/** Equal bytes; a readable diff for small outputs, sizes and the first difference for big ones. */
export function assertSameBytes(ours: Buffer, theirs: Buffer, what: string): void {
  if (ours.equals(theirs)) return
  if (ours.length < 64 * 1024 && theirs.length < 64 * 1024) assert.equal(ours.toString(), theirs.toString(), what)
  let i = 0
  while (i < ours.length && i < theirs.length && ours[i] === theirs[i]) i++
  assert.fail(`${what}: ${ours.length} vs ${theirs.length} bytes, first difference at byte ${i}`)
}
