import fs from 'node:fs'
import { NotFoundError, BackendError, UsageError } from '../errors.js'
import { systemMessage } from '../errors.js'

/** Keys are a line of text: anything larger is not a key file. */
const MAX_KEY_FILE = 64 * 1024

/** The text of a key file (or another small secret file: `what`), or of stdin for `-`; one error line naming the file if it cannot be read. */
export function readKeyFile(file: string, what = 'key file', maxBytes = MAX_KEY_FILE): string {
  let buf: Buffer
  try {
    if (file !== '-' && fs.statSync(file).isDirectory()) throw new UsageError(`${file} is a directory, not a ${what}`)
    buf = fs.readFileSync(file === '-' ? 0 : file)
  } catch (e) {
    if (e instanceof UsageError) throw e
    const err = e as NodeJS.ErrnoException
    const name = file === '-' ? 'standard input' : file
    if (err.code === 'ENOENT') throw new NotFoundError(`cannot read the ${what} ${name}: it does not exist`, { cause: e })
    throw new BackendError(`cannot read the ${what} ${name}: ${systemMessage(err)}`, { cause: e })
  }
  if (buf.length > maxBytes) throw new UsageError(`${file} is not a ${what}: ${buf.length} bytes`)
  return buf.toString('utf8')
}
