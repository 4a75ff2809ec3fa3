import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { type EmulatorError, Errors } from '../errors.ts'
import { isProxyUrl } from '../proxy/proxy-url.ts'
import type { EmulatorNames } from './host-names.ts'
import { elsewhere, type OriginUrls, originOf, originOfConnection } from './origins.ts'

/**
 * What every request must pass before any route, fault or proxy sees it, on every path a request can
 * take: Fastify's routes (`register`), upgrades (`refusal`, from the `upgrade` event) and url(port)'s
 * fast lane (`admits`; what it refuses goes to the routes, which answer). Its `Host` must be one of the
 * emulator's names, and url(port) is not served on the dashboard's origin (see origins.ts; the routes'
 * scopes check the origin again after routing, whatever the URL's spelling).
 */
export class RequestGuard {
  private readonly names: EmulatorNames
  private readonly urls: OriginUrls

  constructor(names: EmulatorNames, urls: OriginUrls = {}) {
    this.names = names
    this.urls = urls
  }

  /** Why this request is refused, or undefined. */
  refusal(req: IncomingMessage): EmulatorError | undefined {
    const host = req.headers.host
    if (!this.names.allows(host)) return Errors.foreignHost(host ?? '')
    if (originOf(req) === 'admin' && isProxyUrl(req.url ?? ''))
      return elsewhere(req.method, req.url, 'api', this.urls)
    return undefined
  }

  /** Whether the fast lane may carry a url(port) request with this Host on this connection. */
  admits(socket: Socket, host: string | undefined): boolean {
    return this.names.allows(host) && originOfConnection(socket) !== 'admin'
  }

  /** Before the app's other hooks: a refused request reaches no route and no fault. */
  register(app: FastifyInstance): void {
    app.addHook('onRequest', async (request) => {
      const refused = this.refusal(request.raw)
      if (refused) throw refused
    })
  }
}
