import type { FastifyInstance } from 'fastify'
import type { HistoryStore } from '../../accounts/history.ts'
import { usageOf } from '../../accounts/usage.ts'
import type { AuditLog } from '../../audit/audit-log.ts'
import type { PricingConfig } from '../../config.ts'
import { Errors } from '../../errors.ts'
import type { Clock } from '../../sandboxes/clock.ts'
import type { SandboxRegistry } from '../../sandboxes/registry.ts'
import { RunParams } from '../schemas.ts'
import { parse } from '../validate.ts'

export interface AccountDeps {
  registry: SandboxRegistry
  history: HistoryStore
  audit: AuditLog
  pricing: PricingConfig
  clock: Clock
}

/** Usage, history and each sandbox's audit log, per API key. */
export function accountRoutes(app: FastifyInstance, deps: AccountDeps): void {
  const { registry, history, audit } = deps

  app.get('/usage', async (request) =>
    usageOf(deps.pricing, registry.list(request.owner), history.list(request.owner), deps.clock.now()),
  )

  app.get('/runs/history', async (request) => ({
    sandboxes: history.list(request.owner).map(({ owner: _owner, reason: _reason, ...wire }) => wire),
  }))

  // One JSON object per line. Kept after destroy for as long as the sandbox's history entry is.
  app.get('/runs/:id/audit', async (request, reply) => {
    const { id } = parse(RunParams, request.params, 'params')
    const known = registry.list(request.owner).some((s) => s.id === id) || history.get(request.owner, id)
    if (!known) throw Errors.runNotFound(id)
    return reply.header('content-type', 'application/x-ndjson').send(audit.read(id) ?? '')
  })
}
