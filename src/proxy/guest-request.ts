import { type Agent, type ClientRequest, request } from 'node:http'
import { type EmulatorError, Errors } from '../errors.ts'
import { limitConnectTime } from '../net/connect-timeout.ts'
import type { GuestTarget } from './target.ts'

/** Opens a request to the guest; a new connection must be made within CONNECT_TIMEOUT_MS. */
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
    limitConnectTime(socket, (err) => upstream.destroy(err))
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
