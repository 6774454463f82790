import { createReadStream, createWriteStream } from 'node:fs'
import fs from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'

/**
 * A plain HTTP server over a folder, as people serve a Nix cache written
 * with `nix copy --to file://DIR` (nginx, S3 website): GET and HEAD of its
 * files, PUT into it when `writable` (as Nix's http:// writer expects).
 * Faults for the tests of a cache's clients: `faults.status` answers the
 * next requests whose path (and `method`, if set) matches with that status;
 * `faults.dropAfter` cuts the next matching response after that many body
 * bytes.
 */
export interface FileCacheServer {
  url: string
  /** Every request seen, as `METHOD /path`. */
  requests: string[]
  /** The headers of each request, in the order of `requests`. */
  headers: http.IncomingHttpHeaders[]
  faults: { match?: RegExp; method?: string; status?: number; times?: number; dropAfter?: number }
  close(): Promise<void>
}

export async function startFileCacheServer(dir: string, opts: { writable?: boolean } = {}): Promise<FileCacheServer> {
  const requests: string[] = []
  const headers: http.IncomingHttpHeaders[] = []
  const faults: FileCacheServer['faults'] = {}
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent((req.url ?? '/').split('?')[0]!)
    requests.push(`${req.method} ${rel}`)
    headers.push(req.headers)
    handle(req, res, rel).catch((e: Error) => {
      if (!res.headersSent) res.writeHead(500).end(`${e.message}\n`)
      else res.destroy()
    })
  })

  function takeFault(method: string | undefined, rel: string): FileCacheServer['faults'] | undefined {
    if (!faults.times || (faults.match && !faults.match.test(rel)) || (faults.method && faults.method !== method)) return undefined
    faults.times--
    return { ...faults }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, rel: string): Promise<void> {
    const file = path.join(dir, path.normalize(rel))
    if (!file.startsWith(dir + path.sep)) return void res.writeHead(400).end()
    const fault = takeFault(req.method, rel)
    if (fault?.status) return void res.writeHead(fault.status).end(`injected ${fault.status}\n`)
    if (req.method === 'PUT') {
      if (!opts.writable) return void res.writeHead(403).end('read-only\n')
      await fs.mkdir(path.dirname(file), { recursive: true })
      await pipeline(req, createWriteStream(`${file}.part`))
      await fs.rename(`${file}.part`, file)
      return void res.writeHead(200).end()
    }
    let size: number
    try {
      size = (await fs.stat(file)).size
    } catch {
      return void res.writeHead(404).end('not found\n')
    }
    res.writeHead(200, { 'Content-Length': size })
    if (req.method === 'HEAD') return void res.end()
    if (fault?.dropAfter !== undefined) {
      const head = Buffer.alloc(Math.min(fault.dropAfter, size))
      const fh = await fs.open(file)
      await fh.read(head, 0, head.length, 0).finally(() => fh.close())
      res.write(head, () => res.destroy())
      return
    }
    await pipeline(createReadStream(file), res)
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    headers,
    faults,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
