import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { type EmulatorError, Errors } from '../errors.ts'
import type { EmulatorNames } from './host-names.ts'

/**
 * What every request must pass before any route, fault or proxy sees it, on every path a request can
 * take: Fastify's routes (`register`), upgrades (`refusal`, from the `upgrade` event) and url(port)'s
 * fast lane (`hostAllowed`; what it refuses goes to the routes, which answer).
 */
export class RequestGuard {
  private readonly names: EmulatorNames

  constructor(names: EmulatorNames) {
    this.names = names
  }

  /** Why this request is refused, or undefined. */
  refusal(req: IncomingMessage): EmulatorError | undefined {
    const host = req.headers.host
    if (!this.names.allows(host)) return Errors.foreignHost(host ?? '')
    return undefined
  }

  hostAllowed(host: string | undefined): boolean {
    return this.names.allows(host)
  }

  /** Before the app's other hooks: a refused request reaches no route and no fault. */
  register(app: FastifyInstance): void {
    app.addHook('onRequest', async (request) => {
      const refused = this.refusal(request.raw)
      if (refused) throw refused
    })
  }
}
