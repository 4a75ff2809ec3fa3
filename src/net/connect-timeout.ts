import type { Socket } from 'node:net'

/**
 * How long a new outgoing connection (into a sandbox, or out through the egress proxy) may take. A
 * destination that is up accepts or refuses at once (a closed port answers RST); only a wedged network
 * stack stays silent, and a client should not hang on that for minutes.
 */
export const CONNECT_TIMEOUT_MS = 10_000

/**
 * Fails a connection still being made after CONNECT_TIMEOUT_MS: `fail` gets an ETIMEDOUT error (the
 * socket is destroyed with it by default). Nothing happens to a socket that is already connected.
 */
export function limitConnectTime(
  socket: Socket,
  fail: (err: Error) => void = (err) => socket.destroy(err),
): void {
  if (!socket.connecting) return
  const timer = setTimeout(
    () =>
      fail(
        Object.assign(new Error(`no connection within ${CONNECT_TIMEOUT_MS / 1000} s`), {
          code: 'ETIMEDOUT',
        }),
      ),
    CONNECT_TIMEOUT_MS,
  )
  const clear = () => clearTimeout(timer)
  socket.once('connect', clear)
  socket.once('close', clear)
}
