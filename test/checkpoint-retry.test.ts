import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { VirtualClock } from '../src/sandboxes/clock.ts'
import { FakeEngine } from './support/fake-engine.ts'
import { buildInjectApp } from './support/inject-app.ts'

const dataDir = mkdtempSync(join(tmpdir(), 'isorun-checkpoint-retry-'))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))
const auth = { authorization: 'Bearer k1' }

/**
 * A checkpoint can fail for a moment: CRIU refuses a guest that still holds a TCP connection, and one the
 * proxy has just closed may linger in the guest on a busy machine. The service tries once more.
 */
describe('a checkpoint that fails once', () => {
  let t: ReturnType<typeof buildInjectApp>
  let id = ''
  beforeEach(async () => {
    const engine = new FakeEngine()
    engine.memory = { available: true, reason: 'fake CRIU' }
    t = buildInjectApp(dataDir, { engine })
    id = (await t.app.inject({ method: 'POST', url: '/v1/runs', headers: auth, payload: {} })).json().id
  })
  afterEach(() => t.app.close())
  const call = (action: string, payload?: object) =>
    t.app.inject({ method: 'POST', url: `/v1/runs/${id}/${action}`, headers: auth, payload })

  it('is tried again: snapshot, fork and hibernate succeed', async () => {
    t.engine.failCheckpoints = 1
    expect((await call('snapshot')).statusCode).toBe(201)
    expect(t.engine.checkpointAttempts).toBe(2)
    t.engine.failCheckpoints = 1
    expect((await call('fork', { count: 1 })).statusCode).toBe(201)
    expect(t.engine.checkpointAttempts).toBe(4)
    t.engine.failCheckpoints = 1
    expect((await call('hibernate')).statusCode).toBe(200)
    expect(t.engine.checkpointAttempts).toBe(6)
  })

  it('fails after the second attempt, with the engine’s reason', async () => {
    t.engine.failCheckpoints = 2
    const res = await call('hibernate')
    expect(res.statusCode).toBe(500)
    expect(res.json().error).toContain('criu failed')
    expect(t.engine.checkpointAttempts).toBe(2)
    expect((await t.app.inject({ method: 'GET', url: `/v1/runs/${id}`, headers: auth })).json().status).toBe(
      'running',
    )
  })
})

describe('a fork that outlasts its parent’s idle timeout', () => {
  it('keeps the parent alive until its children are up, and answers with them', async () => {
    const clock = new VirtualClock()
    const t = buildInjectApp(dataDir, { clock })
    try {
      const created = await t.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: auth,
        payload: { timeout: 5 },
      })
      const id = created.json().id
      const child = t.engine.hold('restore')
      const fork = t.app.inject({
        method: 'POST',
        url: `/v1/runs/${id}/fork`,
        headers: auth,
        payload: { count: 1 },
      })
      // The child takes long to start (a busy machine): the parent's 5 s pass meanwhile.
      await child.reached
      clock.advance(6_000)
      await new Promise((r) => setTimeout(r, 50))
      child.release()
      const res = await fork
      expect(res.statusCode, res.body).toBe(201)
      expect(res.json().forks).toHaveLength(1)
      const parent = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}`, headers: auth })
      expect(parent.statusCode).toBe(200)
    } finally {
      await t.app.close()
    }
  })
})
