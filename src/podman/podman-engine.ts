import type Docker from 'dockerode'
import { CompatEngine, type CompatEngineOptions, type EngineFacts } from '../docker/compat-engine.ts'
import { type ContainerSettings, resolveInitBinary } from '../docker/containers.ts'
import { probeCriu } from '../docker/criu.ts'
import type { IsolationFlavour } from '../docker/egress-network.ts'
import { dockerMessage, translateDockerError } from '../docker/errors.ts'
import { Errors } from '../errors.ts'
import type { ImageReference } from '../images/reference.ts'
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
import type { PodmanEndpoint } from './endpoint.ts'
import { ensureHostBridge } from './host-bridge.ts'
import { importFromDocker } from './image-import.ts'
import { Libpod, type LibpodInfo } from './libpod.ts'
import { PodmanCheckpoints } from './podman-checkpoints.ts'
import { ensurePodmanSandboxNetwork } from './sandbox-network.ts'

export interface PodmanEngineOptions extends Omit<CompatEngineOptions, 'network'> {
  /** ISORUN_EMULATOR_NETWORK; undefined: the emulator's own, with no traffic between sandboxes. */
  network: string | undefined
  endpoint: PodmanEndpoint
  /**
   * The local Docker engine, where an image missing from Podman's store is looked for (and imported:
   * `docker save` into `podman load`); undefined when there is none.
   */
  imageSource: Docker | undefined
  /** The init's path on the engine's host (else resolved here when the engine is local). */
  initPath: string | undefined
  /** Says what the engine did on its own (an image imported). */
  log: (data: Record<string, unknown>, message: string) => void
}

/** What connecting learns of Podman once, before the engine object exists. */
interface Probed extends EngineFacts {
  memory: MemorySupport
  initPath: string | undefined
  network: SandboxNetwork
}

/** Where Podman looks for its init by default (containers.conf's init_path). */
const PODMAN_INIT = '/usr/libexec/podman/catatonit'

/** OCI runtimes Podman can checkpoint and restore with (through CRIU). */
const CHECKPOINTING_RUNTIMES = new Set(['runc', 'crun'])

/**
 * SandboxEngine on Podman's API service: the Docker-compatible endpoints for everything they serve
 * (compat-engine.ts), libpod's for checkpoints (podman-checkpoints.ts). Memory snapshots travel as archives in
 * API bodies, so they work with Podman on another host too; what needs the engine's host (its cgroup
 * files, its firewall) is used only when that host is this one. Made by `connect()`.
 */
export class PodmanEngine extends CompatEngine {
  private readonly endpoint: PodmanEndpoint
  private readonly libpod: Libpod
  private readonly checkpointing: PodmanCheckpoints
  private readonly imageSource: Docker | undefined
  private readonly log: PodmanEngineOptions['log']
  private readonly memory: MemorySupport
  private readonly initPath: string | undefined
  private readonly sandboxNetwork: SandboxNetwork
  /** Only where the engine's host is this one: the egress proxy listens on its bridge, and its firewall. */
  readonly isolatedNetwork?: (request: IsolatedNetworkRequest) => Promise<IsolatedNetwork>
  readonly isolationUnavailable?: string

  /** Throws engine_unavailable when Podman's API service cannot be reached. */
  static async connect(docker: Docker, opts: PodmanEngineOptions): Promise<PodmanEngine> {
    const libpod = new Libpod(opts.endpoint)
    const local = isLocal(opts.endpoint)
    try {
      const { host } = await libpod.info()
      const network = await ensurePodmanSandboxNetwork(docker, libpod, opts.network, local)
      return new PodmanEngine(
        docker,
        libpod,
        { ...opts, network: network.name },
        {
          hostCpus: host.cpus ?? 1,
          cgroupVersion: host.cgroupVersion === 'v2' ? '2' : '1',
          memory: await probeMemory(opts.criu, host, local),
          initPath: opts.initPath ?? (local ? await resolveInitBinary(PODMAN_INIT) : undefined),
          network,
        },
      )
    } catch (err) {
      throw translateDockerError(err, () => Errors.engineUnavailable(dockerMessage(err)))
    }
  }

  private constructor(
    docker: Docker,
    libpod: Libpod,
    opts: PodmanEngineOptions & { network: string },
    probed: Probed,
  ) {
    super(docker, opts, probed)
    this.sandboxNetwork = probed.network
    this.endpoint = opts.endpoint
    this.libpod = libpod
    this.imageSource = opts.imageSource
    this.log = opts.log
    this.memory = probed.memory
    this.initPath = probed.initPath
    this.checkpointing = new PodmanCheckpoints(docker, libpod)
    if (isLocal(opts.endpoint)) {
      this.isolatedNetwork = (request) =>
        this.isolate(request, podmanBridge(libpod), this.sandboxNetwork.subnets)
    } else {
      this.isolationUnavailable =
        "Podman is another host's: the egress proxy must listen on its bridge, and its firewall must close the rest"
    }
  }

  async info(): Promise<EngineInfo> {
    try {
      const info = await this.libpod.info()
      const dist = info.host.distribution
      return {
        engine: 'podman',
        version: info.version.Version,
        apiVersion: info.version.APIVersion,
        os: `${dist?.distribution ?? 'linux'} ${dist?.version ?? ''} (${info.host.kernel ?? '?'})`,
        storageDriver: info.store.graphDriverName ?? 'unknown',
        backingFs: info.store.graphStatus?.['Backing Filesystem'],
        cgroupVersion: this.cgroupVersion,
        // Podman's checkpoint and restore are not experimental.
        experimental: false,
        rootDir: info.store.graphRoot ?? '',
        endpoint: this.endpoint.url,
        remote: !isLocal(this.endpoint),
        sandboxNetwork: this.sandboxNetwork,
        hostCpus: info.host.cpus,
        hostMemoryBytes: info.host.memTotal,
      }
    } catch (err) {
      throw translateDockerError(err, () => Errors.engineUnavailable(dockerMessage(err)))
    }
  }

  memorySupport(): MemorySupport {
    return this.memory
  }

  /** An image the local Docker engine has is imported from it rather than pulled (nothing leaves the host). */
  protected override async importMissing(ref: ImageReference, image: string): Promise<boolean> {
    if (!this.imageSource) return false
    const started = Date.now()
    if (!(await importFromDocker(this.imageSource, this.docker, ref.canonical, image))) return false
    this.log(
      { image, ms: Date.now() - started },
      `imported image ${image} from the local Docker engine into Podman`,
    )
    return true
  }

  snapshot(containerId: string, request: SnapshotRequest): Promise<SnapshotOutcome> {
    return this.checkpointing.snapshot(containerId, request)
  }

  restore(stored: StoredSnapshot, spec: SandboxSpec): Promise<string> {
    return this.checkpointing.restore(stored, spec, this.containerSettings())
  }

  hibernate(containerId: string, withMemory: boolean): Promise<void> {
    return this.checkpointing.hibernate(containerId, withMemory)
  }

  resume(containerId: string, withMemory: boolean): Promise<void> {
    return this.checkpointing.resume(containerId, withMemory)
  }

  /**
   * Podman's init (catatonit) by its real path, and Podman's default seccomp profile, which already
   * answers io_uring with ENOSYS (its calls are not on the allow list), as Docker's does with the
   * emulator's profile; Podman's API takes a profile only as a path on the engine's host.
   */
  protected containerSettings(): ContainerSettings {
    return { network: this.opts.network, hostCpus: this.hostCpus, initPath: this.initPath, securityOpt: [] }
  }

  /** Podman's cgroupfs and systemd layouts; none when the engine is another host's (then the stats API). */
  protected cgroupGroups(containerId: string): string[] {
    if (!isLocal(this.endpoint)) return []
    return [`libpod_parent/libpod-${containerId}`, `machine.slice/libpod-${containerId}.scope`]
  }

  protected isCheckpointed(containerId: string): Promise<boolean> {
    return this.checkpointing.isHibernatedWithMemory(containerId)
  }
}

/**
 * A Podman bridge: not `internal` (which would give the host no address on it, where the egress proxy
 * listens), so it routes out, and the host firewall drops everything it would forward. Its bridge is
 * made before any sandbox joins (host-bridge.ts), so the proxy can listen on it first.
 */
function podmanBridge(libpod: Libpod): IsolationFlavour {
  return {
    dropsForwarded: false,
    create: (n, labels) =>
      libpod.createNetwork({ name: n.network, networkInterface: n.bridge, internal: false, labels }),
    ensureBridge: ensureHostBridge,
  }
}

/**
 * Whether the engine shares this host (its files, cgroups and firewall): only when reached on a unix
 * socket. A TCP address counts as another host's, loopback included: the emulator does not guess.
 */
function isLocal(endpoint: PodmanEndpoint): boolean {
  return endpoint.kind === 'unix'
}

async function probeMemory(
  criu: 'auto' | 'off',
  host: LibpodInfo['host'],
  local: boolean,
): Promise<MemorySupport> {
  if (criu === 'off')
    return { available: false, reason: 'disabled by configuration (ISORUN_EMULATOR_CRIU=off)' }
  if (host.security?.rootless)
    return { available: false, reason: 'Podman runs rootless, and CRIU checkpoints need a rootful Podman' }
  const runtime = host.ociRuntime?.name ?? '?'
  if (!CHECKPOINTING_RUNTIMES.has(runtime))
    return { available: false, reason: `Podman's runtime ${runtime} cannot checkpoint (runc or crun can)` }
  if (!local) {
    return {
      available: true,
      reason: `Podman's runtime ${runtime} checkpoints with CRIU on the engine's host, which the emulator cannot check from here (it needs CRIU >= 4.2): a checkpoint that fails names CRIU's error`,
    }
  }
  const found = await probeCriu('Podman checkpoints with CRIU on its host (scripts/provision.sh builds it)')
  return { available: found.available, reason: `${found.reason}; Podman's runtime is ${runtime}` }
}
