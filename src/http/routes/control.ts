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
import { error, json, type OperationDoc } from '../openapi.ts'
import {
  ClockAdvancedWire,
  ClockWire,
  FaultAddedWire,
  FaultDeletedWire,
  FaultListWire,
  FaultsClearedWire,
  JournalWire,
  ResetWire,
  TenantsWire,
  toResetWire,
  toTenantWire,
} from '../wire.ts'
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

/** A control-plane operation as the document says it (tag, who may call, the origin serving it). */
const control = (doc: Omit<OperationDoc, 'tag' | 'security' | 'origin'>): OperationDoc => ({
  ...doc,
  tag: 'control',
  security: 'admin',
  origin: 'admin',
})

/**
 * The test-double control plane, in the emulator's own namespace: faults, the clock, reset and the
 * request journal. Loopback peers only; with --admin-token every call needs that bearer token instead
 * (control-guard.ts, which also keeps web pages from changing anything).
 */
export function controlRoutes(fastify: FastifyInstance, deps: ControlDeps): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  const { faults, journal } = deps
  guardControlPlane(app, deps.adminToken)

  app.post(
    '/faults',
    {
      schema: {
        body: FaultSpec,
        openapi: control({
          operationId: 'addFault',
          summary: 'Inject a fault into matching /v1 requests (docs/test-doubles.md)',
          responses: { 201: json('the fault’s id', FaultAddedWire) },
        }),
      },
    },
    async (request, reply) => reply.status(201).send({ id: faults.add(request.body).id }),
  )
  app.get(
    '/faults',
    {
      schema: {
        openapi: control({
          operationId: 'listFaults',
          summary: 'The faults set, with how often each fired',
          responses: { 200: json('the faults', FaultListWire) },
        }),
      },
    },
    async () => ({ faults: faults.list() }),
  )
  app.delete(
    '/faults/:id',
    {
      schema: {
        params: IdParams,
        openapi: control({
          operationId: 'deleteFault',
          summary: 'Remove one fault',
          responses: { 200: json('removed', FaultDeletedWire), 404: error('no such fault') },
        }),
      },
    },
    async (request) => {
      const { id } = request.params
      if (!faults.remove(id)) throw new EmulatorError('not_found', 404, `fault ${id} not found`, { id })
      return { deleted: id }
    },
  )
  app.delete(
    '/faults',
    {
      schema: {
        openapi: control({
          operationId: 'clearFaults',
          summary: 'Remove every fault',
          responses: { 200: json('how many there were', FaultsClearedWire) },
        }),
      },
    },
    async () => ({ deleted: faults.clear() }),
  )

  app.get(
    '/clock',
    {
      schema: {
        openapi: control({
          operationId: 'clock',
          summary: 'The clock idle timeouts and costs go by: virtual (--clock virtual) or real',
          responses: { 200: json('its mode and time', ClockWire) },
        }),
      },
    },
    async () => ({
      mode: deps.clock instanceof VirtualClock ? ('virtual' as const) : ('real' as const),
      now: new Date(deps.clock.now()).toISOString(),
    }),
  )
  const advanceDoc = control({
    operationId: 'advanceClock',
    summary: 'Move the virtual clock forward, firing the idle timeouts that fall due',
    responses: {
      200: json('the new time', ClockAdvancedWire),
      409: error('the clock is real'),
    },
  })
  app.post('/clock/advance', { schema: { body: AdvanceBody, openapi: advanceDoc } }, async (request) => {
    if (!(deps.clock instanceof VirtualClock)) {
      throw Errors.conflict('the clock is real; start the emulator with --clock virtual to move it')
    }
    return { now: new Date(deps.clock.advance(request.body.seconds * 1000)).toISOString() }
  })

  const resetDoc = control({
    operationId: 'reset',
    summary: 'Destroy every sandbox (or one key’s) and its snapshots, then apply the seed again',
    responses: { 200: json('what went', ResetWire) },
  })
  app.post('/reset', { schema: { body: ResetBody, openapi: resetDoc } }, async (request) => {
    const { api_key } = request.body
    return toResetWire(
      await resetToSeed(deps.sandboxes, deps.seeder, api_key ? hashApiKey(api_key) : undefined),
    )
  })

  // The dashboard's view of every tenant, for the person running the emulator (no key needed).
  const tenantsDoc = control({
    operationId: 'tenants',
    summary: 'Every tenant (API key by its hash) and its sandboxes, for the dashboard',
    responses: { 200: json('the tenants, most recently active first', TenantsWire) },
  })
  app.get('/tenants', { schema: { openapi: tenantsDoc } }, async () => ({
    now: new Date(deps.clock.now()).toISOString(),
    tenants: listTenants({
      registry: deps.sandboxes.registry,
      snapshots: () => deps.sandboxes.snapshots.all(),
      history: deps.history,
    }).map(toTenantWire),
  }))

  const requestsDoc = control({
    operationId: 'requests',
    summary: 'The recent /v1 requests, newest first (the request journal)',
    responses: { 200: json('the requests', JournalWire) },
  })
  app.get('/requests', { schema: { querystring: RequestsQuery, openapi: requestsDoc } }, async (request) => ({
    requests: journal.query(request.query),
  }))
}
