import type { Socket } from 'node:net'
import type { EmulatorError } from '../../errors.ts'
import type { GuestTarget } from '../target.ts'

/** What the fast lane needs from the HTTP layer (http/routes/proxy.ts provides it). */
export interface FastLaneHooks {
  /**
   * The guest a url(port) request goes to, or undefined to leave it (and its connection) to the HTTP
   * framework, which answers what the lane does not handle: errors (unknown run, hibernated, bad port),
   * DevTools discovery (its JSON is rewritten), other paths, a `Host` the emulator does not answer to,
   * a connection to the dashboard's origin (`client`, the connection the request came on).
   */
  route(method: string, target: string, host: string, client: Socket): Promise<GuestTarget | undefined>
  /** False while the framework must see every request (faults are armed). */
  enabled(): boolean
  /** An exchange the lane carried ended (the request journal); `target` is the request target as sent. */
  completed(e: {
    method: string
    target: string
    authorization: string | undefined
    status: number
    ms: number
  }): void
  /** The whole HTTP response (status line to body, `Connection: close`) that tells a client `e`. */
  errorResponse(e: EmulatorError): string
}
