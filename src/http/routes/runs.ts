import type { FastifyInstance } from 'fastify'
import type { NetworkProfiles } from '../../egress/profiles.ts'
import type { SandboxDomain } from '../../sandboxes/domain.ts'
import { toRunRecord } from '../../sandboxes/sandbox.ts'
import { CreateRunBody, PatchRunBody, RunParams } from '../schemas.ts'
import { parse } from '../validate.ts'

/** Sandbox lifecycle: create, list, get, keep-alive, destroy. */
export function runRoutes(
  app: FastifyInstance,
  { registry, lifecycle }: Pick<SandboxDomain, 'registry' | 'lifecycle'>,
  profiles: NetworkProfiles,
): void {
  app.post('/runs', async (request, reply) => {
    const body = parse(CreateRunBody, request.body, 'body')
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
    return reply.status(201).send(toRunRecord(sandbox))
  })

  app.get('/runs', async (request) => ({ runs: registry.list(request.owner).map(toRunRecord) }))

  app.get('/runs/:id', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    return toRunRecord(registry.touch(request.owner, id))
  })

  app.patch('/runs/:id', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { timeout } = parse(PatchRunBody, request.body, 'body')
    return toRunRecord(lifecycle.setTimeout(request.owner, id, timeout))
  })

  app.delete('/runs/:id', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    return lifecycle.destroy(request.owner, id)
  })
}
