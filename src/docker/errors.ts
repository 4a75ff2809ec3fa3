import { EmulatorError, Errors } from '../errors.ts'

/** What dockerode throws: an HTTP status and Docker's message, or a socket error. */
interface DockerLikeError {
  statusCode?: number
  json?: { message?: string } | null
  reason?: string
  message?: string
  code?: string
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'])

export function dockerMessage(err: unknown): string {
  const e = err as DockerLikeError
  return e?.json?.message ?? e?.message ?? String(err)
}

/**
 * Translates an engine error into the emulator's own at the driver boundary: 404 -> not found,
 * 409 -> conflict, an unreachable socket -> engine unavailable, anything else -> engine error.
 * `notFound` says what a 404 means in this call (a missing container is a missing sandbox, a
 * missing archive path is a missing file).
 */
export function translateDockerError(err: unknown, notFound: () => EmulatorError): EmulatorError {
  if (err instanceof EmulatorError) return err
  const e = err as DockerLikeError
  if (e?.code && CONNECTION_CODES.has(e.code))
    return Errors.engineUnavailable(`${e.code}: ${e.message ?? ''}`)
  switch (e?.statusCode) {
    case 404:
      return notFound()
    case 409:
      return Errors.conflict(dockerMessage(err))
    default:
      return Errors.engine(`container engine error: ${dockerMessage(err)}`)
  }
}
