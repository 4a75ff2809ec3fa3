import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { type FaultInjector, FaultSpec } from '../../control/faults.ts'
import type { RequestJournal } from '../../control/journal.ts'
import { resetToSeed } from '../../control/reset.ts'
import type { Seeder } from '../../control/seed.ts'
import { listTenants, type TenantSources } from '../../control/tenants.ts'
import { EmulatorError, Errors } from '../../errors.ts'
import { type Clock, VirtualClock } from '../../sandboxes/clock.ts'
import type { SandboxDomain } from '../../sandboxes/domain.ts'
import { hashApiKey } from '../../sandboxes/ids.ts'
import { guardControlPlane } from '../control-guard.ts'
import { toResetWire, toTenantWire } from '../wire.ts'
import type { ZodTypeProvider } from '../zod-provider.ts'

export interface ControlDeps {
  sandboxes: SandboxDomain
  seeder: Seeder
  faults: FaultInjector
  journal: RequestJournal
  clock: Clock
  history: TenantSources['history']
  adminToken: string | undefined
}

const AdvanceBody = z.object({
  seconds: z
    .number()
    .min(0)
    .max(10 * 365 * 24 * 3600),
})
const ResetBody = z.object({ api_key: z.string().min(1).optional() })
const RequestsQuery = z.object({
  path: z.string().optional(),
  method: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
})
const IdParams = z.object({ id: z.string().min(1) })

/**
 * The test-double control plane, in the emulator's own namespace: faults, the clock, reset and the
 * request journal. Loopback peers only; with --admin-token every call needs that bearer token instead
 * (control-guard.ts, which also keeps web pages from changing anything).
 */
export function controlRoutes(fastify: FastifyInstance, deps: ControlDeps): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  const { faults, journal } = deps
  guardControlPlane(app, deps.adminToken)

  app.post('/faults', { schema: { body: FaultSpec } }, async (request, reply) =>
    reply.status(201).send({ id: faults.add(request.body).id }),
  )
  app.get('/faults', async () => ({ faults: faults.list() }))
  app.delete('/faults/:id', { schema: { params: IdParams } }, async (request) => {
    const { id } = request.params
    if (!faults.remove(id)) throw new EmulatorError('not_found', 404, `fault ${id} not found`, { id })
    return { deleted: id }
  })
  app.delete('/faults', async () => ({ deleted: faults.clear() }))

  app.get('/clock', async () => ({
    mode: deps.clock instanceof VirtualClock ? 'virtual' : 'real',
    now: new Date(deps.clock.now()).toISOString(),
  }))
  app.post('/clock/advance', { schema: { body: AdvanceBody } }, async (request) => {
    if (!(deps.clock instanceof VirtualClock)) {
      throw Errors.conflict('the clock is real; start the emulator with --clock virtual to move it')
    }
    return { now: new Date(deps.clock.advance(request.body.seconds * 1000)).toISOString() }
  })

  app.post('/reset', { schema: { body: ResetBody } }, async (request) => {
    const { api_key } = request.body
    return toResetWire(
      await resetToSeed(deps.sandboxes, deps.seeder, api_key ? hashApiKey(api_key) : undefined),
    )
  })

  // The dashboard's view of every tenant, for the person running the emulator (no key needed).
  app.get('/tenants', async () => ({
    now: new Date(deps.clock.now()).toISOString(),
    tenants: listTenants({
      registry: deps.sandboxes.registry,
      snapshots: () => deps.sandboxes.snapshots.all(),
      history: deps.history,
    }).map(toTenantWire),
  }))

  app.get('/requests', { schema: { querystring: RequestsQuery } }, async (request) => ({
    requests: journal.query(request.query),
  }))
}
