import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { VirtualClock } from '../src/sandboxes/clock.ts'
import type { SandboxEvent } from '../src/sandboxes/events.ts'
import { KeyedLock } from '../src/sandboxes/locks.ts'
import { WarmPool } from '../src/sandboxes/warm-pool.ts'
import { buildFakeDomain, type FakeDomain, RecordingLogger } from './support/fake-domain.ts'
import { FakeEngine } from './support/fake-engine.ts'

/**
 * Domain logic on the fake engine, where each engine call can fail or be held midway: what the SDK
 * tests against Docker can only hit by luck (a remove that fails, an exec that arrives during a
 * checkpoint, one fork child of three failing, the pool's eviction).
 */

const OWNER = 'owner-hash'
const SPEC = {
  image: 'busybox:latest',
  vcpus: 1,
  memMib: 256,
  diskMib: 1024,
  timeoutSec: 10,
  credentials: {},
}

/** Lets every pending promise chain run (the fake engine answers without I/O). */
const settle = () => new Promise((resolve) => setImmediate(resolve))

const built: FakeDomain[] = []
afterEach(() => {
  for (const d of built.splice(0)) d.close()
})

function domain(): FakeDomain {
  const d = buildFakeDomain()
  built.push(d)
  return d
}

describe('destroy', () => {
  it('puts a running sandbox back when the engine cannot remove it, idle timer included', async () => {
    const t = domain()
    const { lifecycle, registry } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    t.clock.advance(4_000)
    t.engine.failRemoves = 1
    await expect(lifecycle.destroy(OWNER, s.id)).rejects.toMatchObject({ code: 'engine_error' })

    expect(registry.get(OWNER, s.id).status).toBe('running')
    expect(registry.list(OWNER).map((x) => x.id)).toEqual([s.id])
    expect(existsSync(join(t.dataDir, 'sandboxes', `${s.id}.json`))).toBe(true)
    expect(t.history.list(OWNER)).toEqual([])
    // Its idle timer runs again, from its last activity: it goes 10 s after create, not before.
    t.clock.advance(5_999)
    await settle()
    expect(t.engine.removed).toEqual([])
    t.clock.advance(1)
    await settle()
    expect(t.engine.removed).toEqual([s.containerId])
    expect(registry.list(OWNER)).toEqual([])
    expect(t.history.list(OWNER).map((h) => h.reason)).toEqual(['idle_timeout'])
  })

  it('puts a hibernated sandbox back as hibernated, with no idle timer, and it still resumes', async () => {
    const t = domain()
    const { lifecycle, registry, checkpoints } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    await checkpoints.hibernate(OWNER, s.id)
    t.engine.failRemoves = 1
    await expect(lifecycle.destroy(OWNER, s.id)).rejects.toMatchObject({ code: 'engine_error' })

    expect(registry.get(OWNER, s.id).status).toBe('hibernated')
    t.clock.advance(60_000)
    await settle()
    expect(t.engine.calls.filter((c) => c.startsWith('remove'))).toEqual([`remove ${s.containerId}`])
    expect((await checkpoints.resume(OWNER, s.id)).status).toBe('running')
  })

  it('refuses a second destroy while the first is under way (409), and the first completes', async () => {
    const t = domain()
    const { lifecycle } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    const removing = t.engine.hold('remove')
    const first = lifecycle.destroy(OWNER, s.id)
    await removing.reached
    await expect(lifecycle.destroy(OWNER, s.id)).rejects.toMatchObject({ code: 'conflict' })
    removing.release()
    await expect(first).resolves.toMatchObject({ cpuMs: 1, memPeakBytes: 2 })
    expect(t.engine.removed).toEqual([s.containerId])
  })
})

describe('one lifecycle operation at a time per sandbox', () => {
  it('starts a hibernate only once the snapshot before it is done', async () => {
    const t = domain()
    const { lifecycle, checkpoints } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    const snapshotting = t.engine.hold('snapshot')
    const snapshot = checkpoints.snapshot(OWNER, s.id)
    await snapshotting.reached
    const hibernate = checkpoints.hibernate(OWNER, s.id)
    await settle()
    expect(t.engine.calls).not.toContain(`hibernate ${s.containerId}`)
    snapshotting.release()
    await Promise.all([snapshot, hibernate])
    expect(t.engine.calls.filter((c) => /^(snapshot|hibernate) /.test(c))).toEqual([
      `snapshot ${s.containerId}`,
      `hibernate ${s.containerId}`,
    ])
  })

  it('holds an exec back while a snapshot pauses the sandbox, and lets other sandboxes run', async () => {
    const t = domain()
    const { lifecycle, checkpoints, guest } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    const other = await lifecycle.create(OWNER, SPEC)
    const snapshotting = t.engine.hold('snapshot')
    const snapshot = checkpoints.snapshot(OWNER, s.id)
    await snapshotting.reached
    const exec = guest.exec(OWNER, s.id, 'true', 5)
    await expect(guest.exec(OWNER, other.id, 'echo other', 5)).resolves.toMatchObject({ exitCode: 0 })
    await settle()
    expect(t.engine.calls).not.toContain(`exec ${s.containerId}`)
    snapshotting.release()
    await snapshot
    await expect(exec).resolves.toMatchObject({ exitCode: 0, stdout: Buffer.from('true') })
    const own = t.engine.calls.filter((c) => c.endsWith(s.containerId))
    expect(own.slice(-2)).toEqual([`snapshot ${s.containerId}`, `exec ${s.containerId}`])
  })

  it('makes a destroy wait for the snapshot under way', async () => {
    const t = domain()
    const { lifecycle, checkpoints } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    const snapshotting = t.engine.hold('snapshot')
    const snapshot = checkpoints.snapshot(OWNER, s.id)
    await snapshotting.reached
    const destroy = lifecycle.destroy(OWNER, s.id)
    await settle()
    expect(t.engine.calls).not.toContain(`remove ${s.containerId}`)
    snapshotting.release()
    await snapshot
    await destroy
    expect(t.engine.removed).toEqual([s.containerId])
  })

  it('never lets the idle timeout take a sandbox with an exec or a snapshot under way; it re-arms after', async () => {
    const t = domain()
    const { lifecycle, checkpoints, guest } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)

    const executing = t.engine.hold('exec')
    const exec = guest.exec(OWNER, s.id, 'sleep 30', 60)
    await executing.reached
    t.clock.advance(30_000)
    await settle()
    expect(t.engine.removed).toEqual([])
    executing.release()
    await exec

    const snapshotting = t.engine.hold('snapshot')
    const snapshot = checkpoints.snapshot(OWNER, s.id)
    await snapshotting.reached
    t.clock.advance(30_000)
    await settle()
    expect(t.engine.removed).toEqual([])
    snapshotting.release()
    await snapshot

    // The snapshot's end counts as activity: the full timeout runs from there.
    t.clock.advance(9_999)
    await settle()
    expect(t.engine.removed).toEqual([])
    t.clock.advance(1)
    await settle()
    expect(t.engine.removed).toEqual([s.containerId])
  })

  it('refuses to hibernate a sandbox with an exec in flight (409)', async () => {
    const t = domain()
    const { lifecycle, checkpoints, guest } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    const executing = t.engine.hold('exec')
    const exec = guest.exec(OWNER, s.id, 'sleep 1', 5)
    await executing.reached
    await expect(checkpoints.hibernate(OWNER, s.id)).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('in flight'),
    })
    executing.release()
    await exec
    expect(t.engine.calls).not.toContain(`hibernate ${s.containerId}`)
  })

  it('makes a snapshot delete wait for a restore of it in flight', async () => {
    const t = domain()
    const { lifecycle, checkpoints, snapshots } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    const record = await checkpoints.snapshot(OWNER, s.id)
    const restoring = t.engine.hold('restore')
    const restore = checkpoints.restore(OWNER, record.id)
    await restoring.reached
    const deletion = snapshots.delete(OWNER, record.id)
    await settle()
    expect(t.engine.calls).not.toContain(`deleteSnapshot ${record.stored.image}`)
    restoring.release()
    await restore
    await deletion
    expect(t.engine.calls.filter((c) => c.includes(record.stored.image))).toEqual([
      `restore ${record.stored.image}`,
      `deleteSnapshot ${record.stored.image}`,
    ])
    expect(snapshots.has(record.id)).toBe(false)
  })

  it('does not let a failed operation block the ones after it', async () => {
    const lock = new KeyedLock()
    const failed = lock.run('a', async () => {
      throw new Error('boom')
    })
    const next = lock.run('a', async () => 'ran')
    await expect(failed).rejects.toThrow('boom')
    await expect(next).resolves.toBe('ran')
    expect(lock.busy('a')).toBe(false)
  })
})

describe('fork', () => {
  const forkedEvents = (d: FakeDomain) => {
    const seen: SandboxEvent[] = []
    d.domain.events.on((e) => {
      if (e.event === 'sandbox.forked') seen.push(e)
    })
    return seen
  }

  it('returns the children that started and reports the one that did not', async () => {
    const t = domain()
    const { lifecycle, checkpoints, registry } = t.domain
    const seen = forkedEvents(t)
    const parent = await lifecycle.create(OWNER, SPEC)
    t.engine.failRestores = new Set([1])
    const { forks, failed } = await checkpoints.fork(OWNER, parent.id, 3)

    expect(forks).toHaveLength(2)
    expect(failed).toEqual([{ index: 1, code: 'engine_error', message: 'fake restore 1 failed' }])
    expect(
      registry
        .list(OWNER)
        .map((s) => s.id)
        .sort(),
    ).toEqual([parent.id, ...forks.map((f) => f.id)].sort())
    expect(seen.map((e) => e.data)).toEqual([
      { count: 3, children: forks.map((f) => f.id), failed: 1, memory: false },
    ])
    // The fork's own checkpoint goes either way; the children keep running on its image.
    expect(t.engine.calls.filter((c) => c.startsWith('deleteSnapshot'))).toHaveLength(1)
  })

  it('fails when no child starts, cleans up, and leaves the parent as it was', async () => {
    const t = domain()
    const { lifecycle, checkpoints, registry, guest } = t.domain
    const parent = await lifecycle.create(OWNER, SPEC)
    t.engine.failRestores = new Set([0, 1])
    await expect(checkpoints.fork(OWNER, parent.id, 2)).rejects.toMatchObject({
      code: 'engine_error',
      message: 'every fork child failed to start: fake restore 0 failed',
    })
    expect(t.engine.calls.filter((c) => c.startsWith('deleteSnapshot'))).toHaveLength(1)
    expect(registry.list(OWNER).map((s) => s.id)).toEqual([parent.id])
    await expect(guest.exec(OWNER, parent.id, 'true', 5)).resolves.toMatchObject({ exitCode: 0 })
  })

  it('fails the last children without starting them when the control plane injects a partial fork', async () => {
    const t = domain()
    const { lifecycle, checkpoints } = t.domain
    const parent = await lifecycle.create(OWNER, SPEC)
    const { forks, failed } = await checkpoints.fork(OWNER, parent.id, 3, 1)
    expect(forks).toHaveLength(2)
    expect(failed).toEqual([
      { index: 2, code: 'engine_error', message: 'child failed to start (injected fault)' },
    ])
    expect(t.engine.calls.filter((c) => c.startsWith('restore'))).toHaveLength(2)
  })
})

describe('the warm pool', () => {
  const key = (image: string) => ({ image, vcpus: 1, memMib: 256 })

  function buildPool(engine = new FakeEngine()) {
    const clock = new VirtualClock(1_700_000_000_000)
    const pool = new WarmPool({
      engine,
      clock,
      log: new RecordingLogger(),
      size: 1,
      maxKeys: 2,
      keepMs: 60_000,
      labels: {},
    })
    const ready = (image: string) => pool.stats().find((s) => s.image === image)?.ready ?? 0
    const pooledIds = () => engine.pooled.map((p) => `fake-${p.poolId}`)
    return { engine, clock, pool, ready, pooledIds }
  }

  it('drops the least recently used key beyond its limit, and removes that key’s containers', async () => {
    const { engine, clock, pool, ready, pooledIds } = buildPool()
    pool.prewarm(key('a'))
    await vi.waitFor(() => expect(ready('a')).toBe(1))
    clock.advance(1_000)
    pool.prewarm(key('b'))
    await vi.waitFor(() => expect(ready('b')).toBe(1))
    clock.advance(1_000)
    // Asking for a again makes b the least recently used.
    expect(pool.take(key('a'))).toBe(pooledIds()[0])
    clock.advance(1_000)
    pool.prewarm(key('c'))
    await settle()
    expect(pool.stats().map((s) => s.image)).toEqual(['a', 'c'])
    expect(engine.removed).toEqual([pooledIds()[1]])
    await pool.drain()
  })

  it('keeps the key asked for last when keys are asked for in the same instant (a virtual clock stands still)', async () => {
    const { engine, pool, ready, pooledIds } = buildPool()
    pool.prewarm(key('a'))
    await vi.waitFor(() => expect(ready('a')).toBe(1))
    pool.prewarm(key('b'))
    await vi.waitFor(() => expect(ready('b')).toBe(1))
    pool.prewarm(key('c'))
    await settle()
    expect(pool.stats().map((s) => s.image)).toEqual(['b', 'c'])
    expect(engine.removed).toEqual([pooledIds()[0]])
    await vi.waitFor(() => expect(ready('c')).toBe(1))
    await pool.drain()
  })

  it('stops keeping a key warm once it has not been asked for within keepMs', async () => {
    const { engine, clock, pool, ready, pooledIds } = buildPool()
    pool.prewarm(key('a'))
    await vi.waitFor(() => expect(ready('a')).toBe(1))
    clock.advance(60_001)
    pool.prewarm(key('b'))
    await settle()
    expect(pool.stats().map((s) => s.image)).toEqual(['b'])
    expect(engine.removed).toEqual([pooledIds()[0]])
    await pool.drain()
  })

  it('waits on drain for a refill under way, and removes its container rather than leak it', async () => {
    const { engine, pool, pooledIds } = buildPool()
    const creating = engine.hold('createPooled')
    pool.prewarm(key('a'))
    await creating.reached
    const drained = pool.drain()
    await settle()
    creating.release()
    await drained
    expect(pooledIds()).toHaveLength(1)
    expect(engine.removed).toEqual(pooledIds())
    expect(pool.stats().every((s) => s.ready === 0)).toBe(true)
  })
})
