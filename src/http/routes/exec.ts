import type { FastifyInstance } from 'fastify'
import type { GuestOperations } from '../../sandboxes/guest-operations.ts'
import { ExecBody, RunParams } from '../schemas.ts'
import { parse } from '../validate.ts'
import { toExecWire } from '../wire.ts'

export function execRoutes(app: FastifyInstance, guest: GuestOperations): void {
  app.post('/runs/:id/exec', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { command, timeout } = parse(ExecBody, request.body, 'body')
    return toExecWire(await guest.exec(request.owner, id, command, timeout))
  })
}
