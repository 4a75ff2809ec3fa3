import type { FastifyInstance } from 'fastify'
import type { Capabilities } from '../../capabilities.ts'
import type { SandboxEngine } from '../../sandboxes/engine.ts'
import { error, json, type OperationDoc, type ServerUrls } from '../openapi.ts'
import type { OriginUrls } from '../origins.ts'
import { CapabilitiesWire, HealthWire } from '../wire.ts'

const emulator = (doc: Omit<OperationDoc, 'tag' | 'security'>): OperationDoc => ({
  ...doc,
  tag: 'emulator',
  security: 'none',
})

/** The emulator's own namespace, outside the SDK's /v1: no auth, for readiness probes and tooling. */
export function emulatorRoutes(
  app: FastifyInstance,
  engine: SandboxEngine,
  capabilities: () => Capabilities,
  openApiDocument: (servers: ServerUrls) => Record<string, unknown>,
  origins: OriginUrls,
): void {
  const healthDoc = emulator({
    operationId: 'health',
    summary: 'Readiness: the engine answers',
    responses: {
      200: json('ready', HealthWire),
      503: error('engine_unavailable: the engine does not answer, and why'),
    },
  })
  app.get('/health', { schema: { openapi: healthDoc } }, async () => {
    await engine.ping()
    return { status: 'ok' }
  })

  const capabilitiesDoc = emulator({
    operationId: 'capabilities',
    summary: 'What this engine can really do, and what degrades',
    responses: { 200: json('by section', CapabilitiesWire) },
  })
  app.get('/capabilities', { schema: { openapi: capabilitiesDoc } }, async () => capabilities())

  // Generated from the routes (openapi.ts); its servers are the two origins, by the host this was asked at.
  const openApiDoc = emulator({
    operationId: 'openapi',
    summary: 'This document',
    responses: { 200: { description: 'the OpenAPI 3.1 document', contentType: 'application/json' } },
  })
  app.get('/openapi.json', { schema: { openapi: openApiDoc } }, async (request) => {
    const asked = `${request.protocol}://${request.host}`
    return openApiDocument({ api: onPortOf(asked, origins.api), admin: onPortOf(asked, origins.admin) })
  })
}

/**
 * The origin asked at, on the port of `origin` (the host the client reached us by, the port the origin
 * listens on); as asked when the server does not listen (app.inject serves both origins in one).
 */
function onPortOf(asked: string, origin: string | undefined): string {
  if (!origin) return asked
  try {
    const url = new URL(asked)
    url.port = new URL(origin).port
    return url.origin
  } catch {
    return origin
  }
}
