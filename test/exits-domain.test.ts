import { afterEach, describe, expect, it, vi } from 'vitest'
import { VirtualClock } from '../src/sandboxes/clock.ts'
import { WarmPool } from '../src/sandboxes/warm-pool.ts'
import { buildFakeDomain, type FakeDomain, RecordingLogger } from './support/fake-domain.ts'
import { FakeEngine } from './support/fake-engine.ts'

/**
 * Issue 11 item 7 in the domain, on the fake engine: which stops make a sandbox `exited`, what an exited
 * sandbox still does, and that an address is never taken from a container that stopped unnoticed.
 */

const OWNER = 'owner-hash'
const SPEC = {
  image: 'busybox:latest',
  vcpus: 1,
  memMib: 1024,
  diskMib: 1024,
  timeoutSec: 60,
  credentials: {},
}
const settle = () => new Promise((resolve) => setImmediate(resolve))

const built: FakeDomain[] = []
afterEach(() => {
  for (const d of built.splice(0)) d.close()
})

function domain(withEgress = false): FakeDomain {
  const d = buildFakeDomain(
    withEgress
      ? {
          egressEnforcer: {
            prepare: async () => ({
              attachment: { network: 'isolated', proxyHost: 'isorun-egress', proxyAddress: '10.9.0.1' },
              env: {},
            }),
            closeConnections: async () => undefined,
          },
        }
      : {},
  )
  built.push(d)
  return d
}

describe('a container that stops on its own', () => {
  it('makes its sandbox exited: work is refused with 409, billing stops, destroy and the idle timeout still work', async () => {
    const t = domain()
    const { lifecycle, registry, guest, proxyTargets } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    t.clock.advance(10_000)
    t.engine.stop(s.containerId, { exitCode: 137, oomKilled: true })
    await settle()
    expect(registry.get(OWNER, s.id)).toMatchObject({
      status: 'exited',
      exit: { reason: 'oom', exitCode: 137 },
    })
    await expect(guest.exec(OWNER, s.id, 'true', 5)).rejects.toMatchObject({
      status: 409,
      details: { status: 'exited', reason: 'oom', exit_code: 137 },
    })
    await expect(proxyTargets.target(s.id)).rejects.toMatchObject({ status: 409 })
    await expect(t.domain.checkpoints.snapshot(OWNER, s.id)).rejects.toMatchObject({ status: 409 })
    expect(t.audit.read(s.id) ?? '').toContain('"event":"sandbox.exited"')
    // Billing ends with the container: 10 s of 1 vCPU and 1 GiB, not the 20 s until the destroy.
    t.clock.advance(10_000)
    const result = await lifecycle.destroy(OWNER, s.id)
    expect(result).toMatchObject({ uptimeMs: 10_000, costCents: 10 * 1 + 10 * 2 })
    expect(t.engine.removed).toEqual([s.containerId])
  })

  it('clears an exited sandbox away at its idle timeout', async () => {
    const t = domain()
    const s = await t.domain.lifecycle.create(OWNER, SPEC)
    t.engine.stop(s.containerId)
    await settle()
    t.clock.advance(60_000)
    await settle()
    expect(t.engine.removed).toEqual([s.containerId])
    expect(t.domain.registry.has(s.id)).toBe(false)
  })

  it('leaves alone a stop the lifecycle caused (hibernate), and a late report of one after resume', async () => {
    const t = domain()
    const { lifecycle, registry, checkpoints } = t.domain
    t.engine.memory = { available: true, reason: 'fake' }
    const s = await lifecycle.create(OWNER, SPEC)
    const held = t.engine.hold('hibernate')
    const hibernating = checkpoints.hibernate(OWNER, s.id)
    await held.reached
    // The engine reports the checkpoint's stop while hibernate is still under way.
    t.engine.report(s.containerId)
    held.release()
    await hibernating
    await settle()
    expect(registry.get(OWNER, s.id).status).toBe('hibernated')
    await checkpoints.resume(OWNER, s.id)
    // The same stop, reported late (the engine's events are replayed after a reconnect).
    t.engine.report(s.containerId)
    await settle()
    expect(registry.get(OWNER, s.id).status).toBe('running')
  })
})

describe('a container that stopped before its sandbox existed', () => {
  it('makes the sandbox that gets it exited (a warm-pool container that died while it waited)', async () => {
    const engine = new FakeEngine()
    const pool = new WarmPool({
      engine,
      clock: new VirtualClock(1_700_000_000_000),
      log: new RecordingLogger(),
      size: 1,
      maxKeys: 1,
      keepMs: 60_000,
      labels: {},
    })
    const t = buildFakeDomain({ engine, pool })
    built.push(t)
    pool.prewarm({ image: SPEC.image, vcpus: SPEC.vcpus, memMib: SPEC.memMib })
    await vi.waitFor(() => expect(engine.pooled.length).toBe(1))
    const pooled = `fake-${engine.pooled[0]?.poolId}`
    // It dies in the pool: the engine reports it while no sandbox has it.
    engine.stop(pooled)
    await settle()
    const s = await t.domain.lifecycle.create(OWNER, SPEC)
    expect(s.containerId).toBe(pooled)
    await vi.waitFor(() => expect(t.domain.registry.get(OWNER, s.id).status).toBe('exited'))
  })
})

describe('addresses of stopped containers', () => {
  it('never identifies a newcomer at a stopped sandbox’s old address as that sandbox (egress proxy)', async () => {
    const t = domain(true)
    const { lifecycle, egressSources } = t.domain
    const policy = { allow: ['old.example'], deny: [] }
    const dead = await lifecycle.create(OWNER, { ...SPEC, egress: policy })
    t.engine.addresses.set(dead.containerId, '10.9.0.5')
    expect((await egressSources.at('10.9.0.5'))?.id).toBe(dead.id)
    // It stops, and the engine's event is lost; the engine gives its address to the next container.
    t.engine.stop(dead.containerId, undefined, false)
    const next = await lifecycle.create('other-owner', {
      ...SPEC,
      egress: { allow: ['new.example'], deny: [] },
    })
    t.engine.addresses.set(next.containerId, '10.9.0.5')
    expect((await egressSources.at('10.9.0.5'))?.id).toBe(next.id)
  })

  it('asks the engine on every url(port) lookup while its events are not followed', async () => {
    const t = domain()
    const { lifecycle, proxyTargets } = t.domain
    const s = await lifecycle.create(OWNER, SPEC)
    t.engine.addresses.set(s.containerId, '10.9.0.7')
    expect((await proxyTargets.target(s.id)).address).toBe('10.9.0.7')
    t.engine.following = false
    t.engine.stop(s.containerId)
    await expect(proxyTargets.target(s.id)).rejects.toMatchObject({ code: 'engine_error' })
  })
})
