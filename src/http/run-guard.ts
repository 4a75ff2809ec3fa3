import type { FastifyInstance } from 'fastify'
import type { SandboxRegistry } from '../sandboxes/registry.ts'
import { RunParams } from './schemas.ts'

/** Methods whose body Fastify reads before the handler runs. */
const READS_BODY = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

/**
 * A request to one sandbox (`/runs/:id/...`) learns that the sandbox is not the caller's (404) before
 * its body is read: an exec of megabytes or an upload of a gigabyte to an unknown run costs nothing.
 * For a route scope behind the key check, which sets the owner. Reads (GET) are left to their routes:
 * some answer for destroyed sandboxes too (audit).
 */
export function findRunBeforeBody(app: FastifyInstance, registry: SandboxRegistry): void {
  app.addHook('onRequest', async (request) => {
    if (!READS_BODY.has(request.method)) return
    if (!/\/runs\/:id(\/|$)/.test(request.routeOptions.url ?? '')) return
    // A malformed id is the route's own 400 (its schema names the field).
    const params = RunParams.safeParse(request.params)
    if (params.success) registry.get(request.owner, params.data.id)
  })
}
