import { Agent } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { closeSockets } from '../net/close-sockets.ts'
import { SocketsByRun } from '../net/sockets-by-run.ts'

const IDLE_SOCKET_MS = 4000

/**
 * The proxy's connections into each sandbox: a keep-alive agent for plain HTTP (so a request costs no
 * TCP handshake) and the sockets of upgraded (WebSocket) tunnels. All of a sandbox's connections can be
 * closed at once: when it is destroyed, and before a checkpoint (CRIU refuses established TCP
 * connections).
 */
export class GuestPool {
  private readonly agents = new Map<string, Agent>()
  private readonly tunnels = new SocketsByRun()

  agent(runId: string): Agent {
    let agent = this.agents.get(runId)
    if (!agent) {
      agent = new Agent({
        keepAlive: true,
        keepAliveMsecs: 1000,
        // Idle sockets are closed after this (sooner when the guest announces `Keep-Alive: timeout=N`),
        // before a typical server closes them itself: reusing a socket the guest just closed would fail
        // a request that has a body. A new connection into a local container costs ~0.1 ms.
        timeout: IDLE_SOCKET_MS,
        // The most recently used socket is the one least likely to have been closed by the guest.
        scheduling: 'lifo',
        maxFreeSockets: 64,
      })
      this.agents.set(runId, agent)
    }
    return agent
  }

  /**
   * Remembers sockets into (or tunnelled to) a sandbox that the agent does not own until they close:
   * upgraded tunnels (client side and guest side) and the fast lane's guest connections.
   */
  trackTunnel(runId: string, ...sockets: Duplex[]): void {
    this.tunnels.add(runId, ...sockets)
  }

  /**
   * Closes every connection into the sandbox, busy or idle; resolves once they are all closed, by the
   * guest too (see closeSockets), so that a checkpoint right after finds none in the guest.
   */
  async closeConnections(runId: string): Promise<void> {
    const sockets = this.tunnels.take(runId)
    const agent = this.agents.get(runId)
    if (agent) {
      this.agents.delete(runId)
      for (const group of [agent.sockets, agent.freeSockets]) {
        for (const list of Object.values(group)) sockets.push(...((list ?? []) as Socket[]))
      }
    }
    await closeSockets(sockets)
    agent?.destroy()
  }

  async close(): Promise<void> {
    const runs = new Set([...this.agents.keys(), ...this.tunnels.runs()])
    await Promise.all([...runs].map((id) => this.closeConnections(id)))
  }
}
