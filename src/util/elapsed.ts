/** Seconds since `started` (a performance.now() reading), to the millisecond: reports say 2.313, not 2.3127176009999997. */
export function secondsSince(started: number): number {
  return Math.round(performance.now() - started) / 1000
}
