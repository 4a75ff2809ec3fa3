import type Docker from 'dockerode'
import { Errors } from '../errors.ts'
import type {
  EngineInfo,
  IsolatedNetwork,
  IsolatedNetworkRequest,
  MemorySupport,
  SandboxNetwork,
  SandboxSpec,
  SnapshotOutcome,
  SnapshotRequest,
  StoredSnapshot,
} from '../sandboxes/engine.ts'
import { CompatEngine, type CompatEngineOptions, type EngineFacts } from './compat-engine.ts'
import { type ContainerSettings, DOCKER_SECCOMP, resolveInitBinary } from './containers.ts'
import { detectCriu } from './criu.ts'
import { DockerCheckpoints } from './docker-checkpoints.ts'
import { dockerInternalNetwork } from './egress-network.ts'
import { dockerMessage, translateDockerError } from './errors.ts'
import { ensureSandboxNetwork } from './sandbox-network.ts'

export interface DockerEngineOptions extends Omit<CompatEngineOptions, 'network'> {
  /** ISORUN_EMULATOR_NETWORK; undefined: the emulator's own, with no traffic between sandboxes. */
  network: string | undefined
}

/** What start-up learns of Docker once, before the engine object exists. */
interface Probed extends EngineFacts {
  rootDir: string
  /** Docker's init binary, bind-mounted into each sandbox; undefined when not found on this host. */
  initPath: string | undefined
  memory: MemorySupport
  network: SandboxNetwork
}

/**
 * SandboxEngine on Docker: the Docker Engine API operations both engines share (compat-engine.ts) plus
 * Docker's own: its experimental CRIU checkpoints, kept in its root dir (so memory snapshots need the
 * emulator on the Docker host), its init binary, its cgroup paths and its internal networks for egress.
 * Made by `connect()`, which asks Docker what it needs to know first, so no method can run before that.
 */
export class DockerEngine extends CompatEngine {
  private readonly memory: MemorySupport
  private readonly checkpointing: DockerCheckpoints
  private readonly initPath: string | undefined
  private readonly sandboxNetwork: SandboxNetwork

  /** Throws engine_unavailable when Docker cannot be reached. */
  static async connect(docker: Docker, opts: DockerEngineOptions): Promise<DockerEngine> {
    try {
      const info = await docker.info()
      const memory: MemorySupport =
        opts.criu === 'off'
          ? { available: false, reason: 'disabled by configuration (ISORUN_EMULATOR_CRIU=off)' }
          : await detectCriu(Boolean(info.ExperimentalBuild), info.DockerRootDir)
      const network = await ensureSandboxNetwork(docker, opts.network)
      return new DockerEngine(
        docker,
        { ...opts, network: network.name },
        {
          hostCpus: info.NCPU,
          cgroupVersion: String(info.CgroupVersion ?? '1'),
          rootDir: info.DockerRootDir,
          initPath: await resolveInitBinary(String(info.InitBinary || 'docker-init')),
          memory,
          network,
        },
      )
    } catch (err) {
      throw translateDockerError(err, () => Errors.engineUnavailable(dockerMessage(err)))
    }
  }

  private constructor(docker: Docker, opts: CompatEngineOptions, probed: Probed) {
    // Sandboxes mount the agent and its socket from this machine's files: Docker must see them.
    if (!probed.initPath && opts.agents?.enabled)
      opts.agents.disable(
        "the emulator does not run on the Docker host (it cannot see Docker's own docker-init), so sandboxes could not mount its agent",
      )
    super(docker, opts, probed)
    this.initPath = probed.initPath
    this.memory = probed.memory
    this.sandboxNetwork = probed.network
    this.checkpointing = new DockerCheckpoints(docker, probed.rootDir)
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
        endpoint: await dockerEndpoint(this.docker),
        sandboxNetwork: this.sandboxNetwork,
        hostCpus: info.NCPU,
        hostMemoryBytes: info.MemTotal,
      }
    } catch (err) {
      throw translateDockerError(err, () => Errors.engineUnavailable(dockerMessage(err)))
    }
  }

  memorySupport(): MemorySupport {
    return this.memory
  }

  /**
   * A checkpoint cannot hold a connection to the emulator: the sandbox's agent lets go of its
   * connections first (calls in flight wait) and comes back once it is taken.
   */
  async snapshot(containerId: string, request: SnapshotRequest): Promise<SnapshotOutcome> {
    const checkpoint = request.withMemory && !request.hibernated
    if (checkpoint) await this.agents?.agents.detach(containerId)
    try {
      return await this.checkpointing.snapshot(containerId, request)
    } finally {
      if (checkpoint) await this.agents?.agents.reattach(containerId)
    }
  }

  /**
   * A new container with a socket directory of its own: the restored agent (with memory, the very
   * process checkpointed, of the same build) dials it, never its parent's.
   */
  async restore(stored: StoredSnapshot, spec: SandboxSpec): Promise<string> {
    const agent = await this.agents?.prepare(stored.checkpointDir ? stored.image : undefined)
    try {
      const id = await this.checkpointing.restore(stored, spec, { ...this.containerSettings(), agent })
      if (agent) this.agents?.agents.bind(id, agent)
      return id
    } catch (err) {
      await this.discardAgent(agent)
      throw err
    }
  }

  async hibernate(containerId: string, withMemory: boolean): Promise<void> {
    if (withMemory) await this.agents?.agents.detach(containerId)
    try {
      await this.checkpointing.hibernate(containerId, withMemory)
    } catch (err) {
      if (withMemory) await this.agents?.agents.reattach(containerId)
      throw err
    }
  }

  async resume(containerId: string, withMemory: boolean): Promise<void> {
    if (withMemory) await this.agents?.agents.reattach(containerId)
    return this.checkpointing.resume(containerId, withMemory)
  }

  protected containerSettings(): ContainerSettings {
    return {
      network: this.opts.network,
      hostCpus: this.hostCpus,
      initPath: this.initPath,
      securityOpt: [DOCKER_SECCOMP],
    }
  }

  /** Where Docker puts a container's cgroup under the cgroupfs and the systemd cgroup drivers. */
  protected cgroupGroups(containerId: string): string[] {
    return [`docker/${containerId}`, `system.slice/docker-${containerId}.scope`]
  }

  protected isCheckpointed(containerId: string): Promise<boolean> {
    return this.checkpointing.isHibernatedWithMemory(containerId)
  }

  isolatedNetwork(request: IsolatedNetworkRequest): Promise<IsolatedNetwork> {
    return this.isolate(request, dockerInternalNetwork(this.docker), this.sandboxNetwork.subnets)
  }
}

/**
 * Where dockerode reaches Docker (DOCKER_HOST, else the default socket), as a URL. docker-modem's
 * default socket path is a function that looks for Docker Desktop's per-user socket first, so the
 * modem is asked for the path it resolves, never the function itself.
 */
async function dockerEndpoint(docker: Docker): Promise<string> {
  const modem = docker.modem as {
    socketPath?: unknown
    getSocketPath?: () => Promise<string | undefined>
    host?: string
    port?: number
    protocol?: string
  }
  if (modem.socketPath) {
    const path = typeof modem.socketPath === 'string' ? modem.socketPath : await modem.getSocketPath?.()
    return `unix://${path ?? '?'}`
  }
  return `${modem.protocol === 'https' ? 'https' : 'tcp'}://${modem.host ?? '?'}:${modem.port ?? '?'}`
}
