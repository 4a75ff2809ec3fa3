import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun, type IsorunError } from 'isorun'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { EngineInfo } from '../src/sandboxes/engine.ts'
import { type StartedEmulator, startEmulator } from '../src/testing.ts'
import { FakeEngine } from './support/fake-engine.ts'
import { buildInjectApp } from './support/inject-app.ts'
import { describeWithDocker, newClient, waitFor } from './support/sdk.ts'

/**
 * Issue 12 item 7: per-key quotas (sandboxes, vCPUs, memory) answered with 429, and sizes the engine's
 * host cannot give answered with a 400 naming the field. Through the HTTP layer on the fake engine,
 * then through the real SDK on the real engine.
 */

const dataDir = mkdtempSync(join(tmpdir(), 'isorun-quotas-test-'))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

const GIB = 1024 ** 3
/** A small host: 2 cores, 4 GiB. */
const HOST: EngineInfo = {
  engine: 'fake',
  version: '0',
  apiVersion: '0',
  os: 'fake',
  storageDriver: 'none',
  backingFs: undefined,
  cgroupVersion: '1',
  experimental: false,
  rootDir: '/nowhere',
  hostCpus: 2,
  hostMemoryBytes: 4 * GIB,
}

const apps: { app: { close(): Promise<unknown> } }[] = []
afterEach(async () => {
  for (const t of apps.splice(0)) await t.app.close()
})

function build(env: Record<string, string> = {}, engine = new FakeEngine()) {
  const t = buildInjectApp(dataDir, { env, engine, engineInfo: HOST })
  apps.push(t)
  const auth = (key: string) => ({ authorization: `Bearer ${key}` })
  const create = (key: string, body: Record<string, unknown> = {}) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: auth(key),
      payload: { image: 'busybox:latest', vcpus: 1, mem_mib: 256, ...body },
    })
  const call = (key: string, method: 'POST' | 'DELETE' | 'GET', url: string, payload?: object) =>
    t.app.inject({ method, url, headers: auth(key), ...(payload ? { payload } : {}) })
  const count = async (key: string) => (await call(key, 'GET', '/v1/runs')).json().runs.length as number
  return { ...t, create, call, count }
}

describe('sizes the engine’s host cannot give', () => {
  it('are a 400 naming the field: more vCPUs or memory than the host has', async () => {
    const t = build()
    // The issue's own request: 64 vCPUs, 256 GiB, no idle timeout.
    const huge = await t.create('k1', { vcpus: 64, mem_mib: 262144, timeout: 0 })
    expect(huge.statusCode).toBe(400)
    expect(huge.json()).toMatchObject({ code: 'validation_failed', details: { field: 'body.vcpus' } })
    expect(huge.json().error).toMatch(/2 vCPUs.*ISORUN_EMULATOR_MAX_VCPUS/)
    const memory = await t.create('k1', { vcpus: 2, mem_mib: 4097 })
    expect(memory.statusCode).toBe(400)
    expect(memory.json()).toMatchObject({
      code: 'validation_failed',
      details: { field: 'body.mem_mib' },
    })
    expect(memory.json().error).toMatch(/4096 MiB.*ISORUN_EMULATOR_MAX_MEM_MIB/)
    expect(t.engine.created).toEqual([])
    expect((await t.create('k1', { vcpus: 2, mem_mib: 4096 })).statusCode).toBe(201)
  })

  it('are accepted up to ISORUN_EMULATOR_MAX_VCPUS / _MAX_MEM_MIB when set beyond the host', async () => {
    const t = build({ ISORUN_EMULATOR_MAX_VCPUS: '8', ISORUN_EMULATOR_MAX_MEM_MIB: '16384' })
    const res = await t.create('k1', { vcpus: 8, mem_mib: 16384 })
    expect(res.statusCode).toBe(201)
    expect(res.json()).toMatchObject({ vcpus: 8, mem_mib: 16384 })
    expect((await t.create('k1', { vcpus: 9 })).json().details.field).toBe('body.vcpus')
  })
})

describe('per-key quotas', () => {
  const small = {
    ISORUN_EMULATOR_QUOTA_SANDBOXES: '3',
    ISORUN_EMULATOR_QUOTA_VCPUS: '4',
    ISORUN_EMULATOR_QUOTA_MEM_MIB: '2048',
  }

  it('answer 429 quota_exceeded beyond each limit, for that key only; a destroy makes room', async () => {
    const t = build(small)
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await t.create('k1')).json().id)
    const fourth = await t.create('k1')
    expect(fourth.statusCode).toBe(429)
    expect(fourth.json()).toMatchObject({
      code: 'quota_exceeded',
      details: { quota: 'sandboxes', limit: 3, used: 3, asked: 1 },
    })
    expect(fourth.json().error).toContain('ISORUN_EMULATOR_QUOTA_SANDBOXES')
    // Another key has its own quota.
    expect((await t.create('k2')).statusCode).toBe(201)

    // A hibernated sandbox still holds its share (a resume must not exceed the quota).
    expect((await t.call('k1', 'POST', `/v1/runs/${ids[0]}/hibernate`)).statusCode).toBe(200)
    expect((await t.create('k1')).statusCode).toBe(429)
    expect((await t.call('k1', 'DELETE', `/v1/runs/${ids[0]}`)).statusCode).toBe(200)

    // vCPUs: 2 held, 3 more asked.
    const cpus = await t.create('k1', { vcpus: 2 })
    expect(cpus.statusCode).toBe(201) // 1 + 1 + 2 = 4
    expect((await t.call('k1', 'DELETE', `/v1/runs/${ids[1]}`)).statusCode).toBe(200)
    const tooManyCpus = await t.create('k1', { vcpus: 2 }) // 1 + 2 + 2 = 5
    expect(tooManyCpus.statusCode).toBe(429)
    expect(tooManyCpus.json().details).toMatchObject({ quota: 'vcpus', limit: 4, used: 3, asked: 2 })

    // Memory: 512 MiB held, 1600 more asked.
    const memory = await t.create('k1', { mem_mib: 1600 })
    expect(memory.statusCode).toBe(429)
    expect(memory.json().details).toMatchObject({
      quota: 'mem_mib',
      limit: 2048,
      used: 512,
      asked: 1600,
    })
    expect((await t.create('k1', { mem_mib: 1536 })).statusCode).toBe(201)
  })

  it('hold under concurrent creates: the room is taken when asked for, not when the container is up', async () => {
    const t = build({ ISORUN_EMULATOR_QUOTA_SANDBOXES: '2' })
    const statuses = (await Promise.all(Array.from({ length: 6 }, () => t.create('k1')))).map(
      (r) => r.statusCode,
    )
    expect(statuses.sort()).toEqual([201, 201, 429, 429, 429, 429])
    expect(await t.count('k1')).toBe(2)
    // A create the engine fails gives its room back.
    const failing = build({ ISORUN_EMULATOR_QUOTA_SANDBOXES: '1' })
    expect((await failing.create('k1', { image: 'missing/image' })).statusCode).toBe(400)
    expect((await failing.create('k1')).statusCode).toBe(201)
  })

  it('count restores, and refuse a fork whole (429, nothing made) when its children would exceed them', async () => {
    const t = build({ ISORUN_EMULATOR_QUOTA_SANDBOXES: '4' })
    const parent = (await t.create('k1')).json().id
    const snap = (await t.call('k1', 'POST', `/v1/runs/${parent}/snapshot`)).json()
    expect((await t.call('k1', 'POST', '/v1/runs/restore', { snapshot_id: snap.id })).statusCode).toBe(201)
    expect(await t.count('k1')).toBe(2)
    const restoresBefore = t.engine.calls.filter((c) => c.startsWith('restore')).length
    const tooMany = await t.call('k1', 'POST', `/v1/runs/${parent}/fork`, { count: 3 })
    expect(tooMany.statusCode).toBe(429)
    expect(tooMany.json().details).toMatchObject({ quota: 'sandboxes', limit: 4, used: 2, asked: 3 })
    expect(tooMany.json().error).toContain('fork')
    expect(await t.count('k1')).toBe(2)
    expect(t.engine.calls.filter((c) => c.startsWith('restore')).length).toBe(restoresBefore)
    const fits = await t.call('k1', 'POST', `/v1/runs/${parent}/fork`, { count: 2 })
    expect(fits.statusCode).toBe(201)
    expect(fits.json().forks).toHaveLength(2)
    const restore = await t.call('k1', 'POST', '/v1/runs/restore', { snapshot_id: snap.id })
    expect(restore.statusCode).toBe(429)
  })

  it('leave the warm pool’s containers out: they are no one’s until a create claims one', async () => {
    const t = build({ ISORUN_EMULATOR_QUOTA_SANDBOXES: '1', ISORUN_EMULATOR_POOL: '2' })
    const key = { image: 'busybox:latest', vcpus: 1, memMib: 256 }
    t.pool.prewarm(key)
    expect(await waitFor(async () => (t.pool.stats()[0]?.ready === 2 ? true : undefined), 5000, 10)).toBe(
      true,
    )
    const first = await t.create('k1')
    expect(first.statusCode).toBe(201)
    expect(t.engine.created).toEqual([]) // it was a pooled one
    expect((await t.create('k1')).statusCode).toBe(429)
    expect((await t.create('k2')).statusCode).toBe(201)
  })

  it('default to figures derived from the engine’s host, shown in capabilities', async () => {
    const t = build()
    const caps = (await t.app.inject({ url: '/_emulator/capabilities' })).json()
    expect(caps.limits.per_sandbox).toEqual({ vcpus: 2, mem_mib: 4096 })
    expect(caps.limits.per_key).toEqual({ sandboxes: 64, vcpus: 64, mem_mib: 16384 })
    const set = build({ ISORUN_EMULATOR_QUOTA_SANDBOXES: '5' })
    const setCaps = (await set.app.inject({ url: '/_emulator/capabilities' })).json()
    expect(setCaps.limits.per_key.sandboxes).toBe(5)
  })
})

describeWithDocker('quotas through the real SDK', () => {
  let emu: StartedEmulator | undefined
  afterAll(async () => {
    await emu?.stop()
  })

  it('a size beyond the host is IsorunError 400, a create beyond the quota IsorunError 429', async () => {
    const global = newClient()
    const huge = await global
      .create({ image: 'busybox:latest', vcpus: 64, memMiB: 262144, timeoutSec: 0 })
      .then(
        (s) => s.destroy().then(() => 201),
        (e: IsorunError) => e,
      )
    expect(huge).toMatchObject({ status: 400 })
    expect(JSON.parse((huge as IsorunError).body ?? '{}').details.field).toBe('body.vcpus')
    global.close()

    emu = await startEmulator({ env: { ISORUN_EMULATOR_QUOTA_SANDBOXES: '1' } })
    const isorun = new Isorun({ apiUrl: emu.apiUrl, apiKey: emu.apiKey })
    try {
      const one = await isorun.create({ image: 'busybox:latest' })
      const refused = await isorun.create({ image: 'busybox:latest' }).then(
        () => undefined,
        (e: IsorunError) => e,
      )
      expect(refused?.status).toBe(429)
      expect(JSON.parse(refused?.body ?? '{}').code).toBe('quota_exceeded')
      await one.destroy()
      await (await isorun.create({ image: 'busybox:latest' })).destroy()
    } finally {
      isorun.close()
    }
  })
})
