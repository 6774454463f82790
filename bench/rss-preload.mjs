// Preloaded with `node --import` by bench/run.ts only when /usr/bin/time is
// missing: records the process's peak RSS (KiB) in $BENCH_RSS_FILE on exit.
import { writeFileSync } from 'node:fs'

const file = process.env.BENCH_RSS_FILE
if (file) {
  process.on('exit', () => {
    try {
      writeFileSync(file, String(process.resourceUsage().maxRSS))
    } catch {
      // measuring must never change the outcome of the measured command
    }
  })
}
