import type { FastifyInstance } from 'fastify'
import type { Capabilities } from '../../capabilities.ts'
import type { SandboxEngine } from '../../sandboxes/engine.ts'

/** The emulator's own namespace, outside the SDK's /v1: no auth, for readiness probes and tooling. */
export function emulatorRoutes(
  app: FastifyInstance,
  engine: SandboxEngine,
  capabilities: () => Capabilities,
  openApiDocument: () => Record<string, unknown>,
): void {
  app.get('/health', async () => {
    await engine.ping()
    return { status: 'ok' }
  })

  app.get('/capabilities', async () => capabilities())

  // The /v1 surface, generated from its routes (openapi.ts); `servers` is wherever this was asked from.
  app.get('/openapi.json', async (request) => ({
    ...openApiDocument(),
    servers: [{ url: `${request.protocol}://${request.host}` }],
  }))
}
