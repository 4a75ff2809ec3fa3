import type { PricingConfig } from '../config.ts'
import type { ImageMap } from '../images/image-map.ts'
import { GuestAddresses } from './addresses.ts'
import { SandboxCheckpoints } from './checkpoints.ts'
import type { Clock } from './clock.ts'
import type { EgressEnforcer } from './egress-enforcer.ts'
import { EgressSources } from './egress-sources.ts'
import type { SandboxEngine } from './engine.ts'
import { SandboxEvents } from './events.ts'
import { SandboxExits } from './exits.ts'
import { GuestOperations } from './guest-operations.ts'
import type { InstanceIdentity } from './labels.ts'
import { SandboxLifecycle } from './lifecycle.ts'
import type { Logger } from './logger.ts'
import { ProxyTargets } from './proxy-targets.ts'
import { Quotas, type SandboxLimits, sandboxLimits } from './quotas.ts'
import { recoverSandboxes } from './recovery.ts'
import { SandboxRegistry } from './registry.ts'
import { SnapshotCatalog } from './snapshot-catalog.ts'
import type { SnapshotStore } from './snapshot-store.ts'
import type { SandboxStateStore } from './state-store.ts'
import type { WarmPool } from './warm-pool.ts'

export interface SandboxDomainOptions {
  engine: SandboxEngine
  clock: Clock
  pricing: PricingConfig
  identity: InstanceIdentity
  logger: Logger
  execOutputLimit: number
  snapshots: SnapshotStore
  /** Each live sandbox's record on disk. */
  records: SandboxStateStore
  pool?: WarmPool
  /** Fail instead of degrading when memory cannot be kept (snapshot, fork, hibernate). */
  strict: boolean
  /** Called before a sandbox's processes are checkpointed (see SandboxCheckpointsOptions). */
  beforeCheckpoint?: (runId: string) => Promise<void>
  /** Enforces egress policies; without it a policy is refused (409). */
  egressEnforcer?: EgressEnforcer
  /** Sizes and per-key quotas; by default derived from this machine (see quotas.ts). */
  limits?: SandboxLimits
  /** The local image to run for the one a create names (none: the name as given). */
  images?: ImageMap
}

/**
 * The sandbox domain, one module per responsibility. All of them share the registry (the live
 * sandboxes) and announce what they do on `events`; none knows of HTTP or of the engine's kind.
 */
export interface SandboxDomain {
  events: SandboxEvents
  /** The live sandboxes: lookup by key, activity, idle timers, per-sandbox locks. */
  registry: SandboxRegistry
  /** Create (cold, pooled, from a snapshot), timeout, destroy. */
  lifecycle: SandboxLifecycle
  /** What one sandbox may be and what each key may hold. */
  quotas: Quotas
  /** Exec and files inside a sandbox. */
  guest: GuestOperations
  /** Snapshot, restore, fork, hibernate, resume. */
  checkpoints: SandboxCheckpoints
  /** The snapshots each key may list, restore and delete. */
  snapshots: SnapshotCatalog
  /** url(port)'s lookups. */
  proxyTargets: ProxyTargets
  /** The egress proxy's lookups. */
  egressSources: EgressSources
  /** Containers that stop without being asked to: their sandboxes become `exited`. */
  exits: SandboxExits
  /** At start: adopts this data dir's sandboxes, reaps leftovers. */
  recover(): Promise<{ adopted: number; reaped: number }>
  /** Stops the idle timers; sandboxes keep running and are adopted by the next start. */
  close(): void
}

export function createSandboxDomain(o: SandboxDomainOptions): SandboxDomain {
  const log = o.logger
  const events = new SandboxEvents(o.clock, log)
  const registry = new SandboxRegistry({
    clock: o.clock,
    records: o.records,
    onIdle: (s) => lifecycle.expire(s),
  })
  const quotas = new Quotas(o.limits ?? sandboxLimits({}, null), registry)
  const lifecycle = new SandboxLifecycle({
    engine: o.engine,
    clock: o.clock,
    pricing: o.pricing,
    identity: o.identity,
    log,
    events,
    registry,
    snapshots: o.snapshots,
    pool: o.pool,
    egressEnforcer: o.egressEnforcer,
    quotas,
    images: o.images,
  })
  const exits = new SandboxExits({
    engine: o.engine,
    clock: o.clock,
    identity: o.identity,
    log,
    events,
    registry,
  })
  exits.start()
  const addresses = new GuestAddresses(o.engine, events, () => exits.following)
  const snapshots = new SnapshotCatalog(o.snapshots, o.engine, log)
  return {
    events,
    registry,
    lifecycle,
    quotas,
    guest: new GuestOperations({
      engine: o.engine,
      clock: o.clock,
      events,
      registry,
      execOutputLimit: o.execOutputLimit,
    }),
    checkpoints: new SandboxCheckpoints({
      engine: o.engine,
      clock: o.clock,
      log,
      events,
      registry,
      lifecycle,
      quotas,
      catalog: snapshots,
      strict: o.strict,
      beforeCheckpoint: o.beforeCheckpoint,
    }),
    snapshots,
    proxyTargets: new ProxyTargets({ clock: o.clock, events, registry, addresses }),
    egressSources: new EgressSources(registry, addresses, events),
    exits,
    recover: () =>
      recoverSandboxes({
        engine: o.engine,
        clock: o.clock,
        identity: o.identity,
        log,
        registry,
        records: o.records,
        egressEnforcer: o.egressEnforcer,
      }),
    close: () => {
      exits.close()
      registry.close()
    },
  }
}
