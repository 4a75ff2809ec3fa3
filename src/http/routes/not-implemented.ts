import type { FastifyInstance } from 'fastify'
import { Errors } from '../../errors.ts'

/**
 * The rest of isorun@1.0.1's surface, answered honestly until it is built: a 501 whose body names the
 * feature, never a fake success.
 */
const PENDING: [method: 'GET' | 'POST' | 'DELETE', url: string, feature: string][] = [
  ['POST', '/runs/:id/snapshot', 'snapshot'],
  ['POST', '/runs/restore', 'restore'],
  ['GET', '/snapshots', 'snapshots'],
  ['DELETE', '/snapshots/:id', 'snapshots'],
  ['POST', '/runs/:id/fork', 'fork'],
  ['POST', '/runs/:id/hibernate', 'hibernate'],
  ['POST', '/runs/:id/resume', 'resume'],
  ['GET', '/runs/:id/audit', 'audit log'],
  ['GET', '/usage', 'usage'],
  ['GET', '/runs/history', 'history'],
  ['GET', '/network-profiles', 'network profiles'],
]

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
