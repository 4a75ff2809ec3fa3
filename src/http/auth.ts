import type { FastifyInstance, FastifyRequest } from 'fastify'
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
 * The header the dashboard names a tenant with (the SHA-256 of its key, as GET /_emulator/tenants lists
 * them) in place of a key: only from the person running the emulator (`trusted`). A page of another
 * origin cannot send it without a CORS preflight, which the emulator never answers.
 */
export const TENANT_HEADER = 'x-isorun-emulator-tenant'

/** The key the banner suggests when any key is accepted; not a secret. */
export const SAMPLE_API_KEY = 'isorun_local_dev'

/**
 * Bearer auth for a route scope. With keys configured only those are accepted; without, any non-empty
 * token is (each token still sees only its own sandboxes). Keys are hashed at once and never kept.
 * A request `trusted` says is the person running the emulator's may name a tenant instead (TENANT_HEADER).
 */
export function requireApiKey(
  app: FastifyInstance,
  apiKeys: readonly string[],
  trusted: (request: FastifyRequest) => boolean = () => false,
): void {
  const allowed = new Set(apiKeys.map(hashApiKey))
  app.addHook('onRequest', async (request) => {
    const tenant = request.headers[TENANT_HEADER]
    if (tenant !== undefined) {
      if (!trusted(request))
        throw Errors.unauthorized(
          `${TENANT_HEADER} is for the dashboard's own origin, from this machine's loopback, without an admin token; send Authorization: Bearer <key>`,
        )
      if (typeof tenant !== 'string' || !/^[0-9a-f]{64}$/.test(tenant))
        throw Errors.validation(
          `headers.${TENANT_HEADER}`,
          'must be a tenant as GET /_emulator/tenants lists it (64 hex digits)',
        )
      request.owner = tenant
      return
    }
    const token = bearerToken(request.headers.authorization)
    if (!token) throw Errors.unauthorized('missing API key: send Authorization: Bearer <key>')
    const owner = hashApiKey(token)
    if (allowed.size > 0 && !allowed.has(owner)) throw Errors.unauthorized('invalid API key')
    request.owner = owner
  })
}
