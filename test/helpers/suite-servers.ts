/**
 * The S3 and PostgreSQL servers a test file uses: the suite's (started once
 * by test/run-suite.ts, which names in TVIX_TEST_BACKENDS_FILE the file it
 * writes once they are up), or, for a file run on its own, servers of its
 * own, stopped when its tests end. Where the programs are not installed,
 * the reason to skip.
 */
import fs from 'node:fs'
import { after } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { S3Client } from '../../src/backends/s3/client.js'
import { type BackendsInfo, backendsDir, missingPrograms, startBackends } from './servers.js'

export type { BackendsInfo }

let mine: Promise<BackendsInfo> | undefined

/** The servers, or a string: why there are none. */
export async function backendsForTests(): Promise<BackendsInfo | string> {
  const file = process.env.TVIX_TEST_BACKENDS_FILE
  if (file) return suiteBackends(file)
  const missing = missingPrograms()
  if (missing) return missing
  mine ??= (async () => {
    const dir = backendsDir()
    const running = await startBackends(dir)
    after(async () => {
      await running.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    })
    return running
  })()
  return mine
}

let buckets = 0

/**
 * A new, empty bucket on the test S3 server and the `s3://` URL of a store
 * in it; the credentials go where the backend reads them (this process's
 * environment, as a user's shell would have them).
 */
export async function freshBucket(s3: NonNullable<BackendsInfo['s3']>, prefix = ''): Promise<string> {
  process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey
  const bucket = `t-${process.pid}-${Date.now().toString(36)}-${buckets++}`
  const client = new S3Client({ kind: 's3', bucket, prefix: '', endpoint: s3.endpoint, region: s3.region }, s3)
  try {
    await client.createBucket()
  } finally {
    await client.close()
  }
  return `s3://${bucket}${prefix ? `/${prefix}` : ''}?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}`
}

/** What the suite wrote: the servers, why there are none (a string), or why they failed to start (thrown). */
export type SuiteBackends = { ok: BackendsInfo } | { skip: string } | { fail: string }

/** Waits for the suite's servers: it writes the file (whole, by rename) once they are up or have failed, and it ends every file before it ends. */
async function suiteBackends(file: string): Promise<BackendsInfo | string> {
  while (!fs.existsSync(file)) await sleep(200)
  const said = JSON.parse(fs.readFileSync(file, 'utf8')) as SuiteBackends
  if ('fail' in said) throw new Error(`the test servers did not start: ${said.fail}`)
  return 'skip' in said ? said.skip : said.ok
}

let databases = 0

/** A new, empty database on the test PostgreSQL server: its URL, and how to drop it (after its store is closed). */
export async function freshDatabase(pgInfo: NonNullable<BackendsInfo['pg']>): Promise<{ url: string; drop(): Promise<void> }> {
  const { default: pg } = await import('pg')
  const name = `t_${process.pid}_${Date.now().toString(36)}_${databases++}`
  const admin = new pg.Client({ connectionString: pgInfo.url })
  await admin.connect()
  try {
    await admin.query(`create database ${name}`)
  } finally {
    await admin.end()
  }
  const url = new URL(pgInfo.url)
  url.pathname = `/${name}`
  return {
    url: url.href,
    drop: async () => {
      const c = new pg.Client({ connectionString: pgInfo.url })
      await c.connect()
      try {
        await c.query(`drop database if exists ${name} with (force)`)
      } finally {
        await c.end()
      }
    },
  }
}
