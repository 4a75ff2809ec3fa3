import type { FastifyInstance } from 'fastify'
import type { SandboxDomain } from '../../sandboxes/domain.ts'
import { ForkBody, RestoreBody, RunParams, SnapshotParams } from '../schemas.ts'
import { parse } from '../validate.ts'
import { toForkWire, toRunWire, toSnapshotWire } from '../wire.ts'

/** Snapshot, restore, fork, hibernate, resume. */
export function stateRoutes(
  app: FastifyInstance,
  { checkpoints, snapshots }: Pick<SandboxDomain, 'checkpoints' | 'snapshots'>,
): void {
  app.post('/runs/:id/snapshot', async (request, reply) => {
    const { id } = parse(RunParams, request.params, 'params')
    return reply.status(201).send(toSnapshotWire(await checkpoints.snapshot(request.owner, id)))
  })

  app.get('/snapshots', async (request) => ({
    snapshots: snapshots.list(request.owner).map(toSnapshotWire),
  }))

  app.delete('/snapshots/:id', async (request) => {
    const { id } = parse(SnapshotParams, request.params, 'params')
    await snapshots.delete(request.owner, id)
    return { status: 'deleted', snapshot_id: id }
  })

  app.post('/runs/restore', async (request, reply) => {
    const { snapshot_id } = parse(RestoreBody, request.body, 'body')
    return reply.status(201).send(toRunWire(await checkpoints.restore(request.owner, snapshot_id)))
  })

  app.post('/runs/:id/fork', async (request, reply) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { count } = parse(ForkBody, request.body, 'body')
    const forked = await checkpoints.fork(request.owner, id, count, request.injectedForkFailures)
    return reply.status(201).send(toForkWire(forked))
  })

  app.post('/runs/:id/hibernate', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    return toRunWire(await checkpoints.hibernate(request.owner, id))
  })

  app.post('/runs/:id/resume', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    return toRunWire(await checkpoints.resume(request.owner, id))
  })
}
