import type { FastifyInstance } from 'fastify'
import type { SandboxService } from '../../sandboxes/service.ts'
import { ExecBody, RunParams } from '../schemas.ts'
import { parse } from '../validate.ts'

export function execRoutes(app: FastifyInstance, service: SandboxService): void {
  app.post('/runs/:id/exec', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { command, timeout } = parse(ExecBody, request.body, 'body')
    return service.exec(request.owner, id, command, timeout)
  })
}
