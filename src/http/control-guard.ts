import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Errors } from '../errors.ts'
import { bearerToken } from '../net/bearer.ts'
import { originOf } from './origins.ts'

/** Methods a web page may make a browser send anywhere; they change nothing here. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Who may use the control plane (faults, clock, reset, the request journal): the person running the
 * emulator. Without an admin token that means a peer on this machine's loopback; with one, whoever sends
 * it. And since that person's browser also opens pages nobody vetted, a change needs what no page can
 * send across origins without the emulator's consent (which it never gives: no CORS): a JSON content
 * type, and no Origin but the emulator's own. A plain HTML form or a `no-cors` fetch can send neither.
 */
export function guardControlPlane(app: FastifyInstance, adminToken: string | undefined): void {
  const admin = adminToken ? digest(adminToken) : undefined
  app.addHook('onRequest', async (request) => {
    if (admin) {
      const token = bearerToken(request.headers.authorization)
      if (!token || !timingSafeEqual(digest(token), admin))
        throw Errors.unauthorized('the control plane needs the admin token: Authorization: Bearer <token>')
    } else if (!isLoopbackAddress(request.socket.remoteAddress)) {
      throw Errors.forbidden(
        `the control plane answers loopback peers only, not ${request.socket.remoteAddress}; set ISORUN_EMULATOR_ADMIN_TOKEN to reach it from elsewhere`,
      )
    }
    if (SAFE_METHODS.has(request.method)) return
    if (!isJsonType(request.headers['content-type'])) {
      throw Errors.unsupportedMediaType(
        `${request.method} on the control plane needs Content-Type: application/json (even without a body), which a web page cannot send to another origin`,
      )
    }
    const origin = request.headers.origin
    if (origin !== undefined && !isOwnOrigin(origin, request)) {
      throw Errors.forbidden(
        `Origin ${origin} is not the emulator's own; the control plane takes no orders from other pages`,
      )
    }
  })
}

/**
 * Whether a request is the person running the emulator's without any token: on the dashboard's origin
 * (no url(port) page is there), from this machine's loopback, with no admin token set (which would make
 * the token the only proof). Such a request may view any tenant (auth.ts's tenant header).
 */
export function trustsWithoutToken(request: FastifyRequest, adminToken: string | undefined): boolean {
  return !adminToken && originOf(request.raw) === 'admin' && isLoopbackAddress(request.socket.remoteAddress)
}

/** Whether a peer address is this machine's loopback (IPv4-mapped IPv6 included). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false
  const a = address.toLowerCase().replace(/^::ffff:/, '')
  if (a === '::1') return true
  return isIP(a) === 4 && a.startsWith('127.')
}

function isJsonType(contentType: string | undefined): boolean {
  return contentType?.split(';')[0]?.trim().toLowerCase() === 'application/json'
}

/** The page that sent the request is on the origin the request went to (scheme, host and port). */
function isOwnOrigin(origin: string, request: FastifyRequest): boolean {
  const host = request.headers.host
  return host !== undefined && origin.toLowerCase() === `${request.protocol}://${host.toLowerCase()}`
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}
