import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'
import type Docker from 'dockerode'
import type { AgentChannel } from '../agent/agent-channel.ts'
import {
  AgentLostError,
  execViaAgent,
  listDirViaAgent,
  readFileViaAgent,
  writeFileViaAgent,
} from '../agent/agent-ops.ts'
import {
  type AgentInjection,
  type AgentLog,
  GUEST_AGENT,
  GUEST_SOCKET,
  GUEST_SOCKET_DIR,
  type GuestAgents,
  type TransportReport,
} from '../agent/guest-agents.ts'
import { ProtocolError } from '../agent/protocol.ts'
import { Errors } from '../errors.ts'
import type { ExecOutcome, ExecRequest, FileDownload } from '../sandboxes/engine.ts'

/** The container label naming the agent build a sandbox runs (copied into its snapshots' images). */
export const AGENT_LABEL = 'isorun-emulator.agent'

/** How often a missing agent is started again in one sandbox, at most. */
const RELAUNCH_EVERY_MS = 30_000

/**
 * Exec and files through a sandbox's agent when it is there, through Docker (exec, archive API)
 * otherwise: the caller passes the Docker way as `fallback`, and the first switch to it in a sandbox
 * is logged with its reason. Also how Docker mounts and starts the agent.
 */
export class DockerAgentTransport {
  private readonly docker: Docker
  readonly agents: GuestAgents
  private readonly log: AgentLog
  private readonly lastFallback = new Map<string, string>()
  private readonly relaunchedAt = new Map<string, number>()

  constructor(docker: Docker, agents: GuestAgents, log: AgentLog = () => {}) {
    this.docker = docker
    this.agents = agents
    this.log = log
    agents.setLog(log)
  }

  /** For a new container; `fromImage`, a snapshot's image, picks the agent build it was taken with. */
  async prepare(fromImage?: string): Promise<AgentInjection | undefined> {
    let version: string | undefined
    if (fromImage) {
      const info = await this.docker
        .getImage(fromImage)
        .inspect()
        .catch(() => undefined)
      version = info?.Config?.Labels?.[AGENT_LABEL]
    }
    return this.agents.prepare(version)
  }

  async exec(
    containerId: string,
    request: ExecRequest,
    fallback: () => Promise<ExecOutcome>,
  ): Promise<ExecOutcome> {
    const got = await this.spare(containerId, 'exec')
    if (typeof got === 'string') return fallback()
    return this.translate(containerId, execViaAgent(got.channel, got.socket, request), (err) => {
      if (err.partial) return err.partial
      throw Errors.runNotFound(containerId)
    })
  }

  async readFile(
    containerId: string,
    path: string,
    fallback: () => Promise<FileDownload>,
  ): Promise<FileDownload> {
    const got = await this.spare(containerId, 'files')
    if (typeof got === 'string') return fallback()
    return this.translate(containerId, readFileViaAgent(got.channel, got.socket, path))
  }

  async writeFile(
    containerId: string,
    path: string,
    size: number,
    content: Readable,
    fallback: () => Promise<void>,
  ): Promise<void> {
    const got = await this.spare(containerId, 'files')
    if (typeof got === 'string') return fallback()
    return this.translate(containerId, writeFileViaAgent(got.channel, got.socket, path, size, content))
  }

  async listDir(containerId: string, path: string, fallback: () => Promise<string[]>): Promise<string[]> {
    const got = await this.spare(containerId, 'files')
    if (typeof got === 'string') return fallback()
    const names = await this.translate(containerId, listDirViaAgent(got.channel, got.socket, path))
    return names.sort()
  }

  report(containerId: string): TransportReport {
    return this.agents.report(containerId)
  }

  /**
   * A spare connection to the container's agent, or the reason to use Docker instead. Files need an
   * agent running as root: the archive API writes as root whatever the image's user, and so must it.
   */
  private async spare(
    containerId: string,
    use: 'exec' | 'files',
  ): Promise<{ channel: AgentChannel; socket: Socket } | string> {
    if (!this.agents.enabled) return this.agents.reason // said once, at start
    const injection = await this.agents.find(containerId, () => this.hostDirOf(containerId))
    if (!injection) return this.fellBack(containerId, 'the sandbox has no agent (created without one)')
    const { channel } = injection
    const notRoot = () =>
      use === 'files' && channel.hello && channel.hello.uid !== 0
        ? `the agent runs as uid ${channel.hello.uid}, and files are written as root`
        : undefined
    const early = notRoot()
    if (early) return this.fellBack(containerId, early)
    const socket = await channel.take()
    if (!socket) {
      this.relaunch(containerId)
      return this.fellBack(containerId, channel.lastProblem ?? 'the agent is not connected')
    }
    const late = notRoot()
    if (late) {
      channel.putBack(socket)
      return this.fellBack(containerId, late)
    }
    if (this.lastFallback.delete(containerId))
      this.log({ containerId }, 'exec and files through the agent again')
    return { channel, socket }
  }

  private fellBack(containerId: string, reason: string): string {
    if (this.lastFallback.get(containerId) !== reason) {
      this.lastFallback.set(containerId, reason)
      this.log({ containerId, reason }, 'exec and files through docker exec and the archive API')
    }
    return reason
  }

  /**
   * An agent that went away mid-call. When its sandbox is going too (destroyed), an exec ends as
   * docker exec's does: what it printed, exit code 137; other calls find the sandbox missing. An agent
   * that died alone (the guest killed it) is an engine error: the command's fate is unknown.
   */
  private async translate<T>(
    containerId: string,
    pending: Promise<T>,
    partial?: (err: AgentLostError) => T,
  ): Promise<T> {
    try {
      return await pending
    } catch (err) {
      if (!(err instanceof AgentLostError) && !(err instanceof ProtocolError)) throw err
      if (err instanceof ProtocolError || !(await this.stopping(containerId)))
        throw Errors.engine(err.message)
      if (partial) return partial(err)
      throw Errors.runNotFound(containerId)
    }
  }

  /** Whether the container stops (or is gone) within a moment: a removal kills the agent first. */
  private async stopping(containerId: string): Promise<boolean> {
    const container = this.docker.getContainer(containerId)
    for (let i = 0; i < 20; i++) {
      const running = await container.inspect().then(
        (info) => info.State.Running && !info.State.Dead,
        () => false,
      )
      if (!running) return true
      await new Promise((r) => setTimeout(r, 100))
    }
    return false
  }

  /** The host directory of a container's socket, from its mounts (after an emulator restart). */
  private async hostDirOf(containerId: string): Promise<string | undefined> {
    const info = await this.docker
      .getContainer(containerId)
      .inspect()
      .catch(() => undefined)
    return info?.Mounts?.find((m) => m.Destination === GUEST_SOCKET_DIR)?.Source
  }

  /**
   * Starts the agent again through Docker's exec (it puts itself in the background, under the
   * sandbox's init): for a sandbox whose agent was killed, or restored from a checkpoint without one.
   */
  private relaunch(containerId: string): void {
    const last = this.relaunchedAt.get(containerId) ?? 0
    if (Date.now() - last < RELAUNCH_EVERY_MS) return
    this.relaunchedAt.set(containerId, Date.now())
    const container = this.docker.getContainer(containerId)
    void (async () => {
      const exec = await container.exec({ Cmd: [GUEST_AGENT, 'start', GUEST_SOCKET] })
      // Docker answers a detached start with an empty body; left unread, it would hold a connection.
      const answer = (await exec.start({ Detach: true })) as unknown as Readable | undefined
      answer?.resume?.()
      this.log({ containerId }, 'started the sandbox agent again')
    })().catch((err) =>
      this.log({ containerId, err: (err as Error).message }, 'could not start the sandbox agent again'),
    )
  }

  close(): Promise<void> {
    return this.agents.closeAll()
  }

  async forget(containerId: string): Promise<void> {
    this.lastFallback.delete(containerId)
    this.relaunchedAt.delete(containerId)
    await this.agents.forget(containerId)
  }
}

/** Docker's side of an injection: the mounts, and the main process that starts the agent. */
export function agentContainerConfig(injection: AgentInjection, keepAlive: string[]) {
  return {
    binds: [`${injection.binaryPath}:${GUEST_AGENT}:ro`, `${injection.hostDir}:${GUEST_SOCKET_DIR}:ro`],
    command: [GUEST_AGENT, 'launch', GUEST_SOCKET, '--', ...keepAlive],
    labels: { [AGENT_LABEL]: injection.version },
  }
}
