/**
 * How the NAR sink reaches a binary cache's files, a folder or an HTTP
 * server: names are relative to the cache (`nix-cache-info`,
 * `<hash>.narinfo`, `nar/<file hash>.nar.xz`). Writes replace whole files
 * or nothing: a reader sees the old file, or the new one complete.
 */
export interface CacheWriter {
  /** The cache as messages name it. */
  readonly display: string
  /** Where a NAR is spooled before it is published: inside the cache folder (publishing is then a rename), else the temp dir. */
  spoolDir(): Promise<string>
  exists(name: string, signal?: AbortSignal): Promise<boolean>
  /** The file's text, or undefined if the cache does not have it. */
  readText(name: string, signal?: AbortSignal): Promise<string | undefined>
  /** Publishes the spooled `file` (`size` bytes) as `name`; the spool file may be gone afterwards. */
  putFile(name: string, file: string, size: number, contentType: string, signal?: AbortSignal): Promise<void>
  putText(name: string, text: string, contentType: string, signal?: AbortSignal): Promise<void>
  close(): Promise<void>
}
