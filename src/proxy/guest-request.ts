import { type Agent, type ClientRequest, request } from 'node:http'
import { type EmulatorError, Errors } from '../errors.ts'
import type { GuestTarget } from './target.ts'

/**
 * A guest that is up refuses a closed port at once (RST); only a wedged network stack stays silent, and
 * a client should not hang on that for minutes.
 */
const CONNECT_TIMEOUT_MS = 10_000

class ConnectTimeout extends Error {
  readonly code = 'ETIMEDOUT'
}

/** Opens a request to the guest; a new connection must be established within CONNECT_TIMEOUT_MS. */
export function requestGuest(
  target: GuestTarget,
  method: string,
  headers: string[],
  agent: Agent | false,
): ClientRequest {
  const upstream = request({
    host: target.address,
    port: target.port,
    method,
    path: target.path,
    headers,
    agent,
    setHost: false,
  })
  upstream.once('socket', (socket) => {
    socket.setNoDelay(true)
    if (!socket.connecting) return
    const timer = setTimeout(
      () => upstream.destroy(new ConnectTimeout(`no connection within ${CONNECT_TIMEOUT_MS / 1000} s`)),
      CONNECT_TIMEOUT_MS,
    )
    const clear = () => clearTimeout(timer)
    socket.once('connect', clear)
    socket.once('close', clear)
  })
  return upstream
}

/** A failure to reach the guest, as the 502 the client gets; the message says what to check. */
export function unreachable(target: GuestTarget, err: unknown): EmulatorError {
  const code = (err as { code?: string })?.code
  const why =
    code === 'ECONNREFUSED'
      ? 'connection refused (is a server listening there on 0.0.0.0 or ::? one bound to 127.0.0.1 only cannot be reached from outside the sandbox)'
      : code === 'ECONNRESET'
        ? 'the guest closed the connection before answering'
        : ((err as Error)?.message ?? String(err))
  return Errors.badGateway(target.runId, target.port, why)
}

/** A reused keep-alive socket the guest had already closed: safe to retry a request with no body. */
export function isStaleSocket(upstream: ClientRequest, err: unknown): boolean {
  const code = (err as { code?: string })?.code
  return upstream.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE')
}
