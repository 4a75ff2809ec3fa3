import { randomBytes } from 'node:crypto'
import { access, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { type AgentBinary, agentBinaryPath, installAgentBinary } from './agent-binary.ts'
import { AgentChannel } from './agent-channel.ts'

/** Where a sandbox sees its agent: the binary, and the directory holding the emulator's socket. */
export const GUEST_AGENT = '/.isorun/agent'
export const GUEST_SOCKET_DIR = '/.isorun/run'
export const GUEST_SOCKET = `${GUEST_SOCKET_DIR}/agent.sock`

/** The longest path a Unix socket can have (sun_path, with its terminating NUL). */
const MAX_SOCKET_PATH = 107

/** The agent, Docker's exec (the fallback), or an engine's own exec where no agent is offered. */
export type ExecTransport = 'agent' | 'docker-exec' | 'engine-exec'

export interface TransportReport {
  transport: ExecTransport
  reason: string
}

/** What a new sandbox gets mounted to run its agent. */
export interface AgentInjection {
  /** Host file of the agent binary, mounted read-only at GUEST_AGENT. */
  binaryPath: string
  version: string
  /** Host directory of the sandbox's socket, mounted read-only at GUEST_SOCKET_DIR. */
  hostDir: string
  channel: AgentChannel
}

/** Where the agents' comings and goings are said (the engine's log). */
export type AgentLog = (data: Record<string, unknown>, message: string) => void

/**
 * The agents of this emulator's sandboxes (engine-independent): each sandbox gets its own directory
 * under `<data dir>/agent/run` (the parent is 0700: no other host user reaches a socket in it), mounted
 * read-only into that sandbox only, where the emulator listens and the sandbox's agent dials in. Which
 * channel belongs to which container is kept here; the engine says how to mount and start the agent.
 */
export class GuestAgents {
  /** Why the agent is used, or why not (for capabilities and the start-up log). */
  reason: string
  private readonly root: string
  private binary: AgentBinary | undefined
  private readonly channels = new Map<string, AgentInjection>()
  /** Containers found to have no agent mount (made without one): not looked up again. */
  private readonly unmounted = new Set<string>()
  private log: AgentLog = () => {}

  private constructor(root: string, binary: AgentBinary | undefined, reason: string) {
    this.root = root
    this.binary = binary
    this.reason = reason
  }

  get enabled(): boolean {
    return this.binary !== undefined
  }

  /** The engine found it cannot mount the agent (decided at start, before any sandbox). */
  disable(reason: string): void {
    this.binary = undefined
    this.reason = reason
  }

  /**
   * `off`: never used (docker exec for everything). `auto`: used when the agent is built and a socket
   * path under `dataDir` fits the kernel's limit.
   */
  static async create(dataDir: string, mode: 'auto' | 'off', builtBinary?: string): Promise<GuestAgents> {
    const root = join(dataDir, 'agent')
    if (mode === 'off')
      return new GuestAgents(root, undefined, 'disabled by configuration (ISORUN_EMULATOR_AGENT=off)')
    const longest = join(root, 'run', 'x'.repeat(12), 'agent.sock')
    if (longest.length > MAX_SOCKET_PATH)
      return new GuestAgents(
        root,
        undefined,
        `the data dir's path is too long for a Unix socket under it (${longest})`,
      )
    try {
      await mkdir(join(root, 'run'), { recursive: true, mode: 0o700 })
      const binary = await installAgentBinary(join(root, 'bin'), builtBinary)
      return new GuestAgents(root, binary, `isorun-agent ${binary.version} in every new sandbox`)
    } catch (err) {
      const why =
        (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not built (npm run build:agent)' : String(err)
      return new GuestAgents(root, undefined, `isorun-agent unavailable: ${why}`)
    }
  }

  setLog(log: AgentLog): void {
    this.log = log
  }

  /**
   * A directory and a listening socket for a sandbox about to be created, with the binary to mount:
   * `version` picks an earlier build (a checkpoint restores only beside the binary it was taken with).
   */
  async prepare(version?: string): Promise<AgentInjection | undefined> {
    if (!this.binary) return undefined
    let binaryPath = this.binary.path
    let chosen = this.binary.version
    if (version && version !== chosen) {
      const earlier = agentBinaryPath(join(this.root, 'bin'), version)
      if (
        await access(earlier).then(
          () => true,
          () => false,
        )
      ) {
        binaryPath = earlier
        chosen = version
      }
    }
    const hostDir = join(this.root, 'run', randomBytes(6).toString('hex'))
    await mkdir(hostDir, { mode: 0o755 })
    const channel = new AgentChannel(join(hostDir, 'agent.sock'))
    await channel.listen()
    return { binaryPath, version: chosen, hostDir, channel }
  }

  /** The container made with `injection` (or found again after a restart, from its mounts). */
  bind(containerId: string, injection: AgentInjection): void {
    this.channels.set(containerId, injection)
  }

  /** The agent injection of a container this emulator made, looking it up after a restart. */
  async find(
    containerId: string,
    hostDirOf: () => Promise<string | undefined>,
  ): Promise<AgentInjection | undefined> {
    const known = this.channels.get(containerId)
    if (known || !this.binary || this.unmounted.has(containerId)) return known
    const hostDir = await hostDirOf()
    // Only a directory of this emulator's own is trusted as the place to listen.
    if (!this.owns(hostDir)) {
      this.unmounted.add(containerId)
      return undefined
    }
    const again = this.channels.get(containerId)
    if (again) return again
    const channel = new AgentChannel(join(hostDir, 'agent.sock'))
    const injection: AgentInjection = { binaryPath: '', version: '', hostDir, channel }
    this.channels.set(containerId, injection)
    await channel.listen()
    this.log({ containerId }, 'listening for the agent of a sandbox found again')
    return injection
  }

  /** Before a checkpoint of the container (see AgentChannel.detach). */
  async detach(containerId: string): Promise<void> {
    await this.channels.get(containerId)?.channel.detach()
  }

  /** After a checkpoint, or before a container starts from one. */
  async reattach(containerId: string): Promise<void> {
    await this.channels.get(containerId)?.channel.listen()
  }

  /** The container is gone: its calls end, its directory goes. */
  async forget(containerId: string, hostDir?: string): Promise<void> {
    const injection = this.channels.get(containerId)
    this.channels.delete(containerId)
    this.unmounted.delete(containerId)
    await injection?.channel.close()
    await this.discard(injection?.hostDir ?? hostDir)
  }

  /**
   * The emulator is stopping: stop listening and end calls, keep the directories (the sandboxes keep
   * running, and their agents dial the next emulator on the same data dir).
   */
  async closeAll(): Promise<void> {
    const all = [...this.channels.values()]
    this.channels.clear()
    this.unmounted.clear()
    await Promise.all(all.map((i) => i.channel.close()))
  }

  /** Removes a prepared directory whose container was never made, or is gone. */
  async discard(hostDir: string | undefined): Promise<void> {
    if (!this.owns(hostDir)) return
    await rm(hostDir, { recursive: true, force: true })
  }

  private owns(hostDir: string | undefined): hostDir is string {
    return hostDir?.startsWith(`${join(this.root, 'run')}/`) === true
  }

  /** Which transport the container's exec uses now, and why. */
  report(containerId: string): TransportReport {
    if (!this.binary) return { transport: 'docker-exec', reason: this.reason }
    const injection = this.channels.get(containerId)
    if (!injection)
      return { transport: 'docker-exec', reason: 'the sandbox has no agent (created without one)' }
    const { channel } = injection
    if (channel.expecting())
      return { transport: 'agent', reason: `isorun-agent (pid ${channel.hello?.pid ?? '?'} in the sandbox)` }
    return { transport: 'docker-exec', reason: channel.lastProblem ?? 'the agent is not connected' }
  }
}
