import type { FastifyInstance } from 'fastify'
import type { GuestOperations } from '../../sandboxes/guest-operations.ts'
import { error, json } from '../openapi.ts'
import { ExecBody, RunParams } from '../schemas.ts'
import { ExecResultWire, ExecTransportWire, toExecWireJson } from '../wire.ts'
import type { ZodTypeProvider } from '../zod-provider.ts'

export function execRoutes(fastify: FastifyInstance, guest: GuestOperations): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  app.post(
    '/runs/:id/exec',
    {
      schema: {
        params: RunParams,
        body: ExecBody,
        openapi: {
          operationId: 'exec',
          tag: 'exec',
          summary: 'Run a command with /bin/sh -c; a timeout kills the whole process tree (exit code 124)',
          responses: {
            200: json('the command finished (any exit code)', ExecResultWire),
            409: error('the sandbox is hibernated'),
          },
        },
      },
    },
    async (request, reply) => {
      const { command, timeout } = request.body
      const result = await guest.exec(request.owner, request.params.id, command, timeout)
      return reply.type('application/json; charset=utf-8').send(toExecWireJson(result))
    },
  )
}

/** How exec and files reach one of the caller's sandboxes (its agent or the engine's exec), and why. */
export function execTransportRoutes(fastify: FastifyInstance, guest: GuestOperations): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  app.get(
    '/runs/:id/exec-transport',
    {
      schema: {
        params: RunParams,
        openapi: {
          operationId: 'execTransport',
          tag: 'emulator',
          summary: 'How the sandbox’s exec and files travel now (its agent or the engine’s exec), and why',
          responses: { 200: json('the transport and why', ExecTransportWire) },
        },
      },
    },
    async (request) => guest.execTransport(request.owner, request.params.id),
  )
}
