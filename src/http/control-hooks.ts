import type { FastifyInstance } from 'fastify'
import type { FaultInjector } from '../control/faults.ts'
import type { JournalEntry, RequestJournal, SecretsOf } from '../control/journal.ts'
import { bearerToken } from '../net/bearer.ts'
import { hashApiKey } from '../sandboxes/ids.ts'
import type { SandboxRegistry } from '../sandboxes/registry.ts'
import { errorBodyOf } from './error-handler.ts'

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
    const fault = faults.match(request.method, path, bearerToken(request.headers.authorization))
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
        return reply
          .status(fault.status)
          .send(
            fault.body ?? errorBodyOf('injected_fault', `injected by fault ${fault.id}`, { fault: fault.id }),
          )
    }
  })

  app.addHook('onResponse', async (request, reply) => {
    if (!request.url.startsWith('/v1/')) return
    journal.record(
      journalEntry({
        method: request.method,
        url: request.url,
        authorization: request.headers.authorization,
        status: reply.statusCode,
        ms: reply.elapsedTime,
        body: request.body,
        bodyBytes: Number(request.headers['content-length']) || undefined,
      }),
    )
  })
}

/**
 * The journal's record of one /v1 request: the path without its query, the caller's key as its hash.
 * For the routes (above) and for url(port)'s fast lane, which answers without them.
 */
export function journalEntry(request: {
  method: string
  url: string
  authorization: string | undefined
  status: number
  ms: number
  body?: unknown
  /** The body's size as received (its Content-Length), for a body the journal keeps only the head of. */
  bodyBytes?: number
}): JournalEntry {
  const token = bearerToken(request.authorization)
  return {
    at: new Date().toISOString(),
    method: request.method,
    path: request.url.split('?')[0] ?? request.url,
    key_hash: token ? hashApiKey(token) : null,
    status: request.status,
    duration_ms: Math.round(request.ms * 100) / 100,
    body: request.body,
    body_bytes: request.bodyBytes,
  }
}

const RUN_PATH = /^\/v1\/runs\/([a-z0-9]+)(?:\/|$)/

/**
 * What the journal masks in an entry: the credential values of the sandbox its path names (url(port)
 * requests carry no key) and of every live sandbox of the key that sent it.
 */
export function journalSecrets(registry: SandboxRegistry): SecretsOf {
  return (path, keyHash) => {
    const named = RUN_PATH.exec(path)?.[1]
    const own = keyHash ? registry.list(keyHash).flatMap((s) => s.secrets) : []
    return named ? [...(registry.find(named)?.secrets ?? []), ...own] : own
  }
}
