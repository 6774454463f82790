import * as Flags from '@oclif/core/flags'
import { StoreCommand } from '../cli/store-command.js'
import { DEFAULT_LISTEN, parseListen } from '../daemon/listen.js'

export default class Daemon extends StoreCommand<typeof Daemon> {
  static override summary = 'Serve a store over the tvix gRPC protocol.'
  static override description =
    'Serves tvix.castore.v1.BlobService, tvix.castore.v1.DirectoryService and tvix.store.v1.PathInfoService, ' +
    'plus grpc.health.v1.Health and server reflection. Listens on loopback unless told otherwise. ' +
    'SIGINT/SIGTERM stop it cleanly: in-flight calls finish, a socket file is removed.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --listen 127.0.0.1:9000 --store /var/lib/tvix-store',
    '<%= config.bin %> <%= command.id %> --listen unix:/run/tvix-store.sock',
  ]
  static override handlesSignals = true
  static override flags = {
    listen: Flags.string({
      char: 'l',
      aliases: ['listen-address'],
      summary: 'HOST:PORT, [IPV6]:PORT or unix:/path/to.sock.',
      default: DEFAULT_LISTEN,
    }),
  }

  async run(): Promise<void> {
    const listen = parseListen(this.flags.listen)
    const store = await this.store()
    const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)
    const { startDaemon } = await import('../daemon/server.js')
    const daemon = await startDaemon(store, listen, log)
    log(`tvix-store daemon serving ${this.flags.store ?? 'the default store'} at ${daemon.url}`)
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    log(`${signal}: stopping (waiting for calls in flight)`)
    await daemon.shutdown()
    log('tvix-store daemon stopped')
  }
}
