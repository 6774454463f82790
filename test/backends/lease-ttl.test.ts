/** TVIX_LEASE_TTL (src/backends/postgres/leases.ts): how long a shared store's temp-root lease lives without a heartbeat. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DEFAULT_LEASE_TTL_MS, leaseTtlMs } from '../../src/backends/postgres/leases.js'
import { UsageError } from '../../src/errors.js'

test('TVIX_LEASE_TTL: unset or empty is the default, seconds otherwise, anything else a usage error naming it', () => {
  assert.equal(leaseTtlMs({}), DEFAULT_LEASE_TTL_MS)
  assert.equal(leaseTtlMs({ TVIX_LEASE_TTL: '' }), DEFAULT_LEASE_TTL_MS)
  assert.equal(leaseTtlMs({ TVIX_LEASE_TTL: '2.5' }), 2500)
  for (const bad of ['abc', '0', '-5', '60s', 'Infinity']) {
    assert.throws(() => leaseTtlMs({ TVIX_LEASE_TTL: bad }), (e) => e instanceof UsageError && e.message.includes('TVIX_LEASE_TTL') && e.message.includes(JSON.stringify(bad)), bad)
  }
})
