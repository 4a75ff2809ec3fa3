import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { SandboxEventName, SandboxEvents } from '../sandboxes/events.ts'
import type { FastLaneHooks } from './fast/hooks.ts'
import { FastLane } from './fast/lane.ts'
import { forwardHttp } from './http-proxy.ts'
import { GuestPool } from './pool.ts'
import { isListening } from './probe.ts'
import type { GuestTarget } from './target.ts'
import { tunnelUpgrade } from './websocket.ts'

/** After these, the connections into a sandbox lead nowhere (or must not exist). */
const CLOSE_AFTER: ReadonlySet<SandboxEventName> = new Set([
  'sandbox.destroyed',
  'sandbox.hibernated',
  'sandbox.exited',
])

/** A guest that is up answers a probe in well under a millisecond; this only bounds a wedged one. */
const PROBE_TIMEOUT_MS = 1000

/**
 * url(port): HTTP and WebSocket traffic from clients to the ports of sandboxes. The HTTP layer resolves
 * the target; this forwards the bytes and owns the connections into sandboxes.
 */
export class GuestProxy {
  private readonly pool = new GuestPool()
  private lane: FastLane | undefined

  /**
   * Lets the fast lane take url(port) connections of `server` before its HTTP parser does (see
   * fast/lane.ts); what the lane leaves reaches the routes as before.
   */
  attachFastLane(server: Server, hooks: FastLaneHooks): void {
    this.lane = new FastLane(this.pool, hooks)
    this.lane.attach(server)
  }

  /** Closes a sandbox's connections when the lifecycle makes them useless. */
  followLifecycle(events: SandboxEvents): void {
    events.on((e) => {
      if (CLOSE_AFTER.has(e.event)) void this.closeConnections(e.sandbox.id)
    })
  }

  forward(
    target: GuestTarget,
    req: IncomingMessage,
    res: ServerResponse,
    takeOver: () => void,
  ): Promise<void> {
    return forwardHttp(this.pool, { target, req, res, takeOver })
  }

  /** Whether a server accepts connections on a guest's port (one TCP handshake, closed at once). */
  isListening(address: string, port: number): Promise<boolean> {
    return isListening(address, port, PROBE_TIMEOUT_MS)
  }

  upgrade(target: GuestTarget, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    return tunnelUpgrade(this.pool, target, req, socket, head)
  }

  /**
   * Closes every proxied connection into a sandbox, idle or busy, HTTP or WebSocket: for the snapshot
   * code to call before a checkpoint (CRIU refuses established TCP connections). Clients see their
   * streams cut; their next request opens a new connection.
   */
  closeConnections(runId: string): Promise<void> {
    return this.pool.closeConnections(runId)
  }

  /** What the fast lane has done so far; undefined when it is off. */
  fastLaneStats(): { carried: number; handedOff: number } | undefined {
    return this.lane ? { ...this.lane.stats } : undefined
  }

  close(): Promise<void> {
    this.lane?.close()
    return this.pool.close()
  }
}
