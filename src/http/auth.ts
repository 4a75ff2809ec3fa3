import type { FastifyInstance } from 'fastify'
import { Errors } from '../errors.ts'
import { bearerToken } from '../net/bearer.ts'
import { hashApiKey } from '../sandboxes/ids.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** sha256 of the caller's API key: the owner of the sandboxes this request may see. */
    owner: string
  }
}

/**
 * Bearer auth for a route scope. With keys configured only those are accepted; without, any non-empty
 * token is (each token still sees only its own sandboxes). Keys are hashed at once and never kept.
 */
export function requireApiKey(app: FastifyInstance, apiKeys: readonly string[]): void {
  const allowed = new Set(apiKeys.map(hashApiKey))
  app.addHook('onRequest', async (request) => {
    const token = bearerToken(request.headers.authorization)
    if (!token) throw Errors.unauthorized('missing API key: send Authorization: Bearer <key>')
    const owner = hashApiKey(token)
    if (allowed.size > 0 && !allowed.has(owner)) throw Errors.unauthorized('invalid API key')
    request.owner = owner
  })
}
