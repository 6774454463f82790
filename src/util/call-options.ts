/** Options every service call takes: `signal` stops its work and releases its files and streams. */
export interface CallOptions {
  signal?: AbortSignal
}
