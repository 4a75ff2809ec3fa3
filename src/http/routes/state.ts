import type { FastifyInstance } from 'fastify'
import type { SandboxDomain } from '../../sandboxes/domain.ts'
import { toRunRecord } from '../../sandboxes/sandbox.ts'
import type { SnapshotRecord } from '../../sandboxes/snapshot-store.ts'
import { ForkBody, RestoreBody, RunParams, SnapshotParams } from '../schemas.ts'
import { parse } from '../validate.ts'

/** The snapshot as the SDK reads it; `memory` says whether processes were captured too. */
function toSnapshotWire(r: SnapshotRecord) {
  return {
    snapshot_id: r.id,
    id: r.id,
    run_id: r.runId,
    size_bytes: r.sizeBytes,
    created_at: new Date(r.createdAt).toISOString(),
    memory: r.memory,
  }
}

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
    return reply.status(201).send(toRunRecord(await checkpoints.restore(request.owner, snapshot_id)))
  })

  app.post('/runs/:id/fork', async (request, reply) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { count } = parse(ForkBody, request.body, 'body')
    const { forks, failed } = await checkpoints.fork(request.owner, id, count, request.injectedForkFailures)
    // Children that failed are reported beside the ones that started, never swallowed.
    return reply.status(201).send({ forks: forks.map(toRunRecord), failed })
  })

  app.post('/runs/:id/hibernate', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    return toRunRecord(await checkpoints.hibernate(request.owner, id))
  })

  app.post('/runs/:id/resume', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    return toRunRecord(await checkpoints.resume(request.owner, id))
  })
}
