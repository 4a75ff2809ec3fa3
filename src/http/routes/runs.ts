import type { FastifyInstance } from 'fastify'
import type { NetworkProfiles } from '../../egress/profiles.ts'
import { Errors } from '../../errors.ts'
import type { SandboxDomain } from '../../sandboxes/domain.ts'
import { json } from '../openapi.ts'
import { CreateRunBody, PatchRunBody, RunParams } from '../schemas.ts'
import { DestroyResultWire, RunListWire, RunRecordWire, toDestroyWire, toRunWire } from '../wire.ts'
import type { ZodTypeProvider } from '../zod-provider.ts'

/** Sandbox lifecycle: create, list, get, keep-alive, destroy. */
export function runRoutes(
  fastify: FastifyInstance,
  { registry, lifecycle, quotas }: Pick<SandboxDomain, 'registry' | 'lifecycle' | 'quotas'>,
  profiles: NetworkProfiles,
): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>()

  app.post(
    '/runs',
    {
      schema: {
        body: CreateRunBody,
        openapi: {
          operationId: 'create',
          tag: 'runs',
          summary: 'Create a sandbox (a container with an init as PID 1, CPU and memory limits)',
          responses: { 201: json('the new sandbox', RunRecordWire) },
        },
      },
    },
    async (request, reply) => {
      const { body } = request
      const tooBig = quotas.sizeProblem({ vcpus: body.vcpus, memMib: body.mem_mib })
      if (tooBig)
        throw Errors.validation(tooBig.part === 'vcpus' ? 'body.vcpus' : 'body.mem_mib', tooBig.message)
      // Enforced, not just recorded: an unknown profile or a bad rule is a 400 naming it.
      const egress = profiles.policyFor(body)
      const sandbox = await lifecycle.create(request.owner, {
        image: body.image,
        vcpus: body.vcpus,
        memMib: body.mem_mib,
        diskMib: body.disk_mib,
        timeoutSec: body.timeout,
        credentials: body.credentials ?? {},
        egress,
      })
      return reply.status(201).send(toRunWire(sandbox))
    },
  )

  app.get(
    '/runs',
    {
      schema: {
        openapi: {
          operationId: 'list',
          tag: 'runs',
          summary: "The calling key's sandboxes",
          responses: { 200: json('active sandboxes', RunListWire) },
        },
      },
    },
    async (request) => ({ runs: registry.list(request.owner).map(toRunWire) }),
  )

  app.get(
    '/runs/:id',
    {
      schema: {
        params: RunParams,
        openapi: {
          operationId: 'get',
          tag: 'runs',
          summary: 'One sandbox (a read: not activity for the idle timer)',
          responses: { 200: json('the sandbox', RunRecordWire) },
        },
      },
    },
    // Reads (get, info, list, audit, history) leave the idle timer alone: a test or a dashboard that
    // watches a sandbox must not keep it alive (docs/api.md, "What counts as activity").
    async (request) => toRunWire(registry.get(request.owner, request.params.id)),
  )

  app.patch(
    '/runs/:id',
    {
      schema: {
        params: RunParams,
        body: PatchRunBody,
        openapi: {
          operationId: 'setTimeout',
          tag: 'runs',
          summary: 'Set the idle timeout (0 disables auto-destroy)',
          responses: { 200: json('the sandbox', RunRecordWire) },
        },
      },
    },
    async (request) =>
      toRunWire(lifecycle.setTimeout(request.owner, request.params.id, request.body.timeout)),
  )

  app.delete(
    '/runs/:id',
    {
      schema: {
        params: RunParams,
        openapi: {
          operationId: 'destroy',
          tag: 'runs',
          summary: 'Destroy a sandbox; returns what it used and cost',
          responses: { 200: json('usage of the destroyed sandbox', DestroyResultWire) },
        },
      },
    },
    async (request) => toDestroyWire(await lifecycle.destroy(request.owner, request.params.id)),
  )
}
