import { Readable } from 'node:stream'
import { Errors } from '../../src/errors.ts'
import type {
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
  StoredSnapshot,
} from '../../src/sandboxes/engine.ts'

/**
 * An in-memory SandboxEngine for the HTTP-layer tests (validation, auth, error mapping), which need no
 * containers. Anything that would need a real guest is answered from simple maps.
 */
export class FakeEngine implements SandboxEngine {
  reachable = true
  readonly created: SandboxSpec[] = []
  readonly files = new Map<string, Buffer>()
  readonly removed: string[] = []

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
    }
  }

  async ensureImage(image: string): Promise<void> {
    if (image.startsWith('missing/')) throw Errors.imageUnavailable(image, 'not found')
  }

  async create(spec: SandboxSpec): Promise<string> {
    this.created.push(spec)
    return `fake-${spec.runId}`
  }

  readonly pooled: PoolSpec[] = []
  readonly claimed: [string, string][] = []

  async createPooled(spec: PoolSpec): Promise<string> {
    this.pooled.push(spec)
    return `fake-${spec.poolId}`
  }

  async claim(containerId: string, runId: string): Promise<void> {
    this.claimed.push([containerId, runId])
  }

  async exec(_containerId: string, request: ExecRequest): Promise<ExecOutcome> {
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

  async snapshot(_containerId: string, request: SnapshotRequest): Promise<SnapshotOutcome> {
    return { stored: { image: `fake-snapshot:${request.snapshotId}`, checkpointDir: null }, sizeBytes: 1 }
  }

  async restore(_stored: StoredSnapshot, spec: SandboxSpec): Promise<string> {
    const n = this.restores++
    if (this.failRestores.has(n)) throw Errors.engine(`fake restore ${n} failed`)
    return this.create(spec)
  }

  async deleteSnapshot(): Promise<void> {}

  async releaseImage(): Promise<void> {}

  async hibernate(containerId: string): Promise<void> {
    this.hibernated.add(containerId)
  }

  async resume(containerId: string): Promise<void> {
    this.hibernated.delete(containerId)
  }

  async env(containerId: string): Promise<Record<string, string>> {
    const spec = this.created.find((c) => `fake-${c.runId}` === containerId)
    return spec?.env ?? {}
  }

  async listManaged(): Promise<ManagedSandbox[]> {
    return []
  }

  /** Guests of the fake engine "listen" on the host's loopback, so a test can stand a server in for one. */
  async address(): Promise<string> {
    return '127.0.0.1'
  }
}
