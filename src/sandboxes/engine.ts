import type { Readable } from 'node:stream'

/**
 * The port between the sandbox domain and whatever runs sandboxes. Docker implements it
 * (src/docker/docker-engine.ts); the domain and the HTTP layer only ever see this interface, so another
 * engine (Podman, a remote Docker, a fake for HTTP tests) plugs in here. Implementations translate their
 * own errors into EmulatorError at this boundary.
 */
export interface SandboxSpec {
  runId: string
  image: string
  vcpus: number
  memMib: number
  diskMib: number
  /** Environment for the sandbox's processes (credentials). Never logged, never returned. */
  env: Record<string, string>
  /** Facts needed to rebuild the sandbox record after an emulator restart. */
  labels: Record<string, string>
  /** Set for a sandbox with an egress policy: it joins the isolated network instead of the usual one. */
  egressAttachment?: EgressAttachment
}

/** Where a sandbox with an egress policy is attached, and how its guest names the egress proxy. */
export interface EgressAttachment {
  /** The engine's isolated network (see isolatedNetwork). */
  network: string
  /** The name the guest reaches the egress proxy by (in its /etc/hosts) and the address behind it. */
  proxyHost: string
  proxyAddress: string
}

export interface IsolatedNetworkRequest {
  instanceId: string
  dataDir: string
  /** The one port of the host that sandboxes on the network may reach (the egress proxy's). */
  proxyPort: number
}

/** The network sandboxes with an egress policy join: no route out, the egress proxy the only way. */
export interface IsolatedNetwork {
  name: string
  /** The host's own address on it, where the egress proxy listens. */
  gateway: string
  subnet: string
  /**
   * The subnets of every network this engine puts sandboxes on, this one included: the egress proxy
   * never connects there (other sandboxes, whoever owns them).
   */
  sandboxSubnets: string[]
  /** Whether every other port of the host is closed to it (a host firewall rule); why not, if not. */
  hostFirewall: boolean
  hostFirewallNote: string
}

/** A warm-pool container: started ahead of demand, not yet anyone's sandbox. */
export interface PoolSpec {
  poolId: string
  image: string
  vcpus: number
  memMib: number
  labels: Record<string, string>
}

export interface ExecRequest {
  command: string
  /** 0 = no limit. */
  timeoutMs: number
  /** Bytes of stdout and of stderr kept; the rest is drained and dropped. */
  outputLimit: number
}

export interface ExecOutcome {
  exitCode: number
  stdout: Buffer
  stderr: Buffer
  timedOut: boolean
  stdoutTruncated: boolean
  stderrTruncated: boolean
}

export interface ResourceUsage {
  cpuMs: number
  memPeakBytes: number
}

export interface FileDownload {
  size: number
  stream: Readable
}

export interface EngineInfo {
  engine: string
  version: string
  apiVersion: string
  os: string
  storageDriver: string
  backingFs: string | undefined
  cgroupVersion: string
  experimental: boolean
  rootDir: string
  /** Where the emulator reaches the engine (`unix:///run/podman/podman.sock`, `tcp://host:port`). */
  endpoint?: string
  /** The engine runs on another host: nothing of its host (files, cgroups, firewall) is used. */
  remote?: boolean
  /** The network sandboxes without an egress policy are on (absent: the engine does not say). */
  sandboxNetwork?: SandboxNetwork
  /** The engine host's CPUs and memory: what one sandbox can be given, and what quotas are derived from. */
  hostCpus?: number
  hostMemoryBytes?: number
}

/** Where sandboxes without an egress policy are, and whether they are kept from reaching each other. */
export interface SandboxNetwork {
  name: string
  subnets: string[]
  /** No traffic between sandboxes on it. */
  isolated: boolean
  /** What it is and why (isolated or not), for capabilities and the log. */
  note: string
}

export interface ManagedSandbox {
  containerId: string
  /** `hibernated`: paused, or stopped with a hibernation checkpoint to resume from. */
  state: 'running' | 'hibernated' | 'stopped'
  labels: Record<string, string>
}

export interface MemorySupport {
  /** Whether processes and memory can be checkpointed (CRIU), not only files. */
  available: boolean
  reason: string
}

export interface SnapshotRequest {
  snapshotId: string
  /** A directory of the emulator's (must not exist yet) where the engine may keep the snapshot's files. */
  artifactDir: string
  withMemory: boolean
  /** The sandbox is hibernated (then its hibernation state is what is captured). */
  hibernated: boolean
}

export interface SnapshotOutcome {
  stored: StoredSnapshot
  /** Bytes really stored: the filesystem layer plus the checkpoint files. */
  sizeBytes: number
}

/** The engine's handle on a snapshot's artifacts: a committed image and, with CRIU, checkpoint files. */
export interface StoredSnapshot {
  /** Image holding the sandbox's filesystem at snapshot time. */
  image: string
  /** Directory holding the CRIU checkpoint, or null for a filesystem-only snapshot. */
  checkpointDir: string | null
}

/** How a sandbox's container ended, as the engine tells it. */
export interface ContainerExit {
  /** Its main process's exit status; undefined when the container is gone altogether. */
  exitCode: number | undefined
  /** The kernel's OOM killer ended it. */
  oomKilled: boolean
}

/** A subscription to the engine's container stops (see watchStops). */
export interface StopWatch {
  /** Whether the engine's events are followed right now (stops meanwhile are reported once they are again). */
  readonly connected: boolean
  close(): void
}

export interface SandboxEngine {
  /** Resolves when the engine answers; throws engine_unavailable when it does not. */
  ping(): Promise<void>
  /** Throws engine_unavailable when the engine cannot be reached. */
  info(): Promise<EngineInfo>
  /**
   * Makes the image present locally (pulling it if needed and `pull` is not false) or throws
   * image_unavailable.
   */
  ensureImage(image: string, options?: { pull?: boolean }): Promise<void>
  /** Creates and starts a sandbox; returns the engine's id for it. */
  create(spec: SandboxSpec): Promise<string>
  /** Creates and starts a warm-pool container (no owner, no credentials). */
  createPooled(spec: PoolSpec): Promise<string>
  /** Gives a pooled container its sandbox's name; cosmetic (nothing keys on names), so callers need not wait. */
  claim(containerId: string, runId: string): Promise<void>
  exec(containerId: string, request: ExecRequest): Promise<ExecOutcome>
  writeFile(containerId: string, path: string, size: number, content: Readable): Promise<void>
  readFile(containerId: string, path: string): Promise<FileDownload>
  listDir(containerId: string, path: string): Promise<string[]>
  /** Cumulative CPU time and peak memory from the sandbox's cgroup, read before removal. */
  usage(containerId: string): Promise<ResourceUsage>
  /** Removes the sandbox and its writable layer; a sandbox already gone counts as removed. */
  remove(containerId: string): Promise<void>
  /** Whether this engine can checkpoint memory; decided once, at start. */
  memorySupport(): MemorySupport
  /** Whether new sandboxes get an agent for exec and files (decided once, at start), and why (not). */
  agentSupport?(): { enabled: boolean; reason: string }
  /** How exec and files reach this sandbox now (its agent, or the engine's own exec), and why. */
  execTransport?(containerId: string): { transport: string; reason: string }
  /** Lets go of what the engine holds open in the emulator's process (the emulator is stopping). */
  close?(): Promise<void>
  /**
   * Captures a sandbox's filesystem (and memory, with `withMemory`) from one instant. A running sandbox
   * keeps running; execs in flight at that instant are not part of the capture.
   */
  snapshot(containerId: string, request: SnapshotRequest): Promise<SnapshotOutcome>
  /** Creates and starts a sandbox from a snapshot: its processes carry on when it holds memory. */
  restore(stored: StoredSnapshot, spec: SandboxSpec): Promise<string>
  /** Removes a snapshot's artifacts; an image still used by a sandbox is kept until that one goes. */
  deleteSnapshot(stored: StoredSnapshot): Promise<void>
  /** Removes an image the emulator made (a fork's), unless a sandbox still uses it. */
  releaseImage(image: string): Promise<void>
  /** With memory: checkpoint to disk and stop (memory released). Without: pause (memory kept). */
  hibernate(containerId: string, withMemory: boolean): Promise<void>
  resume(containerId: string, withMemory: boolean): Promise<void>
  /** The sandbox's environment variables (to recover credential values after a restart or restore). */
  env(containerId: string): Promise<Record<string, string>>
  /** Sandboxes carrying the given labels (used to rebuild state and reap leftovers). */
  listManaged(labels: Record<string, string>): Promise<ManagedSandbox[]>
  /**
   * The address the emulator reaches the sandbox's own ports on (its IP on the engine's network), for
   * url(port). Looked up once per sandbox; the domain caches it.
   */
  address(containerId: string): Promise<string>
  /**
   * Creates (or finds again, after a restart) this instance's isolated network: no route out, no traffic
   * between its sandboxes, and of the host only `proxyPort` on its gateway address. An engine that
   * cannot isolate sandboxes leaves this out, and egress policies are refused.
   */
  isolatedNetwork?(request: IsolatedNetworkRequest): Promise<IsolatedNetwork>
  /** Why this engine cannot isolate sandboxes, when it leaves isolatedNetwork out (said in the 409). */
  readonly isolationUnavailable?: string
  /**
   * Removes this instance's isolated network unless a sandbox still uses it (it then stays for the next
   * start), and the networks of emulators whose data dir is gone.
   */
  releaseIsolatedNetwork?(instanceId: string): Promise<void>
  /**
   * Follows the engine's events: calls `onStop` with the id of every container carrying `labels` that
   * stops, whatever stopped it (its main process ended, the OOM killer, a `docker stop`, or the emulator's
   * own hibernate and destroy: exitState and the sandbox's status tell them apart). Goes on, following
   * again after the engine comes back, until closed.
   */
  watchStops(labels: Record<string, string>, onStop: (containerId: string) => void): StopWatch
  /** How the container ended; undefined while it runs (a paused container runs). */
  exitState(containerId: string): Promise<ContainerExit | undefined>
}
