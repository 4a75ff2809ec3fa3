import { rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type Docker from 'dockerode'
import { Errors } from '../errors.ts'
import { type PullPolicy, pullRefusal } from '../images/pull-policy.ts'
import type {
  EngineInfo,
  ExecOutcome,
  ExecRequest,
  FileDownload,
  IsolatedNetwork,
  IsolatedNetworkRequest,
  ManagedSandbox,
  MemorySupport,
  PoolSpec,
  ResourceUsage,
  SandboxEngine,
  SandboxSpec,
  SnapshotOutcome,
  SnapshotRequest,
  StoredSnapshot,
} from '../sandboxes/engine.ts'
import { readCgroupUsage } from './cgroup-usage.ts'
import {
  type ContainerSettings,
  createSandboxContainer,
  resolveInitBinary,
  startSandboxContainer,
} from './containers.ts'
import { detectCriu } from './criu.ts'
import { ensureIsolatedNetwork, releaseIsolatedNetwork } from './egress-network.ts'
import { dockerMessage, translateDockerError } from './errors.ts'
import { runExec } from './exec.ts'
import { listDir, readFile, writeFile } from './files.ts'
import { engineReference, hasImage, imageHandle, pullImage } from './images.ts'
import { SandboxState } from './sandbox-state.ts'

export interface DockerEngineOptions {
  /** Docker network sandboxes join. */
  network: string
  pullTimeoutMs: number
  /** When a missing image may be pulled, and from which registries. */
  pull: PullPolicy
  /** `auto`: use CRIU when it works here; `off`: never (snapshots keep files only). */
  criu: 'auto' | 'off'
}

/** What start-up learns of the engine once, before the engine object exists. */
interface Probed {
  hostCpus: number
  cgroupVersion: string
  rootDir: string
  /** Docker's init binary, bind-mounted into each sandbox; undefined when not found on this host. */
  initPath: string | undefined
  memory: MemorySupport
}

/**
 * SandboxEngine on the Docker Engine API (dockerode). Docker errors are translated here. Made by
 * `connect()`, which asks Docker what it needs to know first, so no method can run before that.
 */
export class DockerEngine implements SandboxEngine {
  private readonly docker: Docker
  private readonly opts: DockerEngineOptions
  private readonly hostCpus: number
  private readonly memory: MemorySupport
  private readonly checkpointing: SandboxState
  private readonly initPath: string | undefined
  private readonly cgroupVersion: string

  /** Throws engine_unavailable when Docker cannot be reached. */
  static async connect(docker: Docker, opts: DockerEngineOptions): Promise<DockerEngine> {
    try {
      const info = await docker.info()
      const memory: MemorySupport =
        opts.criu === 'off'
          ? { available: false, reason: 'disabled by configuration (ISORUN_EMULATOR_CRIU=off)' }
          : await detectCriu(Boolean(info.ExperimentalBuild), info.DockerRootDir)
      return new DockerEngine(docker, opts, {
        hostCpus: info.NCPU,
        cgroupVersion: String(info.CgroupVersion ?? '1'),
        rootDir: info.DockerRootDir,
        initPath: await resolveInitBinary(String(info.InitBinary || 'docker-init')),
        memory,
      })
    } catch (err) {
      throw translateDockerError(err, () => Errors.engineUnavailable(dockerMessage(err)))
    }
  }

  private constructor(docker: Docker, opts: DockerEngineOptions, probed: Probed) {
    this.docker = docker
    this.opts = opts
    this.hostCpus = probed.hostCpus
    this.cgroupVersion = probed.cgroupVersion
    this.initPath = probed.initPath
    this.memory = probed.memory
    this.checkpointing = new SandboxState(docker, probed.rootDir)
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
    const ref = engineReference(image)
    if (await hasImage(this.docker, ref, image)) return
    const refused = pullRefusal(ref, this.opts.pull)
    if (refused) throw Errors.imageUnavailable(image, refused)
    await pullImage(this.docker, ref, image, this.opts.pullTimeoutMs)
  }

  memorySupport(): MemorySupport {
    return this.memory
  }

  async snapshot(containerId: string, request: SnapshotRequest): Promise<SnapshotOutcome> {
    return this.checkpointing.snapshot(containerId, request)
  }

  restore(stored: StoredSnapshot, spec: SandboxSpec): Promise<string> {
    return this.checkpointing.restore(stored, spec, this.containerSettings())
  }

  async deleteSnapshot(stored: StoredSnapshot): Promise<void> {
    if (stored.checkpointDir) await rm(stored.checkpointDir, { recursive: true, force: true })
    await this.releaseImage(stored.image)
  }

  async releaseImage(image: string): Promise<void> {
    try {
      await imageHandle(this.docker, image).remove()
    } catch (err) {
      const e = err as { statusCode?: number }
      // 404: already gone. 409: a sandbox still runs on it; it is released when that one is destroyed.
      if (e?.statusCode === 404 || e?.statusCode === 409) return
      throw translateDockerError(err, () => Errors.engine(dockerMessage(err)))
    }
  }

  hibernate(containerId: string, withMemory: boolean): Promise<void> {
    return this.checkpointing.hibernate(containerId, withMemory)
  }

  resume(containerId: string, withMemory: boolean): Promise<void> {
    return this.checkpointing.resume(containerId, withMemory)
  }

  async create(spec: SandboxSpec): Promise<string> {
    const image = engineReference(spec.image).canonical
    const container = await createSandboxContainer(this.docker, spec, image, this.containerSettings())
    await startSandboxContainer(container, spec.image)
    return container.id
  }

  private containerSettings(): ContainerSettings {
    return { network: this.opts.network, hostCpus: this.hostCpus, initPath: this.initPath }
  }

  async createPooled(spec: PoolSpec): Promise<string> {
    const sandboxSpec: SandboxSpec = { ...spec, runId: spec.poolId, diskMib: 0, env: {} }
    const container = await createSandboxContainer(
      this.docker,
      sandboxSpec,
      engineReference(spec.image).canonical,
      this.containerSettings(),
    )
    await startSandboxContainer(container, spec.image)
    return container.id
  }

  async claim(containerId: string, runId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).rename({ name: `isorun-${runId}` })
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
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

  async env(containerId: string): Promise<Record<string, string>> {
    try {
      const info = await this.docker.getContainer(containerId).inspect()
      return Object.fromEntries(
        (info.Config?.Env ?? []).map((kv) => {
          const i = kv.indexOf('=')
          return i < 0 ? [kv, ''] : [kv.slice(0, i), kv.slice(i + 1)]
        }),
      )
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
  }

  async listManaged(labels: Record<string, string>): Promise<ManagedSandbox[]> {
    try {
      const found = await this.docker.listContainers({
        all: true,
        filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) },
      })
      return Promise.all(
        found.map(async (c): Promise<ManagedSandbox> => {
          let state: ManagedSandbox['state'] = 'stopped'
          if (c.State === 'running') state = 'running'
          else if (c.State === 'paused') state = 'hibernated'
          else if (await this.checkpointing.isHibernatedWithMemory(c.Id)) state = 'hibernated'
          return { containerId: c.Id, state, labels: c.Labels ?? {} }
        }),
      )
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

  async isolatedNetwork(request: IsolatedNetworkRequest): Promise<IsolatedNetwork> {
    const isolated = await ensureIsolatedNetwork(this.docker, request)
    return { ...isolated, sandboxSubnets: [isolated.subnet, ...(await this.subnetsOf(this.opts.network))] }
  }

  /** The IPv4 and IPv6 subnets of a network (none for `host`, `none` or one that is gone). */
  private async subnetsOf(network: string): Promise<string[]> {
    try {
      const info = (await this.docker
        .getNetwork(encodeURIComponent(network))
        .inspect()) as Docker.NetworkInspectInfo
      return (info.IPAM?.Config ?? []).map((c) => c.Subnet).filter((s): s is string => Boolean(s))
    } catch (err) {
      if ((err as { statusCode?: number })?.statusCode === 404) return []
      throw translateDockerError(err, () => Errors.engine(dockerMessage(err)))
    }
  }

  releaseIsolatedNetwork(instanceId: string): Promise<void> {
    return releaseIsolatedNetwork(this.docker, instanceId)
  }
}

interface DockerStats {
  cpu_stats?: { cpu_usage?: { total_usage?: number } }
  memory_stats?: { usage?: number; max_usage?: number }
}
