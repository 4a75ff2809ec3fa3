import { chmod, unlink } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import type { AgentCall } from './agent-call.ts'
import { FrameReader, frame, ID_LENGTH, Msg, PROTOCOL_VERSION, Req } from './protocol.ts'

/** How long a new connection may take to say what it is. */
const GREETING_MS = 2_000
/** The agent keeps one spare connection; a few more are tolerated, the rest closed. */
const MAX_SPARES = 4
/** After listening (again), how long the agent is expected to show up before docker exec is used. */
export const AGENT_GRACE_MS = 3_000
/** While the agent is connected, how long to wait for its next spare connection. */
const NEXT_SPARE_MS = 2_000
/** An agent connection closed this recently still counts as the agent being there. */
const RECENT_MS = 1_000

export interface AgentHello {
  uid: number
  pid: number
}

/**
 * The emulator's end of one sandbox's agent: a Unix socket the agent dials, in a directory only that
 * sandbox has mounted (read-only, so the guest cannot swap the socket for a link). Each connection
 * opens with HELLO (a spare, ready for one request) or RESUME (a call coming back after a checkpoint).
 */
export class AgentChannel {
  readonly socketPath: string
  private server: Server | undefined
  private spares: Socket[] = []
  private waiting: Array<(s: Socket | undefined) => void> = []
  private readonly calls = new Map<string, AgentCall>()
  /** Connections that greeted as the agent and are still open, spare or in use. */
  private readonly agentSockets = new Set<Socket>()
  /** Accepted connections that have not said what they are yet. */
  private readonly greeting = new Set<Socket>()
  private lastClosedAt = 0
  private expectUntil = 0
  private closed = false
  /** What the agent said in its last HELLO. */
  hello: AgentHello | undefined
  /** Why the agent is not in use, when it is not (for logs and capabilities). */
  lastProblem: string | undefined

  constructor(socketPath: string) {
    this.socketPath = socketPath
  }

  /** Listens (again); the agent is expected within AGENT_GRACE_MS. */
  async listen(): Promise<void> {
    if (this.server || this.closed) return
    await unlink(this.socketPath).catch(() => {})
    const server = createServer((socket) => this.accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.socketPath, () => {
        server.off('error', reject)
        resolve()
      })
    })
    // The guest's agent may run as any user of the image; the directory is what keeps others out.
    await chmod(this.socketPath, 0o777)
    this.server = server
    this.expectUntil = Date.now() + AGENT_GRACE_MS
  }

  /** Whether the agent is connected now (a spare or a call), or expected shortly. */
  expecting(): boolean {
    return this.connected() || Date.now() < this.expectUntil
  }

  /**
   * Whether the agent holds a connection (a spare, a call's, one still greeting), or held one a moment
   * ago: its next spare is dialled as a request arrives, but may be accepted here only after that
   * request's call has ended.
   */
  connected(): boolean {
    for (const s of this.agentSockets) if (!s.destroyed) return true
    return Date.now() - this.lastClosedAt < RECENT_MS
  }

  /** A spare connection for one request, or undefined when the agent does not provide one in time. */
  take(): Promise<Socket | undefined> {
    const spare = this.spares.shift()
    if (spare) {
      spare.off('data', this.unexpected)
      spare.off('close', this.dropSpare)
      return Promise.resolve(spare)
    }
    if (this.closed || !this.server) return Promise.resolve(undefined)
    const wait = this.connected() ? NEXT_SPARE_MS : this.expectUntil - Date.now()
    if (wait <= 0) return Promise.resolve(undefined)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== give)
        resolve(undefined)
      }, wait)
      const give = (s: Socket | undefined) => {
        clearTimeout(timer)
        resolve(s)
      }
      this.waiting.push(give)
    })
  }

  /** Gives back a spare taken but not used. */
  putBack(socket: Socket): void {
    if (socket.destroyed) return
    this.spares.unshift(socket)
    socket.on('data', this.unexpected)
    socket.on('close', this.dropSpare)
  }

  track(call: AgentCall): void {
    this.calls.set(call.key, call)
  }

  untrack(call: AgentCall): void {
    if (this.calls.get(call.key) === call) this.calls.delete(call.key)
  }

  /**
   * Before a checkpoint: stop listening, so the agent cannot dial back, and have it let go of every
   * connection (CRIU cannot checkpoint a socket connected outside the sandbox). Calls keep their state.
   */
  async detach(): Promise<void> {
    await this.stopListening()
    // One accepted a moment ago would greet too late to be asked to let go: it is cut now.
    for (const s of this.greeting) s.destroy()
    const spares = this.spares.splice(0)
    await Promise.all([
      ...spares.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.once('close', () => resolve())
            s.end(frame(Req.detach))
            setTimeout(() => {
              s.destroy()
              resolve()
            }, 2_000).unref()
          }),
      ),
      ...[...this.calls.values()].map((c) => c.detach()),
    ])
  }

  /** Ends everything: the sandbox is going away. */
  async close(): Promise<void> {
    this.closed = true
    await this.stopListening()
    for (const s of this.spares.splice(0)) s.destroy()
    for (const give of this.waiting.splice(0)) give(undefined)
    const calls = [...this.calls.values()]
    this.calls.clear()
    for (const call of calls) call.abort(new Error('the sandbox is being removed'))
  }

  private async stopListening(): Promise<void> {
    const server = this.server
    this.server = undefined
    this.expectUntil = 0
    if (!server) return
    // Stops accepting at once (close's callback would wait for every open connection to end).
    server.close()
    await unlink(this.socketPath).catch(() => {})
  }

  private accept(socket: Socket): void {
    if (this.closed || !this.server) {
      socket.destroy()
      return
    }
    const reader = new FrameReader(64)
    const timer = setTimeout(() => socket.destroy(), GREETING_MS)
    this.agentSockets.add(socket)
    this.greeting.add(socket)
    socket.on('error', () => {})
    socket.once('close', () => {
      clearTimeout(timer)
      this.agentSockets.delete(socket)
      this.greeting.delete(socket)
      if (this.hello) this.lastClosedAt = Date.now()
    })
    socket.on('data', (chunk: Buffer) => {
      let frames: ReturnType<FrameReader['push']>
      try {
        frames = reader.push(chunk)
      } catch {
        socket.destroy()
        return
      }
      const first = frames[0]
      if (!first) return
      clearTimeout(timer)
      this.greeting.delete(socket)
      socket.removeAllListeners('data')
      // Detached meanwhile (a checkpoint is under way): not now; the agent dials again after.
      if (!this.server) {
        socket.destroy()
        return
      }
      // Nothing may follow the greeting before the emulator speaks.
      if (frames.length > 1) {
        socket.destroy()
        return
      }
      if (first.type === Msg.hello) this.spare(socket, first.payload)
      else if (first.type === Msg.resume && first.payload.length === ID_LENGTH)
        this.resume(socket, first.payload)
      else socket.destroy()
    })
  }

  private spare(socket: Socket, payload: Buffer): void {
    if (payload.length < 9 || payload[0] !== PROTOCOL_VERSION) {
      this.lastProblem = `the agent speaks protocol ${payload[0]}, the emulator ${PROTOCOL_VERSION}`
      socket.destroy()
      return
    }
    this.hello = { uid: payload.readUInt32BE(1), pid: payload.readUInt32BE(5) }
    this.lastProblem = undefined
    const waiter = this.waiting.shift()
    if (waiter) {
      waiter(socket)
      return
    }
    this.spares.push(socket)
    while (this.spares.length > MAX_SPARES) this.spares.shift()?.destroy()
    socket.on('data', this.unexpected)
    socket.on('close', this.dropSpare)
  }

  /** A spare says nothing until it is used. */
  private readonly unexpected = function (this: Socket) {
    this.destroy()
  }

  private readonly dropSpare = () => {
    this.spares = this.spares.filter((s) => !s.destroyed)
  }

  private resume(socket: Socket, id: Buffer): void {
    const call = this.calls.get(id.toString('hex'))
    if (call?.detached) call.reattach(socket)
    else socket.end(frame(Req.abandon))
  }
}
