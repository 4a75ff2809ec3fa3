/**
 * url(port)'s URL grammar, the one definition: `/v1/runs/<id>/proxy/<port>` followed by the guest's path
 * and query, raw (the guest gets them exactly as the client sent them).
 */
const PROXY_URL = /^(\/v1\/runs\/([^/?#]+)\/proxy\/([^/?#]*))(.*)$/s

export interface ProxyUrl {
  /** `/v1/runs/<id>/proxy/<port>` as the client spelled it (the guest's self-references get it). */
  prefix: string
  runId: string
  /** The port segment as sent; `port` is undefined unless it is an integer in [1, 65535]. */
  portText: string
  port: number | undefined
  /** Path and query for the guest, always starting with `/`. */
  path: string
}

/** Reads a request target as a url(port) URL; undefined when it is not one. */
export function parseProxyUrl(url: string): ProxyUrl | undefined {
  const match = PROXY_URL.exec(url)
  if (!match) return undefined
  const [, prefix = '', runId = '', portText = '', rest = ''] = match
  const number = Number(portText)
  const port = /^\d{1,5}$/.test(portText) && number >= 1 && number <= 65535 ? number : undefined
  return { prefix, runId, portText, port, path: guestPath(rest) }
}

/** Whether a request target is under url(port)'s prefix (whatever its run and port). */
export function isProxyUrl(url: string): boolean {
  return PROXY_URL.test(url)
}

/** The prefix of a sandbox's port, as `sandbox.url(port)` builds it. */
export function proxyPrefix(runId: string, port: number): string {
  return `/v1/runs/${runId}/proxy/${port}`
}

/** What follows the prefix, as the guest's path: `''` and `?q` are the guest's root. */
export function guestPath(rest: string): string {
  return rest.startsWith('/') ? rest : `/${rest}`
}
