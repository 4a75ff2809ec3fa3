import type { Server as HttpServer } from 'node:http'
import type { Server, Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'

/**
 * A bounded graceful stop for the HTTP server and every listener that feeds it.
 *
 * Node's `server.close()` waits only for the connections its own listener accepted, so a connection
 * handed over by another listener (server.ts binds 127.0.0.1 that way) was cut when the process exited
 * under it; and it leaves a kept-alive connection open after its last answer until the client closes it.
 * This tracks every connection the HTTP server is given, whichever listener took it, closes each as soon
 * as it is idle, and after the grace period closes whatever is still open, so nothing (a long exec, a
 * client that never lets go) holds the exit.
 */
export class ConnectionDrain {
  private readonly open = new Set<Socket>()
  private draining = false
  private drained: (() => void) | undefined
  private readonly server: HttpServer

  constructor(server: HttpServer) {
    this.server = server
    server.on('connection', (socket: Socket) => {
      this.open.add(socket)
      socket.once('close', () => {
        this.open.delete(socket)
        if (this.open.size === 0) this.drained?.()
      })
    })
    // While draining, a connection closes once its answer is out, rather than waiting kept-alive for a
    // next request that would only get a 503.
    server.on('request', (_request, response) => {
      response.once('finish', () => {
        if (this.draining) setImmediate(() => this.server.closeIdleConnections())
      })
    })
  }

  /** Connections open now (any listener, any state). */
  get size(): number {
    return this.open.size
  }

  /**
   * Stops every listener accepting (the HTTP server's own included), lets the requests in flight finish
   * for up to `graceMs`, then destroys the connections still open. Resolves once none is left.
   */
  async drain(listeners: Server[], graceMs: number, log: FastifyBaseLogger): Promise<void> {
    this.draining = true
    for (const listener of listeners) if (listener.listening) listener.close()
    this.server.closeIdleConnections()
    if (this.open.size === 0) return
    log.info({ connections: this.open.size, graceMs }, 'shutdown: waiting for requests in flight')
    const empty = new Promise<void>((resolve) => {
      this.drained = resolve
    })
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs)
    })
    if ((await Promise.race([empty, late])) === 'late') {
      log.warn(
        { connections: this.open.size, graceMs },
        'shutdown: grace period over; closing the connections still open',
      )
      for (const socket of this.open) socket.destroy()
      await empty
    }
    clearTimeout(timer)
  }
}
