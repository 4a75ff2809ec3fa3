import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HistoryStore } from '../../src/accounts/history.ts'
import { loadAuditKey } from '../../src/audit/audit-key.ts'
import { AuditLog } from '../../src/audit/audit-log.ts'
import { VirtualClock } from '../../src/sandboxes/clock.ts'
import { createSandboxDomain, type SandboxDomain } from '../../src/sandboxes/domain.ts'
import type { EgressEnforcer } from '../../src/sandboxes/egress-enforcer.ts'
import type { Logger } from '../../src/sandboxes/logger.ts'
import { SnapshotStore } from '../../src/sandboxes/snapshot-store.ts'
import { SandboxStateStore } from '../../src/sandboxes/state-store.ts'
import type { WarmPool } from '../../src/sandboxes/warm-pool.ts'
import { FakeEngine } from './fake-engine.ts'

/** What the domain logged, for tests that check it said why (and to keep test output quiet). */
export class RecordingLogger implements Logger {
  readonly lines: { level: string; obj: object; msg?: string }[] = []
  info(obj: object, msg?: string): void {
    this.lines.push({ level: 'info', obj, msg })
  }
  warn(obj: object, msg?: string): void {
    this.lines.push({ level: 'warn', obj, msg })
  }
  error(obj: object, msg?: string): void {
    this.lines.push({ level: 'error', obj, msg })
  }
  debug(obj: object, msg?: string): void {
    this.lines.push({ level: 'debug', obj, msg })
  }
}

export interface FakeDomain {
  domain: SandboxDomain
  engine: FakeEngine
  clock: VirtualClock
  log: RecordingLogger
  dataDir: string
  audit: AuditLog
  history: HistoryStore
  /** Stops the idle timers and removes the data dir. */
  close(): void
}

/** Prices that make costs easy to check by hand: 1 cent per vCPU-second, 2 cents per GiB-second. */
export const TEST_PRICING = { vcpuSecondCents: 1, gibSecondCents: 2 }

/**
 * The sandbox domain on the in-memory FakeEngine and a virtual clock, with the audit log and history
 * following its events as in the app: domain logic without Docker, HTTP or real time.
 */
export function buildFakeDomain(
  options: {
    engine?: FakeEngine
    strict?: boolean
    egressEnforcer?: EgressEnforcer
    pool?: WarmPool
    beforeCheckpoint?: (runId: string) => Promise<void>
  } = {},
): FakeDomain {
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-domain-test-'))
  const engine = options.engine ?? new FakeEngine()
  const clock = new VirtualClock(1_700_000_000_000)
  const log = new RecordingLogger()
  const domain = createSandboxDomain({
    engine,
    clock,
    pricing: TEST_PRICING,
    identity: { instanceId: '0123456789abcdef', dataDir },
    logger: log,
    execOutputLimit: 1024,
    snapshots: new SnapshotStore(dataDir),
    records: new SandboxStateStore(dataDir),
    pool: options.pool,
    strict: options.strict ?? false,
    beforeCheckpoint: options.beforeCheckpoint,
    egressEnforcer: options.egressEnforcer,
  })
  const audit = new AuditLog(dataDir, loadAuditKey(dataDir, undefined), { now: () => clock.now() })
  audit.follow(domain.events)
  const history = new HistoryStore(dataDir)
  history.follow(domain.events)
  return {
    domain,
    engine,
    clock,
    log,
    dataDir,
    audit,
    history,
    close() {
      domain.close()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}
