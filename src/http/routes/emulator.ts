import type { FastifyInstance } from 'fastify'
import type { Capabilities } from '../../capabilities.ts'
import type { SandboxEngine } from '../../sandboxes/engine.ts'

/** The emulator's own namespace, outside the SDK's /v1: no auth, for readiness probes and tooling. */
export function emulatorRoutes(
  app: FastifyInstance,
  engine: SandboxEngine,
  capabilities: () => Capabilities,
): void {
  app.get('/health', async () => {
    await engine.ping()
    return { status: 'ok' }
  })

  app.get('/capabilities', async () => capabilities())
}
