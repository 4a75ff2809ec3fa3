import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { GuestPool } from '../pool.ts'
import { LaneConnection } from './connection.ts'
import type { FastLaneHooks } from './hooks.ts'

/**
 * url(port) without Node's HTTP machinery, for speed: through Node's server and client a proxied request
 * costs the emulator ~95 to 130 µs of CPU here, through the lane ~50 to 65 µs (a bare byte relay, ~25 to
 * 35 µs). Each new connection to the emulator is looked at first: if its
 * request is an ordinary url(port) request, the lane reads the head itself, writes it to a connection
 * into the guest (prefix stripped, headers as on the slow path), and relays the body bytes and the
 * answer unchanged, heads aside (the same header rules, `Location` rewritten), following only where
 * each body ends. One guest connection per client connection, kept alive while both are.
 *
 * Whatever the lane does not fully understand — another path, an upgrade, `Expect`, HTTP/1.0, odd
 * framing, an error to answer, armed faults — goes to Node's HTTP server (Fastify, the slow path) with
 * the bytes read so far, and the connection stays there.
 */
export class FastLane {
  private readonly connections = new Set<LaneConnection>()
  /** Exchanges the lane carried, and connections it gave to Node's HTTP server (tests and logs read these). */
  readonly stats = { carried: 0, handedOff: 0 }
  private server: Server | undefined
  private httpListeners: ((socket: Socket) => void)[] = []
  private headCheck: NodeJS.Timeout | undefined

  readonly pool: GuestPool
  readonly hooks: FastLaneHooks

  constructor(pool: GuestPool, hooks: FastLaneHooks) {
    this.pool = pool
    this.hooks = hooks
  }

  /**
   * Takes over the server's new connections; those the lane leaves go to the server's own listener.
   * Request heads get the server's own deadline (`headersTimeout`, checked as often as the server
   * checks it), so a slowloris client meets the same 408 on either path.
   */
  attach(server: Server): void {
    this.server = server
    const every = (server as Server & { connectionsCheckingInterval?: number }).connectionsCheckingInterval
    this.headCheck = setInterval(() => this.expireHeads(server.headersTimeout), every ?? 30_000).unref()
    this.httpListeners = server.listeners('connection') as ((socket: Socket) => void)[]
    server.removeAllListeners('connection')
    server.on('connection', (socket: Socket) => {
      const forget = () => this.connections.delete(conn)
      const conn: LaneConnection = new LaneConnection(socket, {
        pool: this.pool,
        hooks: this.hooks,
        carried: () => this.stats.carried++,
        handOff: (s, pending) => {
          forget()
          this.handOff(s, pending)
        },
        forget,
      })
      this.connections.add(conn)
      conn.start()
    })
  }

  /** Gives a connection to Node's HTTP server, `pending` (bytes read, not handled) first. */
  private handOff(socket: Socket, pending: Buffer): void {
    this.stats.handedOff++
    socket.pause()
    if (pending.length > 0) socket.unshift(pending)
    for (const listener of this.httpListeners) listener.call(this.server, socket)
    socket.resume()
  }

  private expireHeads(ms: number): void {
    if (!(ms > 0)) return
    const now = performance.now()
    for (const conn of this.connections) conn.expireHead(now, ms)
  }

  /** Closes every connection the lane holds (the emulator is stopping). */
  close(): void {
    clearInterval(this.headCheck)
    for (const conn of this.connections) conn.destroy()
    this.connections.clear()
  }
}
