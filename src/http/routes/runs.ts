import type { FastifyInstance } from 'fastify'
import type { NetworkProfiles } from '../../egress/profiles.ts'
import type { SandboxDomain } from '../../sandboxes/domain.ts'
import { CreateRunBody, PatchRunBody, RunParams } from '../schemas.ts'
import { parse } from '../validate.ts'
import { toDestroyWire, toRunWire } from '../wire.ts'

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
    return reply.status(201).send(toRunWire(sandbox))
  })

  app.get('/runs', async (request) => ({ runs: registry.list(request.owner).map(toRunWire) }))

  app.get('/runs/:id', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    return toRunWire(registry.touch(request.owner, id))
  })

  app.patch('/runs/:id', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { timeout } = parse(PatchRunBody, request.body, 'body')
    return toRunWire(lifecycle.setTimeout(request.owner, id, timeout))
  })

  app.delete('/runs/:id', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    return toDestroyWire(await lifecycle.destroy(request.owner, id))
  })
}
