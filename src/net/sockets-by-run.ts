import type { Duplex } from 'node:stream'

/**
 * Open sockets grouped by the sandbox they belong to, each forgotten when it closes, so that all of a
 * sandbox's can be cut at once: when it is destroyed, and before a checkpoint (CRIU refuses established
 * TCP connections). Used by url(port)'s proxy and by the egress proxy.
 */
export class SocketsByRun {
  private readonly byRun = new Map<string, Set<Duplex>>()

  add(runId: string, ...sockets: Duplex[]): void {
    let set = this.byRun.get(runId)
    if (!set) {
      set = new Set()
      this.byRun.set(runId, set)
    }
    for (const socket of sockets) {
      if (set.has(socket)) continue
      set.add(socket)
      socket.once('close', () => {
        set.delete(socket)
        if (set.size === 0 && this.byRun.get(runId) === set) this.byRun.delete(runId)
      })
    }
  }

  /** Takes the run's sockets out of the registry, for the caller to close. */
  take(runId: string): Duplex[] {
    const sockets = [...(this.byRun.get(runId) ?? [])]
    this.byRun.delete(runId)
    return sockets
  }

  runs(): string[] {
    return [...this.byRun.keys()]
  }
}
