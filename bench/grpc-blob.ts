/**
 * Raw gRPC blob throughput, timed in-process with the project's own
 * client: `store.blobs.put(<async iterable of 1 MiB chunks>)`, then
 * `store.blobs.open(digest)` drained to the end (the client checks the
 * BLAKE3 of what it reads, as every read path does).
 *
 *   node --import tsx bench/grpc-blob.ts STORE_URL BLOB_FILE
 *
 * The blob is read into memory, every page touched, before anything is timed. Prints one JSON
 * line: {"bytes", "putMs", "readMs", "digest"}. BENCH_OPEN_STORE may name
 * another build's open-store.js (bench/run.ts passes its dist/ snapshot,
 * so client and daemon are the same build); the default is ../src.
 */
import fs from 'node:fs'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'

type OpenStore = typeof import('../src/backends/open-store.js').openStore

const CHUNK = 1 << 20

async function main(): Promise<void> {
  const [url, file] = process.argv.slice(2)
  if (!url || !file) throw new Error('usage: grpc-blob.ts STORE_URL BLOB_FILE')
  const mod = process.env.BENCH_OPEN_STORE ? pathToFileURL(process.env.BENCH_OPEN_STORE).href : '../src/backends/open-store.js'
  const openStore = ((await import(mod)) as { openStore: OpenStore }).openStore
  const data = fs.readFileSync(file)
  // The first user-space touch of each fresh page costs far more than the
  // copy itself on some virtual machines (shadow paging: ~1.5 ms per MiB
  // here), so touch every page once before timing: the figure is then the
  // transfer's, not the bench's own input buffer faulting in.
  let touched = 0
  for (let i = 0; i < data.length; i += 4096) touched ^= data[i]!
  if (touched === -1) console.error('unreachable')
  const store = await openStore({ url })
  try {
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < data.length; i += CHUNK) yield data.subarray(i, i + CHUNK)
    }
    const t0 = performance.now()
    const info = await store.blobs.put(chunks())
    const putMs = performance.now() - t0
    if (info.size !== data.length) throw new Error(`put stored ${info.size} bytes, want ${data.length}`)

    const t1 = performance.now()
    // Lent (each piece valid until the next is asked for): the count is all that is kept.
    const src = await store.blobs.open(info.digest, { lend: true })
    if (!src) throw new Error('the blob just put is not there')
    let read = 0
    for await (const c of src) read += c.length
    const readMs = performance.now() - t1
    if (read !== data.length) throw new Error(`read ${read} bytes, want ${data.length}`)
    console.log(JSON.stringify({ bytes: data.length, putMs, readMs, digest: Buffer.from(info.digest).toString('hex') }))
  } finally {
    await store.close()
  }
}

await main()
