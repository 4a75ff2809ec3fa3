import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { type EmulatorError, type ErrorCode, Errors, isEmulatorError } from '../errors.ts'
import { zodValidatorCompiler } from './zod-provider.ts'

/**
 * The one error body, in the SDK's own shape: its fixtures answer `{"error": "<message>"}`, and
 * IsorunError.message keeps `HTTP <status>: ` and the body's first 200 bytes, so the readable message
 * comes first; `code` and `details` follow for programs.
 */
export interface ErrorBody {
  error: string
  code: ErrorCode | string
  details?: Record<string, unknown>
}

/** The body for a failure, `error` first. */
export function errorBodyOf(
  code: ErrorCode | string,
  message: string,
  details?: Record<string, unknown>,
): ErrorBody {
  return details ? { error: message, code, details } : { error: message, code }
}

const FASTIFY_CODES: Record<number, ErrorCode> = {
  400: 'validation_failed',
  404: 'route_not_found',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
}

/**
 * The single place errors become responses: one body shape for every failure. 4xx messages are shown
 * as they are; 5xx details are logged with the request and replaced by a generic message, except for
 * engine errors, whose message is what a user needs to fix their setup.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setValidatorCompiler(zodValidatorCompiler)
  app.setErrorHandler((fastifyError: FastifyError, request, reply) => {
    const err = validationFailure(fastifyError) ?? fastifyError
    if (isEmulatorError(err)) {
      // A 502 from url(port) is the guest's state (nothing listening yet), not the emulator's failure.
      if (err.status >= 500 && err.code !== 'bad_gateway') request.log.error({ err }, err.message)
      return reply.status(err.status).send(errorBody(err))
    }
    const status = err.statusCode ?? 500
    if (status >= 400 && status < 500) {
      const code = FASTIFY_CODES[status] ?? 'bad_request'
      return reply.status(status).send(errorBodyOf(code, err.message))
    }
    request.log.error({ err }, 'unhandled error')
    return reply.status(500).send(errorBodyOf('internal', 'internal error; see the emulator log'))
  })

  app.setNotFoundHandler((request, reply) => {
    reply
      .status(404)
      .send(errorBodyOf('route_not_found', `no route ${request.method} ${request.url.split('?')[0]}`))
  })
}

/**
 * Fastify's `frameworkErrors`: what its router refuses before any route or hook (a malformed URL, a
 * path parameter longer than it takes), answered in the one shape rather than Fastify's own.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = err.statusCode ?? 400
  reply.status(status).send(errorBodyOf(FASTIFY_CODES[status] ?? 'bad_request', err.message))
}

/** Where a request part is named in `details.field`: `body.vcpus`, `query.path`, `params.id`. */
const PART_NAMES: Record<string, string> = {
  body: 'body',
  querystring: 'query',
  params: 'params',
  headers: 'headers',
}

/** A route schema's refusal (zod-provider.ts) as the 400 naming the first offending field. */
function validationFailure(err: FastifyError): EmulatorError | undefined {
  if (!(err instanceof z.ZodError) || !err.validationContext) return undefined
  const issue = err.issues[0]
  const field = [PART_NAMES[err.validationContext], ...(issue?.path ?? [])].join('.')
  // A record's refused key says why in its own issue (zod's outer one only says "Invalid key in record").
  const why = issue?.code === 'invalid_key' ? issue.issues[0]?.message : undefined
  return Errors.validation(field, why ?? issue?.message ?? 'invalid')
}

/** The one error body shape, also for answers written straight to a socket (see raw-reply.ts). */
export function errorBody(err: EmulatorError): ErrorBody {
  return errorBodyOf(err.code, err.message, err.details)
}
