import type { Isorun } from 'isorun'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { VirtualClock } from '../src/sandboxes/clock.ts'
import { WarmPool } from '../src/sandboxes/warm-pool.ts'
import { type EmulatorProcess, launchEmulator } from './support/emulator-process.ts'
import { buildFakeDomain, RecordingLogger } from './support/fake-domain.ts'
import { FakeEngine } from './support/fake-engine.ts'
import { describeWithDocker, waitFor } from './support/sdk.ts'

/**
 * What counts as activity for the idle timer (docs/api.md): exec, files, url(port) traffic, state
 * operations and setTimeout do; reads (get, info, list, audit, history, usage) do not. Under the
 * virtual clock, through the real SDK and the emulator as a user starts it (`--clock virtual`, time
 * moved by `POST /_emulator/clock/advance`).
 */
describeWithDocker('activity and the idle timer, under the virtual clock', () => {
  const TIMEOUT_SEC = 60
  let emu: EmulatorProcess
  let isorun: Isorun

  const advance = async (seconds: number) => {
    const res = await fetch(`${emu.adminUrl}/_emulator/clock/advance`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ seconds }),
    })
    expect(res.status).toBe(200)
  }
  const listed = async () => new Set((await isorun.list()).map((s) => s.id))
  /** The idle destroy runs after the timer fires: wait until the sandbox is in the history. */
  const destroyedByIdle = (ids: string[]) =>
    waitFor(async () => {
      const history = new Set((await isorun.history()).map((h) => h.id))
      return ids.every((id) => history.has(id)) ? true : undefined
    }, 20_000)

  beforeAll(async () => {
    emu = await launchEmulator({ ISORUN_EMULATOR_CLOCK: 'virtual' })
    isorun = emu.client('activity-key')
  })
  afterAll(async () => {
    isorun.close()
    await emu.stop()
  })

  it('reads (get, info, list, audit, history, usage) do not keep a sandbox alive', async () => {
    const s = await isorun.create({ image: 'busybox:latest', timeoutSec: TIMEOUT_SEC })
    await advance(TIMEOUT_SEC - 10)
    expect((await isorun.get(s.id))?.id).toBe(s.id)
    expect((await s.info()).status).toBe('running')
    expect((await listed()).has(s.id)).toBe(true)
    expect(await s.auditLog()).not.toHaveLength(0)
    await isorun.history()
    await isorun.usage()
    // 61 s after create: had any read counted, the sandbox would have 50 s left.
    await advance(11)
    expect(await destroyedByIdle([s.id])).toBe(true)
    expect((await listed()).has(s.id)).toBe(false)
  })

  it('exec, files, url(port) traffic, a snapshot and setTimeout each restart the timer', async () => {
    const make = () => isorun.create({ image: 'busybox:latest', timeoutSec: TIMEOUT_SEC })
    const [control, exec, write, read, readdir, proxied, snapshotted, timeout] = await Promise.all([
      make(),
      make(),
      make(),
      make(),
      make(),
      make(),
      make(),
      make(),
    ])
    // A server for url(port); the exec that starts it is activity too, at the same instant as create.
    await proxied.exec('mkdir -p /tmp/www && echo hi > /tmp/www/index.html && (httpd -p 8080 -h /tmp/www &)')
    await advance(TIMEOUT_SEC - 10)

    await exec.exec('true')
    await write.writeFile('/tmp/f', 'x')
    expect(await read.readFile('/etc/passwd')).toContain('root')
    expect((await readdir.readdir('/')).map((e) => e.name)).toContain('tmp')
    const page = await waitFor(async () => {
      const res = await fetch(proxied.url(8080, '/index.html')).catch(() => undefined)
      return res?.status === 200 ? res.text() : undefined
    }, 10_000)
    expect(page).toBe('hi\n')
    const snapshot = await snapshotted.snapshot()
    await timeout.setTimeout(TIMEOUT_SEC)
    await control.info() // a read: no activity

    // The control sandbox's timeout has passed; every other one has a fresh timer with ~50 s left.
    await advance(11)
    expect(await destroyedByIdle([control.id])).toBe(true)
    const alive = await listed()
    for (const s of [exec, write, read, readdir, proxied, snapshotted, timeout])
      expect(alive.has(s.id)).toBe(true)

    await advance(TIMEOUT_SEC)
    expect(
      await destroyedByIdle([exec, write, read, readdir, proxied, snapshotted, timeout].map((s) => s.id)),
    ).toBe(true)
    await isorun.deleteSnapshot(snapshot.id)
  })
})

describe('createMs', () => {
  it('is the real time a create took, under a virtual clock and from the warm pool alike', async () => {
    const engine = new FakeEngine()
    const pool = new WarmPool({
      engine,
      clock: new VirtualClock(1_700_000_000_000),
      log: new RecordingLogger(),
      size: 1,
      maxKeys: 2,
      keepMs: 60_000,
      labels: {},
    })
    const d = buildFakeDomain({ engine, pool })
    try {
      const spec = {
        image: 'busybox:latest',
        vcpus: 1,
        memMib: 256,
        diskMib: 1024,
        timeoutSec: 0,
        credentials: {},
      }
      const cold = await d.domain.lifecycle.create('owner', spec)
      await vi.waitFor(() => expect(pool.stats()[0]?.ready).toBe(1))
      const warm = await d.domain.lifecycle.create('owner', spec)
      expect(engine.pooled.map((p) => `fake-${p.poolId}`)).toContain(warm.containerId)
      // The virtual clock never moved: neither create was instant, and neither says so.
      expect(cold.createMs).toBeGreaterThan(0)
      expect(warm.createMs).toBeGreaterThan(0)
    } finally {
      await pool.drain()
      d.close()
    }
  })
})
