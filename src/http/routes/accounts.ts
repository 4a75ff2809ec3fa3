import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { HistoryStore } from '../../accounts/history.ts'
import { usageOf } from '../../accounts/usage.ts'
import type { AuditLog } from '../../audit/audit-log.ts'
import type { PricingConfig } from '../../config.ts'
import { Errors } from '../../errors.ts'
import type { Clock } from '../../sandboxes/clock.ts'
import type { SandboxRegistry } from '../../sandboxes/registry.ts'
import { json } from '../openapi.ts'
import { RunParams } from '../schemas.ts'
import { HistoryWire, UsageWireSchema } from '../wire.ts'
import type { ZodTypeProvider } from '../zod-provider.ts'

export interface AccountDeps {
  registry: SandboxRegistry
  history: HistoryStore
  audit: AuditLog
  pricing: PricingConfig
  clock: Clock
}

/** Usage, history and each sandbox's audit log, per API key. */
export function accountRoutes(fastify: FastifyInstance, deps: AccountDeps): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  const { registry, history, audit } = deps

  app.get(
    '/usage',
    {
      schema: {
        openapi: {
          operationId: 'usage',
          tag: 'accounts',
          summary: 'Active sandboxes costed up to now, plus every destroyed one',
          responses: { 200: json('usage', UsageWireSchema) },
        },
      },
    },
    async (request) =>
      usageOf(deps.pricing, registry.list(request.owner), history.list(request.owner), deps.clock.now()),
  )

  app.get(
    '/runs/history',
    {
      schema: {
        openapi: {
          operationId: 'history',
          tag: 'accounts',
          summary: 'Every destroyed sandbox, newest first',
          responses: { 200: json('destroyed sandboxes', HistoryWire) },
        },
      },
    },
    async (request) => ({
      sandboxes: history.list(request.owner).map(({ owner: _owner, reason: _reason, ...wire }) => wire),
    }),
  )

  // One JSON object per line. Kept after destroy for as long as the sandbox's history entry is.
  app.get(
    '/runs/:id/audit',
    {
      schema: {
        params: RunParams,
        openapi: {
          operationId: 'auditLog',
          tag: 'accounts',
          summary: "A sandbox's HMAC-chained audit log, kept after destroy",
          responses: {
            200: {
              description: 'one AuditEntry JSON object per line',
              contentType: 'application/x-ndjson',
              schema: z.string(),
            },
          },
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      const known = registry.list(request.owner).some((s) => s.id === id) || history.get(request.owner, id)
      if (!known) throw Errors.runNotFound(id)
      return reply.header('content-type', 'application/x-ndjson').send(audit.read(id) ?? '')
    },
  )
}
