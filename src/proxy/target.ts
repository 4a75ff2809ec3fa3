/**
 * One proxied request's destination, as the HTTP layer resolved it: which guest port, which path there,
 * and how traffic is reported back to the domain. The proxy itself knows nothing of sandboxes.
 */
export interface GuestTarget {
  runId: string
  /** The guest's address on the engine's network. */
  address: string
  port: number
  /** The public prefix the client used: `/v1/runs/<id>/proxy/<port>`. */
  prefix: string
  /** Path and query as the guest sees them: the prefix stripped, always starting with `/`. */
  path: string
  /** The guest answered (HTTP response or upgrade). */
  onConnected(): void
  /** Bytes moved; called per request and per chunk, so it must be cheap. */
  onTraffic(): void
}
