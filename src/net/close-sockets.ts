import type { Duplex } from 'node:stream'

/** How long the peer gets to close its side after ours; a guest that is up does it within milliseconds. */
export const PEER_CLOSE_WAIT_MS = 2_000

/**
 * Closes sockets the polite way and resolves once each is closed on both sides: ours ends (FIN), the
 * peer answers with its own FIN, and Node then closes the socket. Before a checkpoint this matters: a
 * connection we merely destroyed lingers in the guest until its process gets round to closing it (long
 * enough, on a busy machine, for CRIU to find it and refuse the dump). A peer that has not closed after
 * `waitMs` is cut.
 */
export function closeSockets(sockets: Iterable<Duplex>, waitMs = PEER_CLOSE_WAIT_MS): Promise<void> {
  const open = [...sockets].filter((s) => !s.closed)
  if (open.length === 0) return Promise.resolve()
  return new Promise<void>((resolve) => {
    let left = open.length
    const timer = setTimeout(() => {
      for (const s of open) s.destroy()
    }, waitMs)
    for (const s of open) {
      s.once('close', () => {
        if (--left > 0) return
        clearTimeout(timer)
        resolve()
      })
      // A reset while closing is an ordinary end here.
      s.on('error', () => {})
      // Data still arriving is dropped; reading keeps the peer's FIN from waiting behind it.
      s.resume()
      s.end()
    }
  })
}
