import type { FastifyInstance } from 'fastify'
import { Errors } from '../../errors.ts'

/**
 * The rest of isorun@1.0.1's surface, answered honestly until it is built: a 501 whose body names the
 * feature, never a fake success.
 */
export const PENDING: [method: 'GET' | 'POST' | 'DELETE', url: string, feature: string][] = []

export function notImplementedRoutes(app: FastifyInstance): void {
  for (const [method, url, feature] of PENDING) {
    app.route({
      method,
      url,
      handler: async () => {
        throw Errors.notImplemented(feature)
      },
    })
  }
}
