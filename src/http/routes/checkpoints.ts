import type { FastifyInstance } from 'fastify'
import type { SandboxDomain } from '../../sandboxes/domain.ts'
import { error, json } from '../openapi.ts'
import { ForkBody, RestoreBody, RunParams, SnapshotParams } from '../schemas.ts'
import {
  ForkResultWire,
  RunRecordWire,
  SnapshotDeletedWire,
  SnapshotListWire,
  SnapshotWire,
  toForkWire,
  toRunWire,
  toSnapshotWire,
} from '../wire.ts'
import type { ZodTypeProvider } from '../zod-provider.ts'

/** Snapshot, restore, fork, hibernate, resume. */
export function checkpointRoutes(
  fastify: FastifyInstance,
  { checkpoints, snapshots }: Pick<SandboxDomain, 'checkpoints' | 'snapshots'>,
): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  const memoryRefused = error('hibernated, or (strict mode) memory cannot be kept')

  app.post(
    '/runs/:id/snapshot',
    {
      schema: {
        params: RunParams,
        openapi: {
          operationId: 'snapshot',
          tag: 'state',
          summary:
            "Snapshot files (docker commit) and, with CRIU, processes' memory; the sandbox keeps running",
          responses: { 201: json('the snapshot', SnapshotWire), 409: memoryRefused },
        },
      },
    },
    async (request, reply) =>
      reply.status(201).send(toSnapshotWire(await checkpoints.snapshot(request.owner, request.params.id))),
  )

  app.get(
    '/snapshots',
    {
      schema: {
        openapi: {
          operationId: 'listSnapshots',
          tag: 'state',
          summary: "The calling key's snapshots",
          responses: { 200: json('snapshots', SnapshotListWire) },
        },
      },
    },
    async (request) => ({ snapshots: snapshots.list(request.owner).map(toSnapshotWire) }),
  )

  app.delete(
    '/snapshots/:id',
    {
      schema: {
        params: SnapshotParams,
        openapi: {
          operationId: 'deleteSnapshot',
          tag: 'state',
          summary: 'Delete a snapshot',
          responses: { 200: json('deleted', SnapshotDeletedWire), 404: error('no such snapshot') },
        },
      },
    },
    async (request) => {
      const { id } = request.params
      await snapshots.delete(request.owner, id)
      return { status: 'deleted', snapshot_id: id }
    },
  )

  app.post(
    '/runs/restore',
    {
      schema: {
        body: RestoreBody,
        openapi: {
          operationId: 'restore',
          tag: 'state',
          summary: 'A new sandbox from a snapshot; with CRIU its processes carry on',
          responses: { 201: json('the new sandbox', RunRecordWire), 404: error('no such snapshot') },
        },
      },
    },
    async (request, reply) =>
      reply.status(201).send(toRunWire(await checkpoints.restore(request.owner, request.body.snapshot_id))),
  )

  app.post(
    '/runs/:id/fork',
    {
      schema: {
        params: RunParams,
        body: ForkBody,
        openapi: {
          operationId: 'fork',
          tag: 'state',
          summary: 'One checkpoint, `count` children started in parallel; failed children are listed',
          responses: {
            201: json('the children that started, and those that did not', ForkResultWire),
            409: memoryRefused,
          },
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      const forked = await checkpoints.fork(
        request.owner,
        id,
        request.body.count,
        request.injectedForkFailures,
      )
      return reply.status(201).send(toForkWire(forked))
    },
  )

  app.post(
    '/runs/:id/hibernate',
    {
      schema: {
        params: RunParams,
        openapi: {
          operationId: 'hibernate',
          tag: 'state',
          summary: 'Checkpoint to disk and stop (memory released); not billed while hibernated',
          responses: { 200: json('the sandbox', RunRecordWire), 409: error('already hibernated') },
        },
      },
    },
    async (request) => toRunWire(await checkpoints.hibernate(request.owner, request.params.id)),
  )

  app.post(
    '/runs/:id/resume',
    {
      schema: {
        params: RunParams,
        openapi: {
          operationId: 'resume',
          tag: 'state',
          summary: 'Start a hibernated sandbox from its checkpoint: same id, same processes',
          responses: { 200: json('the sandbox', RunRecordWire), 409: error('not hibernated') },
        },
      },
    },
    async (request) => toRunWire(await checkpoints.resume(request.owner, request.params.id)),
  )
}
