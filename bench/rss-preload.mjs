// Preloaded with `node --import` by bench/run.ts only when /usr/bin/time is
// missing: records the process's CPU (user and system seconds) and peak RSS
// (KiB) in $BENCH_RSS_FILE on exit, as GNU time's `%U %S %M` would.
import { writeFileSync } from 'node:fs'

const file = process.env.BENCH_RSS_FILE
if (file) {
  process.on('exit', () => {
    try {
      const u = process.resourceUsage()
      writeFileSync(file, `${u.userCPUTime / 1e6} ${u.systemCPUTime / 1e6} ${u.maxRSS}`)
    } catch {
      // measuring must never change the outcome of the measured command
    }
  })
}
