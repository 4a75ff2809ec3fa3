import { Readable } from 'node:stream'
import { Errors } from '../../src/errors.ts'
import type {
  ContainerExit,
  EngineInfo,
  ExecOutcome,
  ExecRequest,
  FileDownload,
  ManagedSandbox,
  MemorySupport,
  PoolSpec,
  ResourceUsage,
  SandboxEngine,
  SandboxSpec,
  SnapshotOutcome,
  SnapshotRequest,
  StopWatch,
  StoredSnapshot,
} from '../../src/sandboxes/engine.ts'

/** Engine calls a test can hold at their start, to see what happens while one is under way. */
export type HeldCall = 'exec' | 'snapshot' | 'restore' | 'hibernate' | 'remove' | 'createPooled'

export interface Hold {
  /** Resolves once the held call has started (and is waiting). */
  reached: Promise<void>
  release(): void
}

/**
 * An in-memory SandboxEngine for the HTTP-layer tests (validation, auth, error mapping) and the domain
 * tests (test/domain.test.ts), which need no containers. Anything that would need a real guest is
 * answered from simple maps; `calls` says what was asked, in order, and `hold` pauses a call midway.
 */
export class FakeEngine implements SandboxEngine {
  reachable = true
  /** What info() says of the engine's host. */
  hostCpus = 4
  hostMemoryBytes = 16 * 1024 ** 3
  readonly created: SandboxSpec[] = []
  readonly files = new Map<string, Buffer>()
  readonly removed: string[] = []
  /** `<call> <container or snapshot>` for the calls that change something, in the order they started. */
  readonly calls: string[] = []
  /** This many of the next removes fail (as when Docker cannot remove a container). */
  failRemoves = 0
  private readonly holds = new Map<HeldCall, (() => Promise<void>)[]>()

  /** The next call of this kind waits at its start until released. */
  hold(call: HeldCall): Hold {
    let reached!: () => void
    let release!: () => void
    const started = new Promise<void>((resolve) => {
      reached = resolve
    })
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    const queue = this.holds.get(call) ?? []
    queue.push(async () => {
      reached()
      await released
    })
    this.holds.set(call, queue)
    return { reached: started, release }
  }

  private async enter(call: HeldCall, subject: string): Promise<void> {
    this.calls.push(`${call} ${subject}`)
    await this.holds.get(call)?.shift()?.()
  }

  async ping(): Promise<void> {
    if (!this.reachable) throw Errors.engineUnavailable('connect ENOENT /var/run/docker.sock')
  }

  async info(): Promise<EngineInfo> {
    await this.ping()
    return {
      engine: 'fake',
      version: '0',
      apiVersion: '0',
      os: 'fake',
      storageDriver: 'none',
      backingFs: undefined,
      cgroupVersion: '1',
      experimental: false,
      rootDir: '/nowhere',
      hostCpus: this.hostCpus,
      hostMemoryBytes: this.hostMemoryBytes,
    }
  }

  /** Every ensureImage call, with whether it allowed a pull. */
  readonly ensured: { image: string; pull: boolean }[] = []

  async ensureImage(image: string, options: { pull?: boolean } = {}): Promise<void> {
    this.ensured.push({ image, pull: options.pull !== false })
    if (image.startsWith('missing/')) throw Errors.imageUnavailable(image, 'not found')
  }

  async create(spec: SandboxSpec): Promise<string> {
    this.created.push(spec)
    return `fake-${spec.runId}`
  }

  readonly pooled: PoolSpec[] = []
  readonly claimed: [string, string][] = []

  async createPooled(spec: PoolSpec): Promise<string> {
    await this.enter('createPooled', spec.poolId)
    this.pooled.push(spec)
    return `fake-${spec.poolId}`
  }

  async claim(containerId: string, runId: string): Promise<void> {
    this.claimed.push([containerId, runId])
  }

  async exec(containerId: string, request: ExecRequest): Promise<ExecOutcome> {
    await this.enter('exec', containerId)
    return {
      exitCode: 0,
      stdout: Buffer.from(request.command),
      stderr: Buffer.alloc(0),
      timedOut: false,
      stdoutTruncated: false,
      stderrTruncated: false,
    }
  }

  async writeFile(containerId: string, path: string, _size: number, content: Readable): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of content) chunks.push(chunk as Buffer)
    this.files.set(`${containerId}:${path}`, Buffer.concat(chunks))
  }

  async readFile(containerId: string, path: string): Promise<FileDownload> {
    const data = this.files.get(`${containerId}:${path}`)
    if (!data) throw Errors.pathNotFound(path)
    return { size: data.length, stream: Readable.from([data]) }
  }

  async listDir(_containerId: string, path: string): Promise<string[]> {
    throw Errors.pathNotFound(path)
  }

  async usage(): Promise<ResourceUsage> {
    return { cpuMs: 1, memPeakBytes: 2 }
  }

  async remove(containerId: string): Promise<void> {
    await this.enter('remove', containerId)
    if (this.failRemoves > 0) {
      this.failRemoves--
      throw Errors.engine(`fake remove of ${containerId} failed`)
    }
    this.removed.push(containerId)
  }

  memory: MemorySupport = { available: false, reason: 'fake engine' }
  readonly hibernated = new Set<string>()
  /** Indexes (in start order) of restores that fail, to exercise partial fork failures. */
  failRestores = new Set<number>()
  private restores = 0

  memorySupport(): MemorySupport {
    return this.memory
  }

  /** Checkpoints (snapshots and hibernations with memory) tried, and how many of the next ones fail. */
  checkpointAttempts = 0
  failCheckpoints = 0

  private checkpoint(): void {
    this.checkpointAttempts++
    if (this.failCheckpoints > 0) {
      this.failCheckpoints--
      throw Errors.engine('fake checkpoint failed: criu failed: type NOTIFY errno 0')
    }
  }

  async snapshot(containerId: string, request: SnapshotRequest): Promise<SnapshotOutcome> {
    await this.enter('snapshot', containerId)
    if (request.withMemory && !request.hibernated) this.checkpoint()
    return { stored: { image: `fake-snapshot:${request.snapshotId}`, checkpointDir: null }, sizeBytes: 1 }
  }

  async restore(stored: StoredSnapshot, spec: SandboxSpec): Promise<string> {
    const n = this.restores++
    await this.enter('restore', stored.image)
    if (this.failRestores.has(n)) throw Errors.engine(`fake restore ${n} failed`)
    return this.create(spec)
  }

  async deleteSnapshot(stored: StoredSnapshot): Promise<void> {
    this.calls.push(`deleteSnapshot ${stored.image}`)
  }

  async releaseImage(): Promise<void> {}

  async hibernate(containerId: string, withMemory: boolean): Promise<void> {
    await this.enter('hibernate', containerId)
    if (withMemory) this.checkpoint()
    this.hibernated.add(containerId)
  }

  async resume(containerId: string): Promise<void> {
    this.calls.push(`resume ${containerId}`)
    this.hibernated.delete(containerId)
  }

  async env(containerId: string): Promise<Record<string, string>> {
    const spec = this.created.find((c) => `fake-${c.runId}` === containerId)
    return spec?.env ?? {}
  }

  async listManaged(): Promise<ManagedSandbox[]> {
    return []
  }

  /**
   * Guests of the fake engine "listen" on the host's loopback, so a test can stand a server in for one
   * (unless `addresses` says otherwise); a stopped container has no address, as with Docker.
   */
  async address(containerId: string): Promise<string> {
    if (this.stopped.has(containerId) || this.removed.includes(containerId))
      throw Errors.engine(`sandbox container ${containerId} has no IP address`)
    return this.addresses.get(containerId) ?? '127.0.0.1'
  }

  /** Containers that stopped on their own (see stop), and where each container's guest is reached. */
  readonly stopped = new Map<string, ContainerExit>()
  readonly addresses = new Map<string, string>()
  private readonly stopWatchers = new Set<(containerId: string) => void>()

  /** Whether the engine's events are followed (false: as while the engine restarts; stops go unheard). */
  following = true

  watchStops(_labels: Record<string, string>, onStop: (containerId: string) => void): StopWatch {
    this.stopWatchers.add(onStop)
    const engine = this
    return {
      get connected() {
        return engine.following
      },
      close: () => this.stopWatchers.delete(onStop),
    }
  }

  async exitState(containerId: string): Promise<ContainerExit | undefined> {
    if (this.removed.includes(containerId)) return { exitCode: undefined, oomKilled: false }
    if (this.hibernated.has(containerId)) return { exitCode: 0, oomKilled: false }
    return this.stopped.get(containerId)
  }

  /**
   * A container stops without the emulator asking (its main process ended, an OOM kill), and the
   * engine's event reaches the watchers unless `tell` is false (an event missed while disconnected).
   */
  stop(containerId: string, exit: ContainerExit = { exitCode: 137, oomKilled: false }, tell = true): void {
    this.stopped.set(containerId, exit)
    if (tell) this.report(containerId)
  }

  /** The engine's event that `containerId` stopped reaches the watchers, whatever its state now. */
  report(containerId: string): void {
    if (this.following) for (const watcher of this.stopWatchers) watcher(containerId)
  }
}
