import type { FastifyInstance } from 'fastify'
import { Errors } from '../../errors.ts'
import { error } from '../openapi.ts'

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
      schema: {
        openapi: {
          operationId: `pending_${method.toLowerCase()}${url.replace(/[^A-Za-z0-9]+/g, '_')}`,
          tag: 'not implemented',
          summary: `${feature}: not implemented yet`,
          responses: { 501: error(`not_implemented: ${feature}`) },
        },
      },
      handler: async () => {
        throw Errors.notImplemented(feature)
      },
    })
  }
}
