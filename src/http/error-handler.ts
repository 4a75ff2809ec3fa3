import type { FastifyError, FastifyInstance } from 'fastify'
import { z } from 'zod'
import { type EmulatorError, type ErrorCode, Errors, isEmulatorError } from '../errors.ts'
import { zodValidatorCompiler } from './zod-provider.ts'

export interface ErrorBody {
  error: { code: ErrorCode | string; message: string; details?: Record<string, unknown> }
}

const FASTIFY_CODES: Record<number, ErrorCode> = {
  400: 'validation_failed',
  404: 'route_not_found',
  413: 'payload_too_large',
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
      return reply.status(status).send({ error: { code, message: err.message } } satisfies ErrorBody)
    }
    request.log.error({ err }, 'unhandled error')
    return reply.status(500).send({
      error: { code: 'internal', message: 'internal error; see the emulator log' },
    } satisfies ErrorBody)
  })

  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({
      error: { code: 'route_not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` },
    } satisfies ErrorBody)
  })
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
  return Errors.validation(field, issue?.message ?? 'invalid')
}

/** The one error body shape, also for answers written straight to a socket (upgrade requests). */
export function errorBody(err: EmulatorError): ErrorBody {
  const body: ErrorBody = { error: { code: err.code, message: err.message } }
  if (err.details) body.error.details = err.details
  return body
}
