/**
 * Import's memory does not grow with the number of files: the ingest stages
 * each Directory as it finishes it and keeps no node of the tree. Checked
 * through V8's heap limit, which allocation reaches however loaded the
 * machine is: 50,000 empty files in 500 folders import within a 16 MiB old
 * space (they need under 8), where holding every Directory until commit
 * ran out of heap at 24 MiB.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { NixStore, nixMissing } from '../helpers/nix.js'

const SKIP = nixMissing()
if (SKIP) console.log(SKIP)

const FOLDERS = 500
const FILES_EACH = 100
const HEAP_MIB = 16

test(`${FOLDERS * FILES_EACH} files import within a ${HEAP_MIB} MiB heap, at the store path Nix gives them`, { skip: SKIP }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'import-memory-'))
  try {
    const tree = path.join(tmp, 'many')
    for (let d = 0; d < FOLDERS; d++) {
      const dir = path.join(tree, `d${String(d).padStart(3, '0')}`)
      fs.mkdirSync(dir, { recursive: true })
      for (let f = 0; f < FILES_EACH; f++) fs.closeSync(fs.openSync(path.join(dir, `f${f}`), 'w'))
    }
    const r = await runCli(['import', '--store', path.join(tmp, 'store'), tree], { env: { NODE_OPTIONS: `--max-old-space-size=${HEAP_MIB}` } })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().trim(), new NixStore(path.join(tmp, 'nix')).pathOf(tree))
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
})
