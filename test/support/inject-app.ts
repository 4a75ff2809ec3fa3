import { type App, buildApp } from '../../src/app.ts'
import { loadConfig } from '../../src/config.ts'
import type { Clock } from '../../src/sandboxes/clock.ts'
import type { EngineInfo } from '../../src/sandboxes/engine.ts'
import { loadIdentity } from '../../src/sandboxes/identity.ts'
import { FakeEngine } from './fake-engine.ts'

/**
 * The app on the in-memory FakeEngine, for `app.inject` tests of the HTTP layer (no Docker, no socket).
 * `env` adds ISORUN_EMULATOR_* settings.
 */
export function buildInjectApp(
  dataDir: string,
  options: { env?: Record<string, string>; engine?: FakeEngine; clock?: Clock; engineInfo?: EngineInfo } = {},
): App & { engine: FakeEngine } {
  const engine = options.engine ?? new FakeEngine()
  const config = loadConfig({
    ISORUN_EMULATOR_DATA_DIR: dataDir,
    ISORUN_EMULATOR_LOG_LEVEL: 'silent',
    ...options.env,
  })
  const built = buildApp({
    config,
    engine,
    clock: options.clock,
    identity: loadIdentity(dataDir, { fsync: config.durability === 'fsync' }),
    engineInfo: options.engineInfo,
  })
  return { ...built, engine }
}
