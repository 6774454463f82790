import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseCacheUrl } from '../../../src/backends/nix-cache/cache-url.js'

describe('parseCacheUrl', () => {
  it('keeps credentials for requests but never in what messages show', () => {
    const u = parseCacheUrl('http://ci:s3cret@cache.example:8080/sub?compression=zstd')
    assert.equal(u.display, 'http://cache.example:8080/sub')
    assert.equal(u.location.kind === 'http' && u.location.base.password, 's3cret')
    assert.equal(u.params.get('compression'), 'zstd')
    assert.equal(parseCacheUrl('nix+file:///srv/cache/').display, 'nix+file:///srv/cache')
  })
})
