// `oclif manifest` lists commands in the order their folders were read, which
// varies from build to build; sorted, the committed manifest changes only
// when a command does.
import fs from 'node:fs'

const file = new URL('../oclif.manifest.json', import.meta.url)
const manifest = JSON.parse(fs.readFileSync(file, 'utf8'))
manifest.commands = Object.fromEntries(Object.entries(manifest.commands).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
fs.writeFileSync(file, `${JSON.stringify(manifest, null, 2)}\n`)
