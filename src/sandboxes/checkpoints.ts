import { EmulatorError, Errors } from '../errors.ts'
import type { Clock } from './clock.ts'
import type { SandboxEngine } from './engine.ts'
import type { SandboxEvents } from './events.ts'
import { newSnapshotId } from './ids.ts'
import type { SandboxLifecycle } from './lifecycle.ts'
import type { Logger } from './logger.ts'
import type { Quotas } from './quotas.ts'
import type { SandboxRegistry } from './registry.ts'
import type { Sandbox } from './sandbox.ts'
import type { SnapshotCatalog } from './snapshot-catalog.ts'
import type { SnapshotRecord } from './snapshot-store.ts'

/** How many children one fork may ask for. */
export const MAX_FORK_COUNT = 20

/** Before the one retry of a failed checkpoint: time for a guest to let go of a closed connection. */
const CHECKPOINT_RETRY_DELAY_MS = 250

export interface ForkFailure {
  index: number
  code: string
  message: string
}

export interface ForkResult {
  forks: Sandbox[]
  failed: ForkFailure[]
}

export interface SandboxCheckpointsOptions {
  engine: SandboxEngine
  clock: Clock
  log: Logger
  events: SandboxEvents
  registry: SandboxRegistry
  /** Restores and fork children are new sandboxes: the lifecycle starts them. */
  lifecycle: SandboxLifecycle
  /** Restores and forks take their room in the key's quota before anything is made. */
  quotas: Quotas
  /** Where snapshots go; restores go through it too, so that a delete of their snapshot waits for them. */
  catalog: SnapshotCatalog
  /** Fail instead of degrading when memory cannot be kept (snapshot, fork, hibernate). */
  strict: boolean
  /**
   * Called before a sandbox is checkpointed: CRIU refuses established TCP connections, so the proxy
   * closes its pooled keep-alive connections to the guest here.
   */
  beforeCheckpoint?: (runId: string) => Promise<void>
}

/**
 * Capturing a sandbox and bringing a capture back: snapshot, restore, fork, hibernate, resume. Memory is
 * kept when the engine can (CRIU), else the capture degrades to files (and hibernation to a pause), or
 * is refused in strict mode.
 */
export class SandboxCheckpoints {
  private readonly opts: SandboxCheckpointsOptions

  constructor(opts: SandboxCheckpointsOptions) {
    this.opts = opts
  }

  private get engine(): SandboxEngine {
    return this.opts.engine
  }

  private get registry(): SandboxRegistry {
    return this.opts.registry
  }

  private now(): number {
    return this.opts.clock.now()
  }

  /**
   * `as` (for the seed only): the snapshot's id and owner, instead of a new id and the sandbox's owner.
   * A seeded snapshot owned by SHARED_OWNER can be listed and restored by every key.
   */
  async snapshot(
    owner: string,
    id: string,
    as?: { snapshotId: string; owner: string },
  ): Promise<SnapshotRecord> {
    const s = this.registry.get(owner, id)
    return this.registry.locks.run(id, async () => {
      this.registry.assertAlive(s)
      const record = await this.capture(s, as?.snapshotId ?? newSnapshotId())
      if (as) record.owner = as.owner
      this.opts.catalog.add(record)
      this.registry.touch(owner, id)
      this.opts.log.info(
        { runId: id, snapshotId: record.id, memory: record.memory, sizeBytes: record.sizeBytes },
        'snapshot taken',
      )
      this.opts.events.emit('snapshot.created', s, {
        snapshotId: record.id,
        sizeBytes: record.sizeBytes,
        memory: record.memory,
      })
      return record
    })
  }

  async restore(owner: string, snapshotId: string): Promise<Sandbox> {
    return this.opts.catalog.use(owner, snapshotId, async (record) => {
      const room = this.opts.quotas.reserve(owner, record, 1, 'a restore')
      try {
        const sandbox = await this.opts.lifecycle.createFromSnapshot(owner, record)
        this.opts.events.emit('sandbox.restored', sandbox, { snapshotId, memory: record.memory })
        return sandbox
      } finally {
        room.release()
      }
    })
  }

  /**
   * `count` independent children of a sandbox, each with its filesystem and, with CRIU, its processes and
   * memory at fork time. The work is done once (one checkpoint, one commit), the children start in
   * parallel, and a child that fails to start is reported while the others come back. Room for all the
   * children is taken in the key's quota before the parent is captured, or the fork answers 429 and
   * makes nothing: a partial fork is for children the engine fails to start, never for a quota.
   */
  async fork(owner: string, id: string, count: number, injectedFailures = 0): Promise<ForkResult> {
    const parent = this.registry.get(owner, id)
    const room = this.opts.quotas.reserve(owner, parent, count, `a fork of ${count}`)
    try {
      return await this.forkWithin(owner, id, count, injectedFailures)
    } finally {
      room.release()
    }
  }

  private async forkWithin(
    owner: string,
    id: string,
    count: number,
    injectedFailures: number,
  ): Promise<ForkResult> {
    const parent = this.registry.get(owner, id)
    const record = await this.registry.locks.run(id, async () => {
      this.registry.assertAlive(parent)
      return this.capture(parent, newSnapshotId())
    })
    // The children start outside the lock: the fork counts as an operation in flight on the parent, so
    // its idle timer cannot destroy it meanwhile (starting them took longer than a 5 s timeout on a busy
    // machine, and the fork then answered 404 with its children made).
    parent.inFlight++
    try {
      // A fork_partial fault (the control plane) fails the last children without starting them.
      const settled = await Promise.allSettled(
        Array.from({ length: count }, (_, i) =>
          i >= count - injectedFailures
            ? Promise.reject(new EmulatorError('engine_error', 500, 'child failed to start (injected fault)'))
            : this.opts.lifecycle.createFromSnapshot(owner, record, parent.timeoutSec),
        ),
      )
      const forks: Sandbox[] = []
      const failed: ForkFailure[] = []
      settled.forEach((r, index) => {
        if (r.status === 'fulfilled') forks.push(r.value)
        else
          failed.push({
            index,
            code: (r.reason as { code?: string }).code ?? 'internal',
            message: String((r.reason as Error).message ?? r.reason),
          })
      })
      if (failed.length > 0) this.opts.log.warn({ runId: id, failed }, 'some fork children failed to start')
      this.registry.touch(owner, id)
      this.opts.events.emit('sandbox.forked', parent, {
        count,
        children: forks.map((f) => f.id),
        failed: failed.length,
        memory: record.memory,
      })
      for (const child of forks)
        this.opts.events.emit('sandbox.restored', child, { forkedFrom: id, memory: record.memory })
      if (forks.length === 0)
        throw failed[0]
          ? Errors.engine(`every fork child failed to start: ${failed[0].message}`)
          : Errors.engine('fork produced no children')
      return { forks, failed }
    } finally {
      parent.inFlight--
      // The children run on the image, so deleting the fork's snapshot drops only its checkpoint files;
      // the image goes when the last child does (the lifecycle's releaseEngineImage).
      await this.engine
        .deleteSnapshot(record.stored)
        .catch((err) => this.opts.log.warn({ runId: id, err }, 'could not clean up after fork'))
    }
  }

  async hibernate(owner: string, id: string): Promise<Sandbox> {
    const s = this.registry.get(owner, id)
    return this.registry.locks.run(id, async () => {
      this.registry.assertAlive(s)
      if (s.status === 'hibernated') return s
      if (s.inFlight > 0) {
        throw Errors.conflict(
          `sandbox ${id} has ${s.inFlight} operation(s) in flight; hibernating would kill them`,
          { id },
        )
      }
      const withMemory = this.requireMemory('hibernate')
      if (withMemory) await this.checkpointing(s, () => this.engine.hibernate(s.containerId, true))
      else await this.engine.hibernate(s.containerId, false)
      s.status = 'hibernated'
      s.hibernation = withMemory ? 'memory' : 'pause'
      s.hibernatedAt = this.now()
      this.registry.disarm(id)
      this.registry.save(s)
      this.opts.log.info(
        { runId: id, containerId: s.containerId, hibernation: s.hibernation },
        'sandbox hibernated',
      )
      this.opts.events.emit('sandbox.hibernated', s, { memory: withMemory })
      return s
    })
  }

  async resume(owner: string, id: string): Promise<Sandbox> {
    const s = this.registry.get(owner, id)
    return this.registry.locks.run(id, async () => {
      this.registry.assertAlive(s)
      if (s.status === 'running') return s
      await this.engine.resume(s.containerId, s.hibernation === 'memory')
      const now = this.now()
      s.hibernatedMs += now - (s.hibernatedAt ?? now)
      s.hibernatedAt = undefined
      s.hibernation = undefined
      s.status = 'running'
      this.registry.touch(owner, id)
      this.registry.save(s)
      this.opts.log.info({ runId: id, containerId: s.containerId }, 'sandbox resumed')
      this.opts.events.emit('sandbox.resumed', s, {})
      return s
    })
  }

  /**
   * Checkpoints a running sandbox's processes (`attempt`), its connections closed first, and tries once
   * more if the engine fails: CRIU refuses a guest holding a TCP connection, and one just closed on the
   * emulator's side can linger in a guest process that has not run yet (seen on busy machines). Logged,
   * so a guest that keeps a connection open for good shows up beside the final error.
   */
  private async checkpointing<T>(s: Sandbox, attempt: () => Promise<T>): Promise<T> {
    await this.opts.beforeCheckpoint?.(s.id)
    try {
      return await attempt()
    } catch (err) {
      if (!(err instanceof EmulatorError) || err.code !== 'engine_error') throw err
      this.opts.log.warn(
        { runId: s.id, containerId: s.containerId, err },
        'checkpoint failed; closing connections again and retrying once',
      )
      await new Promise((r) => setTimeout(r, CHECKPOINT_RETRY_DELAY_MS))
      await this.opts.beforeCheckpoint?.(s.id)
      return attempt()
    }
  }

  /** Files always; memory when the engine can (else files only, or a 409 in strict mode). */
  private async capture(s: Sandbox, snapshotId: string): Promise<SnapshotRecord> {
    const hibernated = s.status === 'hibernated'
    // A paused (not checkpointed) hibernation has no memory image to copy.
    const withMemory = this.requireMemory('snapshot') && !(hibernated && s.hibernation === 'pause')
    const take = () =>
      this.engine.snapshot(s.containerId, {
        snapshotId,
        artifactDir: this.opts.catalog.artifactDir(snapshotId),
        withMemory,
        hibernated,
      })
    // A hibernated sandbox's checkpoint exists already; only a running one is checkpointed now.
    const outcome = withMemory && !hibernated ? await this.checkpointing(s, take) : await take()
    return {
      id: snapshotId,
      runId: s.id,
      owner: s.owner,
      createdAt: this.now(),
      sizeBytes: outcome.sizeBytes,
      memory: withMemory,
      image: s.image,
      vcpus: s.vcpus,
      memMib: s.memMib,
      diskMib: s.diskMib,
      timeoutSec: s.timeoutSec,
      credentialNames: s.credentialNames,
      // Restores and forks keep the parent's policy: a snapshot is no way around it.
      ...(s.egress ? { egress: s.egress } : {}),
      stored: outcome.stored,
    }
  }

  /** True when memory can be kept; false to degrade; a 409 in strict mode when it cannot. */
  private requireMemory(what: string): boolean {
    const memory = this.engine.memorySupport()
    if (memory.available) return true
    if (this.opts.strict) {
      throw new EmulatorError(
        'capability_unavailable',
        409,
        `${what} cannot keep memory here (${memory.reason}) and strict mode is on`,
        { reason: memory.reason },
      )
    }
    return false
  }
}
