import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { FaultInjector, MAX_PATTERN_INSTRUCTIONS } from '../src/control/faults.ts'
import { buildInjectApp } from './support/inject-app.ts'

/**
 * A fault's path pattern is matched against every /v1 request's path. With a backtracking matcher, a
 * pattern like ^/v1/(\w+\w?)+$ and one request to a long path froze the whole API for a minute or more.
 */
describe('fault path patterns', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-fault-patterns-'))
  const t = buildInjectApp(dataDir)
  afterAll(async () => {
    await t.app.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('cannot freeze the API: health answers at once while a long path meets a pathological pattern', async () => {
    const added = await t.app.inject({
      method: 'POST',
      url: '/_emulator/faults',
      payload: { path: '^/v1/(\\w+\\w?)+$', status: 500 },
    })
    expect(added.statusCode).toBe(201)
    // 19 characters already take a backtracking matcher seconds (it doubles and more with each one).
    for (const length of [19, 8000]) {
      const started = performance.now()
      const slow = t.app.inject({ method: 'GET', url: `/v1/${'a'.repeat(length)}!` })
      const health = await t.app.inject({ method: 'GET', url: '/_emulator/health' })
      expect(health.statusCode).toBe(200)
      expect(performance.now() - started, `health beside a ${length}-character path`).toBeLessThan(1500)
      // No match (the path ends in '!'), so the request goes on: no such route.
      expect((await slow).statusCode).toBe(404)
    }
    await t.app.inject({ method: 'DELETE', url: '/_emulator/faults' })
  })

  // Linear in the path, but times the size of the pattern's program: (a|b|c|d){1000} took seconds per
  // request on a 16 KiB path (the longest head Node takes). The program's size is bounded instead.
  it('refuses a pattern too large to match a long path at once, and matches the largest it takes quickly', async () => {
    for (const path of ['(a|b|c|d){1000}', '[\\s\\S]{1000}', '(?:[ab][ab]){400}']) {
      const res = await t.app.inject({ method: 'POST', url: '/_emulator/faults', payload: { path } })
      expect(res.statusCode, path).toBe(400)
      expect(res.json()).toMatchObject({ code: 'validation_failed', details: { field: 'body.path' } })
      expect(res.json().error).toMatch(/too large/)
    }
    const faults = new FaultInjector()
    const longPath = `/v1/${'ab'.repeat(8000)}`
    for (const path of [
      `(a|b|c|d){${MAX_PATTERN_INSTRUCTIONS / 3 - 1}}`,
      `[\\s\\S]{${MAX_PATTERN_INSTRUCTIONS - 2}}`,
    ]) {
      faults.add({ path, action: 'error', status: 500 })
      // CPU time, not wall time: what the event loop spends, however busy the machine is.
      const started = process.cpuUsage()
      faults.match('GET', longPath, undefined)
      const { user, system } = process.cpuUsage(started)
      expect((user + system) / 1000, path).toBeLessThan(500)
      faults.clear()
    }
  })

  it('still matches the patterns tests write', () => {
    const faults = new FaultInjector()
    faults.add({ path: '^/v1/runs/[^/]+/exec$', action: 'error', status: 429 })
    faults.add({ path: '/files\\b', method: 'GET', action: 'error', status: 503 })
    expect(faults.match('POST', '/v1/runs/run1/exec', undefined)?.status).toBe(429)
    expect(faults.match('POST', '/v1/runs/run1/exec/x', undefined)).toBeUndefined()
    expect(faults.match('GET', '/v1/runs/run1/files/download', undefined)?.status).toBe(503)
    expect(faults.match('GET', '/v1/runs/run1/filesystem', undefined)).toBeUndefined()
  })

  it('refuses, with a 400 naming body.path, a pattern the linear-time matcher cannot run', async () => {
    for (const path of ['(?=x)', '(a)\\1', 'a{2000}', '[']) {
      const res = await t.app.inject({ method: 'POST', url: '/_emulator/faults', payload: { path } })
      expect(res.statusCode, path).toBe(400)
      expect(res.json()).toMatchObject({ code: 'validation_failed', details: { field: 'body.path' } })
    }
    expect(() => new FaultInjector().add({ path: '(?<=x)y', action: 'error' })).toThrow(/body.path|pattern/)
  })
})
