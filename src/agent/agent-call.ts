import type { Socket } from 'node:net'
import { type Frame, FrameReader, frame, frameHeader, Msg, ProtocolError, Req } from './protocol.ts'

/** How long the agent gets to acknowledge DETACH before its connection is simply cut. */
const DETACH_ACK_MS = 2_000

export interface CallHandlers {
  /** A frame from the agent (DETACHED is handled here). Throw a ProtocolError to end the call. */
  frame(f: Frame): void
  /** The connection ended while the call was attached: the agent (or its sandbox) is gone. */
  lost(err: Error): void
}

/**
 * One request to the agent and its own connection. Before a checkpoint the connection is detached (the
 * agent acknowledges, then both sides close it) and later a new one is attached when the agent comes
 * back with RESUME, so the call outlives the checkpoint. Control frames sent while detached wait.
 */
export class AgentCall {
  readonly id: Buffer
  readonly key: string
  private socket: Socket | undefined
  private reader = new FrameReader()
  private state: 'attached' | 'detaching' | 'detached' | 'done' = 'attached'
  private readonly handlers: CallHandlers
  private readonly queued: Buffer[] = []
  private readingPaused = false
  private detachedAck: (() => void) | undefined
  private reattached: Array<() => void> = []

  constructor(id: Buffer, socket: Socket, handlers: CallHandlers) {
    this.id = id
    this.key = id.toString('hex')
    this.handlers = handlers
    this.attach(socket)
  }

  get done(): boolean {
    return this.state === 'done'
  }

  get detached(): boolean {
    return this.state === 'detached' || this.state === 'detaching'
  }

  /** Sends a control frame now, or once the call is attached again. */
  control(type: number): void {
    if (this.state === 'attached' && this.socket) this.socket.write(frame(type))
    else if (this.state !== 'done') this.queued.push(frame(type))
  }

  /**
   * Writes a frame (its header, then the payload as it is: no copy), resolving once the socket takes
   * more (backpressure) and the call is attached.
   */
  async writeFrame(type: number, payload: Buffer): Promise<void> {
    await this.attached()
    const socket = this.socket
    if (!socket || this.state === 'done') throw new ProtocolError('the call ended')
    socket.cork()
    socket.write(frameHeader(type, payload.length))
    const more = socket.write(payload)
    socket.uncork()
    if (!more) {
      await new Promise<void>((resolve) => {
        const go = () => {
          socket.off('drain', go)
          socket.off('close', go)
          resolve()
        }
        socket.on('drain', go)
        socket.on('close', go)
      })
    }
  }

  /** Stops or restarts reading the agent's frames (a slow consumer of a download). */
  pauseReading(paused: boolean): void {
    this.readingPaused = paused
    if (paused) this.socket?.pause()
    else this.socket?.resume()
  }

  /** Asks the agent to let go of the connection; resolves once it has closed it (or once it was cut). */
  async detach(): Promise<void> {
    if (this.state !== 'attached' || !this.socket) return
    this.state = 'detaching'
    const socket = this.socket
    const acknowledged = new Promise<void>((resolve) => {
      this.detachedAck = resolve
    })
    socket.write(frame(Req.detach))
    // Frames before DETACHED are still read, whatever the consumer's pace: the agent sends DETACHED
    // only after them.
    socket.resume()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      acknowledged,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, DETACH_ACK_MS)
      }),
    ])
    clearTimeout(timer)
    this.detachedAck = undefined
    if (this.state === 'detaching') this.state = 'detached'
    this.socket = undefined
    socket.destroy()
  }

  /** The agent came back for this call (RESUME): carry on over `socket`. */
  reattach(socket: Socket): void {
    if (this.state !== 'detached') {
      socket.end(frame(Req.abandon))
      return
    }
    this.state = 'attached'
    this.reader = new FrameReader()
    this.attach(socket)
    socket.write(frame(Req.continue))
    for (const f of this.queued.splice(0)) socket.write(f)
    if (this.readingPaused) socket.pause()
    for (const wake of this.reattached.splice(0)) wake()
  }

  /** The call is over: its connection is closed and nothing more is read or sent. */
  finish(): void {
    if (this.state === 'done') return
    this.state = 'done'
    this.socket?.destroy()
    this.socket = undefined
    this.detachedAck?.()
    for (const wake of this.reattached.splice(0)) wake()
  }

  /** Ends the call as lost (its sandbox is going away), whatever state it is in. */
  abort(err: Error): void {
    if (this.state === 'done') return
    this.finish()
    this.handlers.lost(err)
  }

  private attached(): Promise<void> {
    if (this.state === 'attached' || this.state === 'done') return Promise.resolve()
    return new Promise((resolve) => this.reattached.push(resolve))
  }

  private attach(socket: Socket): void {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      if (this.socket !== socket || this.state === 'done') return
      try {
        for (const f of this.reader.push(chunk)) {
          // A handler may have ended the call on an earlier frame of this chunk.
          if (this.done) return
          if (f.type === Msg.detached) {
            // The agent closes right after it: detach() resolves on the close, when the agent's end of
            // the connection is really gone (what a checkpoint needs).
            this.state = 'detached'
            return
          }
          this.handlers.frame(f)
        }
      } catch (err) {
        this.finish()
        this.handlers.lost(err as Error)
      }
    })
    socket.on('error', () => {}) // 'close' follows
    socket.on('close', () => {
      if (this.socket !== socket) return
      if (this.state === 'detaching' || this.state === 'detached') {
        this.state = 'detached'
        this.detachedAck?.()
        return
      }
      if (this.state !== 'attached') return
      this.socket = undefined
      this.state = 'done'
      this.handlers.lost(new Error('the connection to the agent closed'))
    })
  }
}
