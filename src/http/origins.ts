import type { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { EmulatorError } from '../errors.ts'

/**
 * The emulator answers on two origins, one port each on the same host: the API's, where the SDK calls
 * /v1 and url(port) serves guests' pages, and the dashboard's (ISORUN_EMULATOR_ADMIN_PORT), where the
 * dashboard and the control plane live. A browser keeps origins apart (storage, reading answers, the
 * `Origin` header), so a page a guest serves through url(port) can neither read what the dashboard keeps
 * nor call the control plane as its own origin; the dashboard's origin serves no url(port) page.
 *
 * Which origin a request came to is decided by the listener that accepted its connection, never by
 * anything the request says (its Host header is the client's to write).
 */
export type EmulatorOrigin = 'api' | 'admin'

const adminConnections = new WeakSet<Socket>()

/** Marks a connection the dashboard's listener accepted (server.ts), before the HTTP server sees it. */
export function acceptedOnAdminOrigin(socket: Socket): void {
  adminConnections.add(socket)
}

/**
 * The origin a request came to; undefined for one injected in-process (`app.inject`), which no
 * listener accepted: the process itself, served like either.
 */
export function originOf(req: IncomingMessage): EmulatorOrigin | undefined {
  return originOfConnection(req.socket)
}

/** The origin of a connection (undefined: not a network connection). */
export function originOfConnection(socket: unknown): EmulatorOrigin | undefined {
  if (!(socket instanceof Socket)) return undefined
  return adminConnections.has(socket) ? 'admin' : 'api'
}

/** Where each origin is, once the server listens (for the messages that send clients there). */
export interface OriginUrls {
  api?: string
  admin?: string
}

/** A route scope that only one origin serves; the other answers 404 and says where to go. */
export function servedOnlyOn(app: FastifyInstance, origin: EmulatorOrigin, urls: OriginUrls): void {
  app.addHook('onRequest', async (request) => {
    const came = originOf(request.raw)
    if (came !== undefined && came !== origin) throw elsewhere(request.method, request.url, origin, urls)
  })
}

/** The 404 of a request for what the other origin serves. */
export function elsewhere(
  method: string | undefined,
  url: string | undefined,
  origin: EmulatorOrigin,
  urls: OriginUrls,
): EmulatorError {
  const path = (url ?? '').split('?')[0]
  const where = urls[origin]
  const what =
    origin === 'admin'
      ? "the dashboard's own origin (ISORUN_EMULATOR_ADMIN_PORT), which no url(port) page shares"
      : "the API's origin (ISORUN_EMULATOR_PORT); the dashboard's origin serves no url(port) page"
  return new EmulatorError(
    'route_not_found',
    404,
    `${method ?? 'GET'} ${path} is served on ${what}${where ? `: ${where}` : ''}`,
    { origin, ...(where ? { url: where } : {}) },
  )
}
