import { rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type Docker from 'dockerode'
import type { AgentInjection, AgentLog, GuestAgents, TransportReport } from '../agent/guest-agents.ts'
import { Errors } from '../errors.ts'
import { type PullPolicy, pullRefusal } from '../images/pull-policy.ts'
import type { ImageReference } from '../images/reference.ts'
import type {
  ContainerExit,
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
  StopWatch,
  StoredSnapshot,
} from '../sandboxes/engine.ts'
import { DockerAgentTransport } from './agent-transport.ts'
import { readCgroupUsage } from './cgroup-usage.ts'
import { type ContainerSettings, createSandboxContainer, startSandboxContainer } from './containers.ts'
import { ensureIsolatedNetwork, type IsolationFlavour, releaseIsolatedNetwork } from './egress-network.ts'
import { dockerMessage, translateDockerError } from './errors.ts'
import { runExec } from './exec.ts'
import { listDir, readFile, writeFile } from './files.ts'
import { engineReference, hasImage, imageHandle, pullImage } from './images.ts'
import { watchStops } from './stop-watcher.ts'

export interface CompatEngineOptions {
  /** The engine's network sandboxes join. */
  network: string
  pullTimeoutMs: number
  /** When a missing image may be pulled, and from which registries. */
  pull: PullPolicy
  /** `auto`: use CRIU when it works here; `off`: never (snapshots keep files only). */
  criu: 'auto' | 'off'
  /** Sandbox agents (exec and files without the engine's exec); without them, the engine does all of it. */
  agents?: GuestAgents
  /** Where the engine says what it does with them, and a pull's progress (the app's log). */
  log?: AgentLog
}

/** What connecting learns of the engine once, before the engine object exists. */
export interface EngineFacts {
  hostCpus: number
  cgroupVersion: string
}

/**
 * What a sandbox engine does through the Docker Engine API, which Docker serves and Podman's API
 * service serves too (its "compatible" endpoints): containers, exec, files, usage, names, listing.
 * Each engine adds what differs: how it is described, where its cgroups are, and the state operations
 * (snapshot, restore, hibernate), which Docker does by its experimental checkpoints and Podman by
 * libpod's checkpoint archives. Engine errors are translated here, at the boundary.
 */
export abstract class CompatEngine implements SandboxEngine {
  protected readonly docker: Docker
  protected readonly opts: CompatEngineOptions
  protected readonly hostCpus: number
  protected readonly cgroupVersion: string
  protected readonly agents: DockerAgentTransport | undefined

  protected constructor(docker: Docker, opts: CompatEngineOptions, facts: EngineFacts) {
    this.docker = docker
    this.opts = opts
    this.hostCpus = facts.hostCpus
    this.cgroupVersion = facts.cgroupVersion
    this.agents = opts.agents ? new DockerAgentTransport(docker, opts.agents, opts.log) : undefined
  }

  /** Whether sandboxes get an agent, and why (not). */
  agentSupport(): { enabled: boolean; reason: string } {
    const agents = this.opts.agents
    return agents
      ? { enabled: agents.enabled, reason: agents.reason }
      : { enabled: false, reason: 'this engine runs exec and files itself' }
  }

  execTransport(containerId: string): TransportReport {
    return (
      this.agents?.report(containerId) ?? { transport: 'engine-exec', reason: this.agentSupport().reason }
    )
  }

  /** Stops listening for agents (the emulator is stopping; sandboxes and their agents stay). */
  async close(): Promise<void> {
    await this.agents?.close()
  }

  abstract info(): Promise<EngineInfo>
  abstract memorySupport(): MemorySupport
  abstract snapshot(containerId: string, request: SnapshotRequest): Promise<SnapshotOutcome>
  abstract restore(stored: StoredSnapshot, spec: SandboxSpec): Promise<string>
  abstract hibernate(containerId: string, withMemory: boolean): Promise<void>
  abstract resume(containerId: string, withMemory: boolean): Promise<void>
  /** How this engine's sandbox containers are made (init, security options). */
  protected abstract containerSettings(): ContainerSettings
  /** Where the engine puts a container's cgroup, relative to each controller's root. */
  protected abstract cgroupGroups(containerId: string): string[]
  /** Whether a stopped container is hibernated with its memory (stopped by a checkpoint to resume from). */
  protected abstract isCheckpointed(containerId: string): Promise<boolean>

  async ping(): Promise<void> {
    try {
      await this.docker.ping()
    } catch (err) {
      throw Errors.engineUnavailable(dockerMessage(err))
    }
  }

  async ensureImage(image: string, options: { pull?: boolean } = {}): Promise<void> {
    const ref = engineReference(image)
    if (await hasImage(this.docker, ref, image)) return
    if (await this.importMissing(ref, image)) return
    if (options.pull === false) throw Errors.imageUnavailable(image, 'it is not present, and never pulled')
    const refused = pullRefusal(ref, this.opts.pull)
    if (refused) throw Errors.imageUnavailable(image, refused)
    await pullImage(this.docker, ref, image, this.opts.pullTimeoutMs, (line) =>
      this.opts.log?.({ image }, line),
    )
  }

  /** An engine's way to get a missing image other than a pull (none by default); true when it did. */
  protected async importMissing(_ref: ImageReference, _image: string): Promise<boolean> {
    return false
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

  async create(spec: SandboxSpec): Promise<string> {
    return this.createStarted(spec)
  }

  async createPooled(spec: PoolSpec): Promise<string> {
    const sandboxSpec: SandboxSpec = { ...spec, runId: spec.poolId, diskMib: 0, env: {} }
    return this.createStarted(sandboxSpec)
  }

  /** A new sandbox container, its agent's socket (if any) listening before it starts. */
  private async createStarted(spec: SandboxSpec): Promise<string> {
    const agent = await this.agents?.prepare()
    try {
      const container = await createSandboxContainer(
        this.docker,
        spec,
        engineReference(spec.image).canonical,
        {
          ...this.containerSettings(),
          agent,
        },
      )
      if (agent) this.agents?.agents.bind(container.id, agent)
      await startSandboxContainer(container, spec)
      return container.id
    } catch (err) {
      await this.discardAgent(agent)
      throw err
    }
  }

  /** Gives up an agent prepared for a container that was not made. */
  protected async discardAgent(agent: AgentInjection | undefined): Promise<void> {
    if (!agent) return
    await agent.channel.close()
    await this.agents?.agents.discard(agent.hostDir)
  }

  async claim(containerId: string, runId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).rename({ name: `isorun-${runId}` })
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
  }

  /** Exec and files go through the sandbox's agent; the engine's own way (the `viaEngine`s) is the fallback. */
  exec(containerId: string, request: ExecRequest): Promise<ExecOutcome> {
    const viaEngine = async () => {
      try {
        return await runExec(this.docker, containerId, request)
      } catch (err) {
        throw translateDockerError(err, () => Errors.runNotFound(containerId))
      }
    }
    return this.agents ? this.agents.exec(containerId, request, viaEngine) : viaEngine()
  }

  writeFile(containerId: string, path: string, size: number, content: Readable): Promise<void> {
    const viaEngine = () => writeFile(this.docker, containerId, path, size, content)
    return this.agents ? this.agents.writeFile(containerId, path, size, content, viaEngine) : viaEngine()
  }

  readFile(containerId: string, path: string): Promise<FileDownload> {
    const viaEngine = () => readFile(this.docker, containerId, path)
    return this.agents ? this.agents.readFile(containerId, path, viaEngine) : viaEngine()
  }

  listDir(containerId: string, path: string): Promise<string[]> {
    const viaEngine = async () => {
      try {
        return await listDir(this.docker, containerId, path)
      } catch (err) {
        throw translateDockerError(err, () => Errors.runNotFound(containerId))
      }
    }
    return this.agents ? this.agents.listDir(containerId, path, viaEngine) : viaEngine()
  }

  async usage(containerId: string): Promise<ResourceUsage> {
    const fast = await readCgroupUsage(this.cgroupGroups(containerId), this.cgroupVersion)
    if (fast) return fast
    try {
      // one-shot: read the counters once instead of waiting a second for a second CPU sample.
      const stats = (await this.docker
        .getContainer(containerId)
        .stats({ stream: false, 'one-shot': true } as { stream: false })) as unknown as EngineStats
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
      const gone =
        e?.statusCode === 404 || (e?.statusCode === 409 && /already in progress/.test(dockerMessage(err)))
      if (!gone) throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
    await this.agents?.forget(containerId)
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
          else if (await this.isCheckpointed(c.Id)) state = 'hibernated'
          return { containerId: c.Id, state, labels: c.Labels ?? {} }
        }),
      )
    } catch (err) {
      throw translateDockerError(err, () => Errors.engine(dockerMessage(err)))
    }
  }

  /**
   * The isolated network as the engine's flavour makes it, and every subnet sandboxes live on (that one
   * and the sandbox network's), which the egress proxy never lets a policy reach.
   */
  protected async isolate(
    request: IsolatedNetworkRequest,
    flavour: IsolationFlavour,
    sandboxSubnets: string[],
  ): Promise<IsolatedNetwork> {
    const isolated = await ensureIsolatedNetwork(this.docker, request, flavour)
    return { ...isolated, sandboxSubnets: [isolated.subnet, ...sandboxSubnets] }
  }

  releaseIsolatedNetwork(instanceId: string): Promise<void> {
    return releaseIsolatedNetwork(this.docker, instanceId)
  }

  watchStops(labels: Record<string, string>, onStop: (containerId: string) => void): StopWatch {
    return watchStops(this.docker, labels, onStop)
  }

  async exitState(containerId: string): Promise<ContainerExit | undefined> {
    let info: Docker.ContainerInspectInfo
    try {
      info = await this.docker.getContainer(containerId).inspect()
    } catch (err) {
      if ((err as { statusCode?: number })?.statusCode === 404)
        return { exitCode: undefined, oomKilled: false }
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
    if (info.State?.Running) return undefined
    return { exitCode: info.State?.ExitCode, oomKilled: Boolean(info.State?.OOMKilled) }
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

interface EngineStats {
  cpu_stats?: { cpu_usage?: { total_usage?: number } }
  memory_stats?: { usage?: number; max_usage?: number }
}
