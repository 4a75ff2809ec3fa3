import type { Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { EmulatorError, Errors } from '../errors.ts'
import { errorResponse } from './raw-reply.ts'

/**
 * A request head must arrive within `ms` of its first byte (of the connection's opening, for its first
 * request), else the answer is 408 and the connection closes: a slowloris client cannot hold a
 * connection open. Node checks this every `connectionsCheckingInterval`; a tenth of the deadline keeps
 * the answer within 10% of it. url(port)'s fast lane reads both from the server it fronts, so the two
 * paths keep one deadline. Bodies have no deadline (uploads and execs may take long).
 */
export function limitHeadTime(server: Server, ms: number): void {
  server.headersTimeout = ms
  // Read when the server starts listening (Node's typings leave it out).
  ;(server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.max(
    50,
    Math.min(30_000, Math.round(ms / 10)),
  )
}

/**
 * What the HTTP server answers to a request it cannot read (Fastify's `clientErrorHandler`): the
 * status Node's own server gives (400; 408 past the head deadline; 431 for a head too large; 413 for
 * chunk extensions too large), with the emulator's error body, then the connection closes. Nothing is
 * written when the connection is gone or an answer to an earlier request has begun on it.
 */
export function answerClientError(err: Error, socket: Duplex, headersTimeoutMs: number): void {
  const code = (err as { code?: string }).code
  if (code === 'ECONNRESET' || socket.destroyed) return
  const started = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent
  if (!socket.writable || started) return void socket.destroy()
  socket.end(errorResponse(clientError(err, headersTimeoutMs)))
  socket.once('finish', () => socket.destroy())
}

function clientError(err: Error, headersTimeout: number): EmulatorError {
  const { code, reason } = err as { code?: string; reason?: string }
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return Errors.headTimeout(headersTimeout)
    case 'HPE_HEADER_OVERFLOW':
      return Errors.headTooLarge(reason ?? err.message)
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new EmulatorError(
        'payload_too_large',
        413,
        `chunk extensions too large: ${reason ?? err.message}`,
      )
    default:
      return Errors.badRequest(reason ?? err.message)
  }
}
