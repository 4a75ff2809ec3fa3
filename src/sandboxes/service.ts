import { existsSync } from 'node:fs'
import type { Readable } from 'node:stream'
import type { PricingConfig } from '../config.ts'
import type { EgressPolicy } from '../egress/policy.ts'
import { EmulatorError, Errors } from '../errors.ts'
import { GuestAddresses } from './addresses.ts'
import { costCents } from './billing.ts'
import type { Clock } from './clock.ts'
import type { EgressPort } from './egress-port.ts'
import type { FileDownload, ManagedSandbox, SandboxEngine, SandboxSpec } from './engine.ts'
import { type SandboxEventName, SandboxEvents } from './events.ts'
import { sameFilesystemView } from './fs-view.ts'
import { IdleTimers } from './idle-timers.ts'
import { newRunId, newSnapshotId } from './ids.ts'
import { type InstanceIdentity, LABEL, sandboxLabels } from './labels.ts'
import { KeyedLock } from './locks.ts'
import { billableMs, type Sandbox } from './sandbox.ts'
import type { SnapshotRecord, SnapshotStore } from './snapshot-store.ts'
import type { PersistedSandbox, SandboxStateStore } from './state-store.ts'
import type { WarmPool } from './warm-pool.ts'

/** The structured logger the domain writes to (pino's shape; the app passes Fastify's logger). */
export interface Logger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
  debug(obj: object, msg?: string): void
}

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

export interface DestroyResult {
  status: 'destroyed'
  cpu_ms: number
  mem_peak_bytes: number
  uptime_ms: number
  cost_cents: number
}

export interface ExecResult {
  exit_code: number
  stdout: string
  stderr: string
}

export type DestroyReason = 'api' | 'idle_timeout' | 'reset'

export interface ForkFailure {
  index: number
  code: string
  message: string
}

export interface ForkResult {
  forks: Sandbox[]
  failed: ForkFailure[]
}

/** Owner of seeded snapshots that every key may list and restore. */
export const SHARED_OWNER = '*'

/** How many children one fork may ask for. */
export const MAX_FORK_COUNT = 20

/** What url(port) needs to reach a sandbox's own ports. */
export interface ProxyTarget {
  sandbox: Sandbox
  /** The sandbox's address on the engine's network. */
  address: string
}

/** Proxy traffic re-arms the idle timer at most this often (it arrives per request and per chunk). */
const PROXY_ACTIVITY_GRANULARITY_MS = 1000

export interface SandboxServiceOptions {
  engine: SandboxEngine
  clock: Clock
  pricing: PricingConfig
  identity: InstanceIdentity
  logger: Logger
  execOutputLimit: number
  snapshots: SnapshotStore
  /** Started containers handed out by create when one fits (none: every create is cold). */
  pool?: WarmPool
  /** Mutable sandbox state on disk, so a restart (even SIGKILL) loses nothing. */
  state: SandboxStateStore
  /** Fail instead of degrading when memory cannot be kept (snapshot, fork, hibernate). */
  strict: boolean
  /**
   * Called before a sandbox is checkpointed: CRIU refuses established TCP connections, so the proxy
   * closes its pooled keep-alive connections to the guest here.
   */
  beforeCheckpoint?: (runId: string) => Promise<void>
  /** Enforces egress policies (isolated network + egress proxy); without it a policy is refused (409). */
  egress?: EgressPort
}

/**
 * The sandbox lifecycle for the sandboxes of each API key: create, exec, files, idle timeout, snapshot,
 * restore, fork, hibernate, resume, destroy. Knows nothing of HTTP or Docker; talks to the engine
 * through the SandboxEngine port.
 */
export class SandboxService {
  private readonly sandboxes = new Map<string, Sandbox>()
  private readonly opts: SandboxServiceOptions
  readonly events = new SandboxEvents()
  private readonly addresses: GuestAddresses
  private readonly proxiedPorts = new WeakMap<Sandbox, Set<number>>()
  private readonly idle: IdleTimers
  /** Lifecycle operations, one at a time per sandbox. */
  private readonly lifecycle = new KeyedLock()
  /** Restores in flight per snapshot, so a delete waits for them instead of pulling files from under them. */
  private readonly snapshotUse = new KeyedLock()

  constructor(opts: SandboxServiceOptions) {
    this.opts = opts
    this.addresses = new GuestAddresses(opts.engine, this.events)
    this.idle = new IdleTimers(opts.clock, (s) => this.onIdle(s))
  }

  get identity(): InstanceIdentity {
    return this.opts.identity
  }

  private get engine(): SandboxEngine {
    return this.opts.engine
  }

  private get log(): Logger {
    return this.opts.logger
  }

  private now(): number {
    return this.opts.clock.now()
  }

  /** Rebuilds the sandboxes this instance (same data dir) left behind; reaps what cannot be rebuilt. */
  async recover(): Promise<{ adopted: number; reaped: number }> {
    const { instanceId } = this.opts.identity
    const found = await this.engine.listManaged({ [LABEL.app]: '1' })
    const saved = this.opts.state.byContainer()
    let adopted = 0
    let reaped = 0
    for (const c of found) {
      if (c.labels[LABEL.instance] !== instanceId) {
        // Another emulator's sandbox: leave it alone, unless that emulator's data dir is gone for good
        // (a test run's temporary dir, say), in which case nothing can ever adopt it. Only an emulator
        // that sees the same files can tell (not one in a container, for the host's): see fs-view.ts.
        const dir = c.labels[LABEL.dataDir]
        if (dir && sameFilesystemView(c.labels) && !existsSync(dir)) {
          await this.engine.remove(c.containerId)
          reaped++
          this.log.warn(
            { containerId: c.containerId, dataDir: dir },
            'reaped a sandbox whose emulator data dir is gone',
          )
        }
        continue
      }
      const sandbox = await this.rebuild(c, saved.get(c.containerId))
      if (!sandbox) {
        await this.engine.remove(c.containerId)
        reaped++
        this.log.warn(
          { containerId: c.containerId, runId: c.labels[LABEL.runId], state: c.state },
          c.labels[LABEL.pool]
            ? 'reaped a warm-pool container left by the previous run'
            : 'reaped a container this emulator created but no longer knows (create or destroy cut short)',
        )
        continue
      }
      this.sandboxes.set(sandbox.id, sandbox)
      // Idle timers carry on from the last recorded activity, not from the restart.
      if (sandbox.status === 'running') this.idle.arm(sandbox)
      adopted++
      this.log.info(
        { runId: sandbox.id, containerId: c.containerId, status: sandbox.status },
        'adopted sandbox after restart',
      )
    }
    for (const id of this.opts.state.ids()) {
      if (this.sandboxes.has(id)) continue
      this.opts.state.delete(id)
      this.log.warn(
        { runId: id },
        'a sandbox recorded in the data dir has no container any more (removed outside the emulator)',
      )
    }
    // Adopted sandboxes with a policy need their proxy back; until it is, they reach nothing (fail closed).
    if (this.opts.egress && [...this.sandboxes.values()].some((s) => s.egress)) {
      await this.opts.egress
        .prepare()
        .catch((err) =>
          this.log.error({ err }, 'egress proxy not restored: sandboxes with a policy reach nothing'),
        )
    }
    return { adopted, reaped }
  }

  /** A sandbox from its state file, checked against its container; undefined when it has none. */
  private async rebuild(
    c: ManagedSandbox,
    saved: PersistedSandbox | undefined,
  ): Promise<Sandbox | undefined> {
    if (c.state === 'stopped' || !saved) return undefined
    const sandbox: Sandbox = { ...saved, inFlight: 0, secrets: [] }
    sandbox.secrets = await this.secretsOf(c.containerId, saved.credentialNames)
    if (c.state === 'hibernated') {
      // The container says hibernated even if the emulator died before recording it.
      sandbox.status = 'hibernated'
      sandbox.hibernatedAt = saved.hibernatedAt ?? this.now()
      sandbox.hibernation = saved.hibernation ?? (this.engine.memorySupport().available ? 'memory' : 'pause')
    } else {
      sandbox.status = 'running'
      sandbox.hibernatedAt = undefined
      sandbox.hibernation = undefined
    }
    return sandbox
  }

  async create(owner: string, input: CreateInput): Promise<Sandbox> {
    // A pooled container cannot take credentials (a started container's environment is fixed), so a
    // sandbox with credentials is always created cold.
    const poolable = Object.keys(input.credentials).length === 0 && !input.egress
    const pooled = poolable
      ? this.opts.pool?.take({ image: input.image, vcpus: input.vcpus, memMib: input.memMib })
      : undefined
    if (!pooled) await this.engine.ensureImage(input.image)
    const started = this.now()
    const base = this.newSandbox(owner, { ...input, engineImage: input.image }, started)
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
    const sandbox = this.adopt(base, containerId, started)
    this.emit('sandbox.created', sandbox, {
      image: sandbox.image,
      vcpus: sandbox.vcpus,
      mem_mib: sandbox.memMib,
      disk_mib: sandbox.diskMib,
      timeout: sandbox.timeoutSec,
      // Names only: credential values never leave the sandbox's environment.
      credentials: Object.keys(input.credentials),
      ...(sandbox.egress ? { network: sandbox.egress } : {}),
    })
    return sandbox
  }

  list(owner: string): Sandbox[] {
    return [...this.sandboxes.values()].filter((s) => s.owner === owner && s.status !== 'destroying')
  }

  /** The caller's sandbox; another key's sandbox is indistinguishable from a missing one (404). */
  get(owner: string, id: string): Sandbox {
    const s = this.sandboxes.get(id)
    if (!s || s.owner !== owner) throw Errors.runNotFound(id)
    return s
  }

  /** Marks API activity on a sandbox, which restarts its idle timer (a hibernated one has none). */
  touch(owner: string, id: string): Sandbox {
    const s = this.get(owner, id)
    s.lastActivityAt = this.now()
    if (s.status === 'running') this.idle.arm(s)
    this.opts.state.saveActivity(s)
    return s
  }

  setTimeout(owner: string, id: string, timeoutSec: number): Sandbox {
    const s = this.get(owner, id)
    s.timeoutSec = timeoutSec
    this.emit('timeout.set', s, { timeout: timeoutSec })
    this.touch(owner, id)
    this.opts.state.save(s)
    return s
  }

  async destroy(owner: string, id: string, reason: DestroyReason = 'api'): Promise<DestroyResult> {
    const s = this.get(owner, id)
    if (s.status === 'destroying') throw Errors.conflict(`sandbox ${id} is already being destroyed`, { id })
    const statusBefore = s.status
    // Billing stops when the destroy is asked for (or the idle timer fires), not when Docker is done.
    const endedAt = this.now()
    s.status = 'destroying'
    this.idle.cancel(id)
    return this.lifecycle.run(id, async () => {
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
        if (s.status === 'running') this.idle.arm(s)
        throw err
      }
      const now = endedAt
      this.sandboxes.delete(id)
      this.opts.state.delete(id)
      const result: DestroyResult = {
        status: 'destroyed',
        cpu_ms: usage.cpuMs,
        mem_peak_bytes: usage.memPeakBytes,
        uptime_ms: Math.max(0, now - s.createdAt),
        cost_cents: costCents(this.opts.pricing, s.vcpus, s.memMib, billableMs(s, now)),
      }
      this.log.info({ ...log, ...result }, 'sandbox destroyed')
      this.emit('sandbox.destroyed', s, { reason, ...result, billable_ms: billableMs(s, now) })
      await this.releaseEngineImage(s)
      return result
    })
  }

  async exec(owner: string, id: string, command: string, timeoutSec: number): Promise<ExecResult> {
    return this.withActivity(owner, id, async (s) => {
      const started = this.now()
      this.emit('exec.start', s, { command, timeout: timeoutSec })
      const out = await this.engine.exec(s.containerId, {
        command,
        timeoutMs: Math.round(timeoutSec * 1000),
        outputLimit: this.opts.execOutputLimit,
      })
      let stderr = out.stderr.toString('utf8')
      const limit = this.opts.execOutputLimit
      if (out.stdoutTruncated) stderr += `\n[isorun-emulator: stdout truncated to its first ${limit} bytes]\n`
      if (out.stderrTruncated) stderr += `\n[isorun-emulator: stderr truncated to its first ${limit} bytes]\n`
      if (out.timedOut)
        stderr += `\n[isorun-emulator: command timed out after ${timeoutSec}s and was killed]\n`
      this.emit('exec.end', s, {
        exit_code: out.exitCode,
        timed_out: out.timedOut,
        duration_ms: this.now() - started,
        stdout_bytes: out.stdout.length,
        stderr_bytes: out.stderr.length,
      })
      return { exit_code: out.exitCode, stdout: out.stdout.toString('utf8'), stderr }
    })
  }

  async writeFile(owner: string, id: string, path: string, size: number, content: Readable): Promise<void> {
    await this.withActivity(owner, id, async (s) => {
      await this.engine.writeFile(s.containerId, path, size, content)
      this.emit('file.write', s, { path, size })
    })
  }

  async readFile(owner: string, id: string, path: string): Promise<FileDownload> {
    return this.withActivity(owner, id, (s) => this.engine.readFile(s.containerId, path))
  }

  async listDir(owner: string, id: string, path: string): Promise<string[]> {
    return this.withActivity(owner, id, (s) => this.engine.listDir(s.containerId, path))
  }

  // --- state: snapshot, restore, fork, hibernate, resume -----------------------------------------

  /** Whether snapshots, forks and hibernation keep memory here, or degrade to files (and pause). */
  memoryState(): { available: boolean; reason: string; strict: boolean } {
    return { ...this.engine.memorySupport(), strict: this.opts.strict }
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
    const s = this.get(owner, id)
    return this.lifecycle.run(id, async () => {
      this.assertAlive(s)
      const record = await this.capture(s, as?.snapshotId ?? newSnapshotId())
      if (as) record.owner = as.owner
      this.opts.snapshots.put(record)
      this.touch(owner, id)
      this.log.info(
        { runId: id, snapshotId: record.id, memory: record.memory, sizeBytes: record.sizeBytes },
        'snapshot taken',
      )
      this.emit('snapshot.created', s, {
        snapshot_id: record.id,
        size_bytes: record.sizeBytes,
        memory: record.memory,
      })
      return record
    })
  }

  listSnapshots(owner: string): SnapshotRecord[] {
    return [...this.opts.snapshots.list(owner), ...this.opts.snapshots.list(SHARED_OWNER)]
  }

  /** Deletes the seeded snapshots every key shares (when the emulator's data dir itself goes away). */
  async deleteSharedSnapshots(): Promise<number> {
    const shared = this.opts.snapshots.list(SHARED_OWNER)
    for (const r of shared) await this.deleteSnapshot(SHARED_OWNER, r.id)
    return shared.length
  }

  hasSnapshot(snapshotId: string): boolean {
    return this.opts.snapshots.get(snapshotId) !== undefined
  }

  async deleteSnapshot(owner: string, snapshotId: string): Promise<void> {
    const record = this.ownSnapshot(owner, snapshotId)
    if (record.owner === SHARED_OWNER && owner !== SHARED_OWNER) {
      throw new EmulatorError(
        'forbidden',
        403,
        `snapshot ${snapshotId} comes from the seed file; remove it there`,
        {
          id: snapshotId,
        },
      )
    }
    // Wait for restores of this snapshot in flight; new ones find it gone once it is removed below.
    await this.snapshotUse.run(snapshotId, async () => {
      if (!this.opts.snapshots.get(snapshotId)) throw Errors.snapshotNotFound(snapshotId)
      this.opts.snapshots.delete(snapshotId)
      await this.engine.deleteSnapshot(record.stored)
    })
    this.log.info({ snapshotId }, 'snapshot deleted')
  }

  async restore(owner: string, snapshotId: string): Promise<Sandbox> {
    return this.snapshotUse.run(snapshotId, async () => {
      const record = this.ownSnapshot(owner, snapshotId)
      const sandbox = await this.startFromSnapshot(owner, record)
      this.emit('sandbox.restored', sandbox, { snapshot_id: snapshotId, memory: record.memory })
      return sandbox
    })
  }

  /**
   * `count` independent children of a sandbox, each with its filesystem and, with CRIU, its processes and
   * memory at fork time. The work is done once (one checkpoint, one commit), the children start in
   * parallel, and a child that fails to start is reported while the others come back.
   */
  async fork(owner: string, id: string, count: number, injectedFailures = 0): Promise<ForkResult> {
    const parent = this.get(owner, id)
    const record = await this.lifecycle.run(id, async () => {
      this.assertAlive(parent)
      return this.capture(parent, newSnapshotId())
    })
    try {
      // A fork_partial fault (the control plane) fails the last children without starting them.
      const settled = await Promise.allSettled(
        Array.from({ length: count }, (_, i) =>
          i >= count - injectedFailures
            ? Promise.reject(new EmulatorError('engine_error', 500, 'child failed to start (injected fault)'))
            : this.startFromSnapshot(owner, record, parent.timeoutSec),
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
      if (failed.length > 0) this.log.warn({ runId: id, failed }, 'some fork children failed to start')
      this.touch(owner, id)
      this.emit('sandbox.forked', parent, {
        count,
        children: forks.map((f) => f.id),
        failed: failed.length,
        memory: record.memory,
      })
      for (const child of forks)
        this.emit('sandbox.restored', child, { forked_from: id, memory: record.memory })
      if (forks.length === 0)
        throw failed[0]
          ? Errors.engine(`every fork child failed to start: ${failed[0].message}`)
          : Errors.engine('fork produced no children')
      return { forks, failed }
    } finally {
      // The children run on the image, so deleting the fork's snapshot drops only its checkpoint files;
      // the image goes when the last child does (releaseEngineImage).
      await this.engine
        .deleteSnapshot(record.stored)
        .catch((err) => this.log.warn({ runId: id, err }, 'could not clean up after fork'))
    }
  }

  async hibernate(owner: string, id: string): Promise<Sandbox> {
    const s = this.get(owner, id)
    return this.lifecycle.run(id, async () => {
      this.assertAlive(s)
      if (s.status === 'hibernated') return s
      if (s.inFlight > 0) {
        throw Errors.conflict(
          `sandbox ${id} has ${s.inFlight} operation(s) in flight; hibernating would kill them`,
          { id },
        )
      }
      const withMemory = this.requireMemory('hibernate')
      if (withMemory) await this.opts.beforeCheckpoint?.(id)
      await this.engine.hibernate(s.containerId, withMemory)
      s.status = 'hibernated'
      s.hibernation = withMemory ? 'memory' : 'pause'
      s.hibernatedAt = this.now()
      this.idle.cancel(id)
      this.opts.state.save(s)
      this.log.info(
        { runId: id, containerId: s.containerId, hibernation: s.hibernation },
        'sandbox hibernated',
      )
      this.emit('sandbox.hibernated', s, { memory: withMemory })
      return s
    })
  }

  async resume(owner: string, id: string): Promise<Sandbox> {
    const s = this.get(owner, id)
    return this.lifecycle.run(id, async () => {
      this.assertAlive(s)
      if (s.status === 'running') return s
      await this.engine.resume(s.containerId, s.hibernation === 'memory')
      const now = this.now()
      s.hibernatedMs += now - (s.hibernatedAt ?? now)
      s.hibernatedAt = undefined
      s.hibernation = undefined
      s.status = 'running'
      this.touch(owner, id)
      this.opts.state.save(s)
      this.log.info({ runId: id, containerId: s.containerId }, 'sandbox resumed')
      this.emit('sandbox.resumed', s, {})
      return s
    })
  }

  /**
   * Back to a clean slate without a restart: destroys every sandbox (of one key, or all) and deletes
   * their snapshots. History and audit logs stay, as they would on the real service.
   */
  async reset(owner?: string): Promise<{ destroyed: number; snapshots_deleted: number }> {
    const doomed = [...this.sandboxes.values()].filter((s) => !owner || s.owner === owner)
    const results = await Promise.allSettled(doomed.map((s) => this.destroy(s.owner, s.id, 'reset')))
    // Seeded snapshots shared by every key are part of the seed state: reset keeps them.
    const snapshots = this.opts.snapshots
      .all()
      .filter((r) => r.owner !== SHARED_OWNER && (!owner || r.owner === owner))
    for (const r of snapshots) await this.deleteSnapshot(r.owner, r.id).catch(() => {})
    return {
      destroyed: results.filter((r) => r.status === 'fulfilled').length,
      snapshots_deleted: snapshots.length,
    }
  }

  // --- url(port) ------------------------------------------------------------------------------

  /**
   * A sandbox by id alone, whoever owns it, for url(port): that URL embeds the unguessable run id and is
   * itself the credential. Only a running sandbox has ports to reach.
   */
  async proxyTarget(id: string): Promise<ProxyTarget> {
    const s = this.sandboxes.get(id)
    if (!s) throw Errors.runNotFound(id)
    if (s.status !== 'running') {
      throw Errors.conflict(
        `sandbox ${id} is ${s.status === 'destroying' ? 'being destroyed' : s.status}, not running: its ports cannot be reached`,
        { id, status: s.status },
      )
    }
    return { sandbox: s, address: await this.addresses.get(s.containerId) }
  }

  /**
   * Every running sandbox with its address, whoever owns it, for requests that name no sandbox: root
   * DevTools discovery looks among them for the one browser. A sandbox whose address cannot be read
   * (being torn down) is left out.
   */
  async runningProxyTargets(): Promise<ProxyTarget[]> {
    const running = [...this.sandboxes.values()].filter((s) => s.status === 'running')
    const targets = await Promise.all(
      running.map(async (sandbox) => {
        const address = await this.addresses.get(sandbox.containerId).catch(() => undefined)
        return address ? { sandbox, address } : undefined
      }),
    )
    return targets.filter((t): t is ProxyTarget => t !== undefined)
  }

  /** The guest answered on `port`: the first time per sandbox and port is a 'proxy.opened' event. */
  noteProxyOpened(s: Sandbox, port: number): void {
    let ports = this.proxiedPorts.get(s)
    if (!ports) {
      ports = new Set()
      this.proxiedPorts.set(s, ports)
    }
    if (ports.has(port)) return
    ports.add(port)
    this.emit('proxy.opened', s, { port })
  }

  /**
   * Proxy traffic is activity. Called per request and per streamed chunk, so it only re-arms the idle
   * timer when a second has passed since the last activity (the timeout then fires at most that early).
   */
  noteProxyActivity(s: Sandbox): void {
    const now = this.now()
    if (now - s.lastActivityAt < PROXY_ACTIVITY_GRANULARITY_MS) return
    if (s.status !== 'running' || this.sandboxes.get(s.id) !== s) return
    s.lastActivityAt = now
    this.idle.arm(s)
  }

  // --- egress ---------------------------------------------------------------------------------

  /** The running sandbox with an egress policy at `address` (its IP on the isolated network), for the egress proxy. */
  async egressSandboxAt(address: string): Promise<Sandbox | undefined> {
    for (const s of this.sandboxes.values()) {
      if (!s.egress || s.status !== 'running') continue
      const at = await this.addresses.get(s.containerId).catch(() => undefined)
      if (at === address) return s
    }
    return undefined
  }

  /** The egress proxy refused a destination: a 'network.blocked' event (the audit log records it). */
  noteNetworkBlocked(
    s: Sandbox,
    blocked: { host: string; port: number; method: string; reason: string },
  ): void {
    this.emit('network.blocked', s, { ...blocked })
  }

  /** Stops the idle timers; sandboxes keep running and are adopted by the next start. */
  close(): void {
    this.idle.cancelAll()
  }

  // --- internals ------------------------------------------------------------------------------

  private newSandbox(
    owner: string,
    input: Pick<
      CreateInput,
      'image' | 'vcpus' | 'memMib' | 'diskMib' | 'timeoutSec' | 'credentials' | 'egress'
    > & {
      engineImage: string
    },
    at: number,
  ): Omit<Sandbox, 'containerId'> {
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
  private async withEgress(base: Omit<Sandbox, 'containerId'>, spec: SandboxSpec): Promise<SandboxSpec> {
    if (!base.egress) return spec
    if (!this.opts.egress) {
      throw new EmulatorError('capability_unavailable', 409, 'egress policies cannot be enforced here')
    }
    const setup = await this.opts.egress.prepare()
    return { ...spec, env: { ...spec.env, ...setup.env }, egress: setup.attachment }
  }

  private specFor(base: Omit<Sandbox, 'containerId'>, env: Record<string, string>): SandboxSpec {
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

  /** Registers a sandbox whose container now runs, and starts its idle timer. */
  private adopt(base: Omit<Sandbox, 'containerId'>, containerId: string, started: number): Sandbox {
    const at = this.now()
    const sandbox: Sandbox = { ...base, containerId, createMs: at - started, lastActivityAt: at }
    // On disk before the caller hears of it: a container without its state file is reaped at start.
    this.opts.state.save(sandbox)
    this.sandboxes.set(sandbox.id, sandbox)
    this.idle.arm(sandbox)
    this.log.info(
      { runId: sandbox.id, containerId, image: sandbox.image, createMs: sandbox.createMs },
      'sandbox created',
    )
    return sandbox
  }

  /** Files always; memory when the engine can (else files only, or a 409 in strict mode). */
  private async capture(s: Sandbox, snapshotId: string): Promise<SnapshotRecord> {
    const hibernated = s.status === 'hibernated'
    // A paused (not checkpointed) hibernation has no memory image to copy.
    const withMemory = this.requireMemory('snapshot') && !(hibernated && s.hibernation === 'pause')
    if (withMemory && !hibernated) await this.opts.beforeCheckpoint?.(s.id)
    const outcome = await this.engine.snapshot(s.containerId, {
      snapshotId,
      artifactDir: this.opts.snapshots.artifactDir(snapshotId),
      withMemory,
      hibernated,
    })
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

  private async startFromSnapshot(
    owner: string,
    record: SnapshotRecord,
    timeoutSec = record.timeoutSec,
  ): Promise<Sandbox> {
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
    base.secrets = await this.secretsOf(containerId, base.credentialNames)
    return this.adopt(base, containerId, started)
  }

  /** Credential values from the container's environment, for masking (only when there are any). */
  private async secretsOf(containerId: string, names: string[]): Promise<string[]> {
    if (names.length === 0) return []
    const env = await this.engine.env(containerId).catch(() => ({}) as Record<string, string>)
    return names.map((n) => env[n]).filter((v): v is string => typeof v === 'string')
  }

  private ownSnapshot(owner: string, snapshotId: string): SnapshotRecord {
    const record = this.opts.snapshots.get(snapshotId)
    if (!record || (record.owner !== owner && record.owner !== SHARED_OWNER))
      throw Errors.snapshotNotFound(snapshotId)
    return record
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
        {
          reason: memory.reason,
        },
      )
    }
    return false
  }

  private assertAlive(s: Sandbox): void {
    if (this.sandboxes.get(s.id) !== s || s.status === 'destroying') throw Errors.runNotFound(s.id)
  }

  /** Removes an image the emulator made for a fork or restore once no snapshot and no sandbox needs it. */
  private async releaseEngineImage(s: Pick<Sandbox, 'image' | 'engineImage'>): Promise<void> {
    const image = s.engineImage
    // Only images the emulator made (a restore's or fork's) are its to remove.
    if (image === s.image) return
    if (this.opts.snapshots.all().some((r) => r.stored.image === image)) return
    if ([...this.sandboxes.values()].some((s) => s.engineImage === image)) return
    await this.engine
      .releaseImage(image)
      .catch((err) => this.log.warn({ image, err }, 'could not remove an unused snapshot image'))
  }

  private emit(event: SandboxEventName, sandbox: Sandbox, data: Record<string, unknown> = {}): void {
    this.events.emit({ event, sandbox, at: this.now(), data }, (err) =>
      this.log.error({ runId: sandbox.id, event, err }, 'sandbox event listener failed'),
    )
  }

  /**
   * Runs an exec or file operation: it waits while a lifecycle operation (a checkpoint's pause, say) is
   * under way, refuses a hibernated sandbox (409: resume it first), counts as activity, and keeps the
   * sandbox from going idle while it runs.
   */
  private async withActivity<T>(owner: string, id: string, op: (s: Sandbox) => Promise<T>): Promise<T> {
    if (this.lifecycle.busy(id)) await this.lifecycle.idle(id)
    const s = this.touch(owner, id)
    if (s.status === 'destroying') throw Errors.conflict(`sandbox ${id} is being destroyed`, { id })
    if (s.status === 'hibernated') {
      throw Errors.conflict(`sandbox ${id} is hibernated; resume it first`, { id, status: s.status })
    }
    s.inFlight++
    try {
      return await op(s)
    } finally {
      s.inFlight--
      if (this.sandboxes.get(id) === s && s.status === 'running') this.touch(owner, id)
    }
  }

  private onIdle(s: Sandbox): void {
    if (this.sandboxes.get(s.id) !== s || s.status !== 'running') return
    // An operation still running keeps the sandbox alive; its end re-arms the timer.
    if (s.inFlight > 0 || this.lifecycle.busy(s.id)) return
    this.log.info(
      { runId: s.id, containerId: s.containerId, timeoutSec: s.timeoutSec },
      'idle timeout reached',
    )
    this.destroy(s.owner, s.id, 'idle_timeout').catch((err) =>
      this.log.error({ runId: s.id, containerId: s.containerId, err }, 'idle destroy failed'),
    )
  }
}
