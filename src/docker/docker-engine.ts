import type { Readable } from 'node:stream'
import type Docker from 'dockerode'
import { Errors } from '../errors.ts'
import type {
  EngineInfo,
  ExecOutcome,
  ExecRequest,
  FileDownload,
  ManagedSandbox,
  ResourceUsage,
  SandboxEngine,
  SandboxSpec,
} from '../sandboxes/engine.ts'
import { readCgroupUsage } from './cgroup-usage.ts'
import { dockerMessage, translateDockerError } from './errors.ts'
import { runExec } from './exec.ts'
import { listDir, readFile, writeFile } from './files.ts'

export interface DockerEngineOptions {
  /** Docker network sandboxes join. */
  network: string
  pullTimeoutMs: number
}

const MIB = 1024 * 1024

/**
 * The keep-alive every sandbox runs as its main process, under Docker's init (which reaps the orphans of
 * backgrounded commands). `sleep` comes from the image: any image with a shell has one.
 */
const KEEP_ALIVE = ['sleep', '2147483647']

/** SandboxEngine on the Docker Engine API (dockerode). Docker errors are translated here. */
export class DockerEngine implements SandboxEngine {
  private readonly docker: Docker
  private readonly opts: DockerEngineOptions
  private hostCpus: number | undefined
  private cgroupVersion = '1'

  constructor(docker: Docker, opts: DockerEngineOptions) {
    this.docker = docker
    this.opts = opts
  }

  async ping(): Promise<void> {
    try {
      await this.docker.ping()
    } catch (err) {
      throw Errors.engineUnavailable(dockerMessage(err))
    }
  }

  async info(): Promise<EngineInfo> {
    try {
      const [info, version] = await Promise.all([this.docker.info(), this.docker.version()])
      this.hostCpus = info.NCPU
      this.cgroupVersion = String(info.CgroupVersion ?? '1')
      const driverStatus = (info.DriverStatus ?? []) as [string, string][]
      return {
        engine: 'docker',
        version: version.Version,
        apiVersion: version.ApiVersion,
        os: `${info.OperatingSystem} (${info.KernelVersion})`,
        storageDriver: info.Driver,
        backingFs: driverStatus.find(([k]) => k === 'Backing Filesystem')?.[1],
        cgroupVersion: this.cgroupVersion,
        experimental: Boolean(info.ExperimentalBuild),
        rootDir: info.DockerRootDir,
      }
    } catch (err) {
      throw translateDockerError(err, () => Errors.engineUnavailable(dockerMessage(err)))
    }
  }

  async ensureImage(image: string): Promise<void> {
    try {
      await this.docker.getImage(image).inspect()
      return
    } catch (err) {
      const e = err as { statusCode?: number }
      if (e?.statusCode !== 404)
        throw translateDockerError(err, () => Errors.imageUnavailable(image, 'not found'))
    }
    await this.pull(image)
  }

  private async pull(image: string): Promise<void> {
    const pulled = new Promise<void>((resolve, reject) => {
      this.docker.pull(image, (err: unknown, stream: NodeJS.ReadableStream) => {
        if (err) return reject(err)
        this.docker.modem.followProgress(
          stream,
          (doneErr: unknown) => (doneErr ? reject(doneErr) : resolve()),
          (event: { error?: string }) => {
            if (event.error) reject(new Error(event.error))
          },
        )
      })
    })
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`pull did not finish within ${this.opts.pullTimeoutMs} ms`)),
        this.opts.pullTimeoutMs,
      )
    })
    try {
      await Promise.race([pulled, timedOut])
    } catch (err) {
      const e = err as { code?: string }
      if (e?.code === 'ECONNREFUSED' || e?.code === 'ENOENT')
        throw translateDockerError(err, () => Errors.engine(''))
      throw Errors.imageUnavailable(image, dockerMessage(err).trim())
    } finally {
      clearTimeout(timer)
    }
  }

  async create(spec: SandboxSpec): Promise<string> {
    const cpus = this.hostCpus ? Math.min(spec.vcpus, this.hostCpus) : spec.vcpus
    let container: Docker.Container
    try {
      container = await this.docker.createContainer({
        name: `isorun-${spec.runId}`,
        Image: spec.image,
        Entrypoint: KEEP_ALIVE,
        Cmd: [],
        Hostname: spec.runId.slice(0, 63),
        Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        Labels: spec.labels,
        HostConfig: {
          Init: true,
          NanoCpus: Math.round(cpus * 1e9),
          Memory: spec.memMib * MIB,
          MemorySwap: spec.memMib * MIB,
          NetworkMode: this.opts.network,
        },
      })
    } catch (err) {
      throw translateDockerError(err, () => Errors.imageUnavailable(spec.image, dockerMessage(err)))
    }
    try {
      await container.start()
    } catch (err) {
      await this.remove(container.id).catch(() => {})
      throw Errors.validation(
        'image',
        `${spec.image} cannot run a sandbox: the emulator keeps it alive with \`${KEEP_ALIVE.join(' ')}\`, ` +
          `which failed: ${dockerMessage(err)}`,
      )
    }
    return container.id
  }

  async exec(containerId: string, request: ExecRequest): Promise<ExecOutcome> {
    try {
      return await runExec(this.docker, containerId, request)
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
  }

  writeFile(containerId: string, path: string, size: number, content: Readable): Promise<void> {
    return writeFile(this.docker, containerId, path, size, content)
  }

  readFile(containerId: string, path: string): Promise<FileDownload> {
    return readFile(this.docker, containerId, path)
  }

  async listDir(containerId: string, path: string): Promise<string[]> {
    try {
      return await listDir(this.docker, containerId, path)
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
  }

  async usage(containerId: string): Promise<ResourceUsage> {
    const fast = await readCgroupUsage(containerId, this.cgroupVersion)
    if (fast) return fast
    try {
      // one-shot: read the counters once instead of waiting a second for a second CPU sample.
      const stats = (await this.docker
        .getContainer(containerId)
        .stats({ stream: false, 'one-shot': true } as { stream: false })) as unknown as DockerStats
      const mem = stats.memory_stats ?? {}
      return {
        cpuMs: Math.round((stats.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e6),
        // cgroup v1 keeps the peak (max_usage); v2 does not expose it here, so use current usage there.
        memPeakBytes: mem.max_usage ?? mem.usage ?? 0,
      }
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
  }

  async remove(containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).remove({ force: true, v: true })
    } catch (err) {
      const e = err as { statusCode?: number }
      if (e?.statusCode === 404) return
      if (e?.statusCode === 409 && /already in progress/.test(dockerMessage(err))) return
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
  }

  async listManaged(labels: Record<string, string>): Promise<ManagedSandbox[]> {
    try {
      const found = await this.docker.listContainers({
        all: true,
        filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) },
      })
      return found.map((c) => ({
        containerId: c.Id,
        state: c.State === 'running' ? 'running' : c.State === 'paused' ? 'paused' : 'stopped',
        labels: c.Labels ?? {},
      }))
    } catch (err) {
      throw translateDockerError(err, () => Errors.engine(dockerMessage(err)))
    }
  }

  async address(containerId: string): Promise<string> {
    let info: Docker.ContainerInspectInfo
    try {
      info = await this.docker.getContainer(containerId).inspect()
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
    const networks = info.NetworkSettings?.Networks ?? {}
    // The configured network first; a sandbox attached to more networks is reachable on any of them.
    const ip =
      networks[this.opts.network]?.IPAddress || Object.values(networks).find((n) => n?.IPAddress)?.IPAddress
    if (ip) return ip
    // `--network host` shares the host's stack: the guest's ports are the host's.
    if (info.HostConfig?.NetworkMode === 'host') return '127.0.0.1'
    throw Errors.engine(
      `sandbox container ${containerId.slice(0, 12)} has no IP address on network ${this.opts.network}`,
    )
  }
}

interface DockerStats {
  cpu_stats?: { cpu_usage?: { total_usage?: number } }
  memory_stats?: { usage?: number; max_usage?: number }
}
