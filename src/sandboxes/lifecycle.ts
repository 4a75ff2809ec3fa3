import type { PricingConfig } from '../config.ts'
import { EmulatorError, Errors } from '../errors.ts'
import type { ImageMap } from '../images/image-map.ts'
import { costCents } from './billing.ts'
import type { Clock } from './clock.ts'
import type { EgressEnforcer, EgressPolicy } from './egress-enforcer.ts'
import type { SandboxEngine, SandboxSpec } from './engine.ts'
import type { SandboxEvents } from './events.ts'
import { newRunId } from './ids.ts'
import { type InstanceIdentity, sandboxLabels } from './labels.ts'
import type { Logger } from './logger.ts'
import type { Quotas } from './quotas.ts'
import type { SandboxRegistry } from './registry.ts'
import { billableMs, type DestroyReason, type Sandbox } from './sandbox.ts'
import type { SnapshotRecord, SnapshotStore } from './snapshot-store.ts'
import type { WarmPool } from './warm-pool.ts'

export interface CreateInput {
  image: string
  vcpus: number
  memMib: number
  diskMib: number
  timeoutSec: number
  credentials: Record<string, string>
  /** What the sandbox may reach; undefined: unrestricted (the engine's usual network). */
  egress?: EgressPolicy
}

/** What a destroyed sandbox used and cost, read just before its container went. */
export interface DestroyResult {
  cpuMs: number
  memPeakBytes: number
  uptimeMs: number
  costCents: number
}

export interface SandboxLifecycleOptions {
  engine: SandboxEngine
  clock: Clock
  pricing: PricingConfig
  identity: InstanceIdentity
  log: Logger
  events: SandboxEvents
  registry: SandboxRegistry
  /** Read to tell whether an image the emulator made is still needed by a snapshot. */
  snapshots: SnapshotStore
  /** Started containers handed out by create when one fits (none: every create is cold). */
  pool?: WarmPool
  /** Enforces egress policies (isolated network + egress proxy); without it a policy is refused (409). */
  egressEnforcer?: EgressEnforcer
  /** Per-key quotas: a create takes its room before anything is made. */
  quotas: Quotas
  /** The local image to run for the one a create names (none: the name as given). */
  images?: ImageMap
}

/** A sandbox before its container exists. */
type NewSandbox = Omit<Sandbox, 'containerId'>

/**
 * Sandboxes come and go here: create (cold, from the warm pool, or from a snapshot), the idle timeout,
 * destroy. A sandbox is on disk before its creator hears of it, and gone from disk only once its
 * container is.
 */
export class SandboxLifecycle {
  private readonly opts: SandboxLifecycleOptions

  constructor(opts: SandboxLifecycleOptions) {
    this.opts = opts
  }

  private get engine(): SandboxEngine {
    return this.opts.engine
  }

  private get log(): Logger {
    return this.opts.log
  }

  private now(): number {
    return this.opts.clock.now()
  }

  async create(owner: string, input: CreateInput): Promise<Sandbox> {
    const room = this.opts.quotas.reserve(owner, input)
    try {
      return await this.createWithin(owner, input)
    } finally {
      room.release()
    }
  }

  private async createWithin(owner: string, input: CreateInput): Promise<Sandbox> {
    const began = performance.now()
    // The record names the image that runs (the SDK documents `image` as the resolved image name).
    const image = this.resolveImage(input.image)
    // A pooled container cannot take credentials (a started container's environment is fixed), so a
    // sandbox with credentials is always created cold.
    const poolable = Object.keys(input.credentials).length === 0 && !input.egress
    const pooled = poolable
      ? this.opts.pool?.take({ image, vcpus: input.vcpus, memMib: input.memMib })
      : undefined
    if (!pooled) await this.ensureImage(input.image, image)
    const started = this.now()
    const base = this.newSandbox(owner, { ...input, image, engineImage: image }, started)
    let containerId: string
    if (pooled) {
      containerId = pooled
      this.engine
        .claim(pooled, base.id)
        .catch((err) =>
          this.log.warn({ runId: base.id, containerId, err }, 'could not rename a pooled container'),
        )
    } else {
      containerId = await this.engine.create(
        await this.withEgress(base, this.specFor(base, input.credentials)),
      )
    }
    const sandbox = this.adopt(base, containerId, began)
    this.opts.events.emit('sandbox.created', sandbox, {
      image: sandbox.image,
      vcpus: sandbox.vcpus,
      memMib: sandbox.memMib,
      diskMib: sandbox.diskMib,
      timeoutSec: sandbox.timeoutSec,
      // Names only: credential values never leave the sandbox's environment.
      credentialNames: Object.keys(input.credentials),
      ...(sandbox.egress ? { egress: sandbox.egress } : {}),
    })
    return sandbox
  }

  /** The local image that runs for `requested` (the image map's choice, else the name as given). */
  resolveImage(requested: string): string {
    return this.opts.images?.resolve(requested).image ?? requested
  }

  /** Makes `image` present; a stand-in is never pulled (its name means nothing to a registry). */
  private async ensureImage(requested: string, image: string): Promise<void> {
    const entry = this.opts.images?.resolve(requested).entry
    try {
      await this.engine.ensureImage(image, { pull: !entry?.standIn })
    } catch (err) {
      if (!entry || !(err instanceof EmulatorError) || err.code !== 'image_unavailable') throw err
      throw Errors.imageUnavailable(image, String(err.details?.why ?? err.message), {
        requested,
        ...(entry.standIn ? { standIn: this.opts.images?.buildCommand ?? 'npm run fixtures' } : {}),
      })
    }
  }

  /** A new sandbox started from a snapshot (a restore, or one child of a fork). */
  async createFromSnapshot(
    owner: string,
    record: SnapshotRecord,
    timeoutSec = record.timeoutSec,
  ): Promise<Sandbox> {
    const began = performance.now()
    const started = this.now()
    const base = this.newSandbox(
      owner,
      { ...record, timeoutSec, engineImage: record.stored.image, credentials: {} },
      started,
    )
    // Credentials come back with the snapshot: they are in the committed image's environment.
    const containerId = await this.engine.restore(
      record.stored,
      await this.withEgress(base, this.specFor(base, {})),
    )
    base.credentialNames = record.credentialNames ?? []
    base.secrets = await secretsOf(this.engine, containerId, base.credentialNames)
    return this.adopt(base, containerId, began)
  }

  setTimeout(owner: string, id: string, timeoutSec: number): Sandbox {
    const { registry } = this.opts
    const s = registry.get(owner, id)
    s.timeoutSec = timeoutSec
    this.opts.events.emit('timeout.set', s, { timeoutSec })
    registry.touch(owner, id)
    registry.save(s)
    return s
  }

  async destroy(owner: string, id: string, reason: DestroyReason = 'api'): Promise<DestroyResult> {
    const { registry } = this.opts
    const s = registry.get(owner, id)
    if (s.status === 'destroying') throw Errors.conflict(`sandbox ${id} is already being destroyed`, { id })
    const statusBefore = s.status
    // Billing stops when the destroy is asked for (or the idle timer fires), not when Docker is done.
    const endedAt = this.now()
    s.status = 'destroying'
    registry.disarm(id)
    return registry.locks.run(id, async () => {
      const log = { runId: id, containerId: s.containerId, reason }
      let usage = { cpuMs: 0, memPeakBytes: 0 }
      try {
        usage = await this.engine.usage(s.containerId)
      } catch (err) {
        this.log.warn({ ...log, err }, 'could not read resource usage before destroy; reporting zero')
      }
      try {
        await this.engine.remove(s.containerId)
      } catch (err) {
        s.status = statusBefore
        if (s.status === 'running') registry.arm(s)
        throw err
      }
      registry.remove(id)
      const billable = billableMs(s, endedAt)
      const result: DestroyResult = {
        cpuMs: usage.cpuMs,
        memPeakBytes: usage.memPeakBytes,
        uptimeMs: Math.max(0, Math.min(endedAt, s.exit?.at ?? endedAt) - s.createdAt),
        costCents: costCents(this.opts.pricing, s.vcpus, s.memMib, billable),
      }
      this.log.info({ ...log, ...result }, 'sandbox destroyed')
      this.opts.events.emit('sandbox.destroyed', s, { reason, ...result, billableMs: billable })
      await this.releaseEngineImage(s)
      return result
    })
  }

  /** The registry found the sandbox idle past its timeout. */
  expire(s: Sandbox): void {
    this.log.info(
      { runId: s.id, containerId: s.containerId, timeoutSec: s.timeoutSec },
      'idle timeout reached',
    )
    this.destroy(s.owner, s.id, 'idle_timeout').catch((err) =>
      this.log.error({ runId: s.id, containerId: s.containerId, err }, 'idle destroy failed'),
    )
  }

  private newSandbox(
    owner: string,
    input: Pick<
      CreateInput,
      'image' | 'vcpus' | 'memMib' | 'diskMib' | 'timeoutSec' | 'credentials' | 'egress'
    > & {
      engineImage: string
    },
    at: number,
  ): NewSandbox {
    return {
      id: newRunId(),
      owner,
      image: input.image,
      engineImage: input.engineImage,
      vcpus: input.vcpus,
      memMib: input.memMib,
      diskMib: input.diskMib,
      timeoutSec: input.timeoutSec,
      status: 'running',
      createdAt: at,
      createMs: 0,
      lastActivityAt: at,
      inFlight: 0,
      hibernatedMs: 0,
      credentialNames: Object.keys(input.credentials),
      secrets: Object.values(input.credentials),
      ...(input.egress ? { egress: input.egress } : {}),
    }
  }

  /**
   * A sandbox with an egress policy joins the isolated network, its guest told of the proxy (after the
   * credentials, so a credential cannot point HTTP_PROXY elsewhere); one without is left as it is.
   */
  private async withEgress(base: NewSandbox, spec: SandboxSpec): Promise<SandboxSpec> {
    if (!base.egress) return spec
    if (!this.opts.egressEnforcer) {
      throw new EmulatorError('capability_unavailable', 409, 'egress policies cannot be enforced here')
    }
    const setup = await this.opts.egressEnforcer.prepare()
    return { ...spec, env: { ...spec.env, ...setup.env }, egressAttachment: setup.attachment }
  }

  private specFor(base: NewSandbox, env: Record<string, string>): SandboxSpec {
    return {
      runId: base.id,
      image: base.image,
      vcpus: base.vcpus,
      memMib: base.memMib,
      diskMib: base.diskMib,
      env,
      labels: sandboxLabels(this.opts.identity, base),
    }
  }

  /**
   * Registers a sandbox whose container now runs, and starts its idle timer. `createMs` is the real
   * time the create took since `began` (performance.now()), whatever the clock: a warm-pool create
   * or one under a virtual clock still took time, so it is never reported as 0.
   */
  private adopt(base: NewSandbox, containerId: string, began: number): Sandbox {
    const at = this.now()
    const createMs = Math.max(1, Math.ceil(performance.now() - began))
    const sandbox: Sandbox = { ...base, containerId, createMs, lastActivityAt: at }
    // On disk before the caller hears of it: a container without its record is reaped at start.
    this.opts.registry.save(sandbox)
    this.opts.registry.add(sandbox)
    this.log.info(
      { runId: sandbox.id, containerId, image: sandbox.image, createMs: sandbox.createMs },
      'sandbox created',
    )
    return sandbox
  }

  /** Removes an image the emulator made for a fork or restore once no snapshot and no sandbox needs it. */
  private async releaseEngineImage(s: Pick<Sandbox, 'image' | 'engineImage'>): Promise<void> {
    const image = s.engineImage
    // Only images the emulator made (a restore's or fork's) are its to remove.
    if (image === s.image) return
    if (this.opts.snapshots.all().some((r) => r.stored.image === image)) return
    if (this.opts.registry.all().some((s) => s.engineImage === image)) return
    await this.engine
      .releaseImage(image)
      .catch((err) => this.log.warn({ image, err }, 'could not remove an unused snapshot image'))
  }
}

/** Credential values from the container's environment, for masking (only when there are any). */
export async function secretsOf(
  engine: SandboxEngine,
  containerId: string,
  names: string[],
): Promise<string[]> {
  if (names.length === 0) return []
  const env = await engine.env(containerId).catch(() => ({}) as Record<string, string>)
  return names.map((n) => env[n]).filter((v): v is string => typeof v === 'string')
}
