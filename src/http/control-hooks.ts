import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { FaultInjector } from '../control/faults.ts'
import type { RequestJournal } from '../control/journal.ts'
import { hashApiKey } from '../sandboxes/ids.ts'
import { bearerToken } from './auth.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by a fork_partial fault: how many of the fork's children to fail. */
    injectedForkFailures?: number
  }
}

const EXEC_ROUTE = /^\/v1\/runs\/[^/]+\/exec$/

/**
 * Fault injection and the request journal, on every /v1 request. Faults act before anything else (auth
 * included), so an injected 429 reaches SDK code as an IsorunError with status 429.
 */
export function registerControlHooks(
  app: FastifyInstance,
  faults: FaultInjector,
  journal: RequestJournal,
): void {
  app.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/v1/')) return
    const path = request.url.split('?')[0] ?? request.url
    const fault = faults.match(request.method, path, bearerToken(request))
    if (!fault) return
    if (fault.delay_ms) await new Promise((r) => setTimeout(r, fault.delay_ms))
    switch (fault.action) {
      case 'drop_connection':
        request.raw.socket.destroy()
        return reply.hijack()
      case 'exec_timeout':
        if (EXEC_ROUTE.test(path)) {
          return reply.send({
            exit_code: 124,
            stdout: '',
            stderr: `[isorun-emulator: injected fault ${fault.id}: command timed out]\n`,
          })
        }
        return
      case 'fork_partial':
        request.injectedForkFailures = fault.fail_children ?? 1
        return
      default:
        // An error without a status only delays the real answer.
        if (fault.status === undefined) return
        return reply.status(fault.status).send(
          fault.body ?? {
            error: {
              code: 'injected_fault',
              message: `injected by fault ${fault.id}`,
              details: { fault: fault.id },
            },
          },
        )
    }
  })

  app.addHook('onResponse', async (request, reply) => {
    if (!request.url.startsWith('/v1/')) return
    journal.record({
      at: new Date().toISOString(),
      method: request.method,
      path: request.url.split('?')[0] ?? request.url,
      key_hash: keyHashOf(request),
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 100) / 100,
      body: request.body,
    })
  })
}

function keyHashOf(request: FastifyRequest): string | null {
  const token = bearerToken(request)
  return token ? hashApiKey(token) : null
}
