import { describe, expect, it } from 'vitest'
import { Errors } from '../src/errors.ts'
import { VirtualClock } from '../src/sandboxes/clock.ts'
import type { PoolSpec } from '../src/sandboxes/engine.ts'
import { WarmPool } from '../src/sandboxes/warm-pool.ts'
import { RecordingLogger } from './support/fake-domain.ts'
import { FakeEngine } from './support/fake-engine.ts'

/** An engine without the image `missing/...`: every pooled container of it fails to start. */
class MissingImageEngine extends FakeEngine {
  attempts = 0
  override async createPooled(spec: PoolSpec): Promise<string> {
    if (spec.image.startsWith('missing/')) {
      this.attempts++
      throw Errors.imageUnavailable(spec.image, 'not found')
    }
    return super.createPooled(spec)
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const key = { image: 'missing/app:1', vcpus: 1, memMib: 256 }

function poolOn(engine: FakeEngine, log: RecordingLogger, retryMs: number) {
  return new WarmPool({
    engine,
    clock: new VirtualClock(1_700_000_000_000),
    log,
    size: 2,
    maxKeys: 4,
    keepMs: 60_000,
    labels: {},
    retryMs,
  })
}

describe('the warm pool and an image it cannot start', () => {
  it('does not try again on every create: it backs off, with one log line and no stack trace', async () => {
    const engine = new MissingImageEngine()
    const log = new RecordingLogger()
    const pool = poolOn(engine, log, 60_000)
    pool.prewarm(key)
    await sleep(200)
    // Creates keep asking for it (each goes cold); none makes the pool try again while it backs off.
    for (let i = 0; i < 5; i++) {
      expect(pool.take(key)).toBeUndefined()
      await sleep(60)
    }
    expect(engine.attempts).toBe(1)
    const said = log.lines.filter((l) => l.level !== 'debug')
    expect(said).toHaveLength(1)
    expect(said[0]?.level).toBe('warn')
    expect(said[0]?.msg).toContain('missing/app:1')
    expect(said[0]?.msg).toContain('not found')
    expect(said[0]?.obj).not.toHaveProperty('err')
    await pool.drain()
  })

  it('tries again later, less and less often, still without a new warning; a working image is unaffected', async () => {
    const engine = new MissingImageEngine()
    const log = new RecordingLogger()
    const pool = poolOn(engine, log, 100)
    pool.prewarm(key)
    pool.prewarm({ ...key, image: 'busybox:latest' })
    await sleep(1_000)
    // After 100 ms, then 200, then 400: a few attempts in a second, not one per refill gap.
    expect(engine.attempts).toBeGreaterThanOrEqual(2)
    expect(engine.attempts).toBeLessThanOrEqual(4)
    expect(log.lines.filter((l) => l.level === 'warn')).toHaveLength(1)
    expect(pool.stats().find((s) => s.image === 'busybox:latest')?.ready).toBe(2)
    await pool.drain()
  })
})
