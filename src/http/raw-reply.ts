import type { EmulatorError } from '../errors.ts'
import { closingResponse } from '../proxy/headers.ts'
import { errorBody } from './error-handler.ts'

/**
 * An error as a whole HTTP response, for answers written straight to a socket rather than through
 * Fastify's reply (upgrade requests, url(port)'s fast lane): the same body as the error handler's, then
 * the connection closes. Every raw error answer renders here, so the body's shape has one home
 * (`errorBody`).
 */
export function errorResponse(e: EmulatorError): string {
  return closingResponse(
    e.status,
    ['Content-Type', 'application/json; charset=utf-8'],
    JSON.stringify(errorBody(e)),
  )
}
