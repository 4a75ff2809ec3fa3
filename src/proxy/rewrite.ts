/**
 * What the proxy rewrites in the guest's answers so that URLs the guest makes for itself still work
 * from outside: the `Location` header, and Chrome's DevTools discovery JSON. Nothing else (HTML, CSS,
 * JavaScript bodies, Set-Cookie paths and domains, other headers) is touched; see docs/limitations.md.
 */
export interface PublicView {
  /** `http://<the Host the client used>` */
  origin: string
  /** The Host the client used, e.g. `[::1]:8731`. */
  host: string
  /** `/v1/runs/<id>/proxy/<port>` */
  prefix: string
  /** The guest's port and address, to recognize absolute URLs that point at the guest itself. */
  port: number
  address: string
}

/**
 * `/login` becomes `<prefix>/login`; `http://localhost:<port>/x` (or 127.0.0.1, [::1], 0.0.0.0, the
 * container's IP, or the public Host without the prefix) becomes the proxied URL. Relative references
 * (`next`, `../up`) already resolve under the prefix and URLs of other hosts are left alone.
 */
export function rewriteLocation(location: string, view: PublicView): string {
  if (location.startsWith('/') && !location.startsWith('//')) {
    return underPrefix(location, view.prefix) ? location : view.prefix + location
  }
  if (!/^(https?:)?\/\//i.test(location)) return location
  let url: URL
  try {
    url = new URL(location, `${view.origin}/`)
  } catch {
    return location
  }
  const host = url.host.toLowerCase()
  const pointsAtGuest = guestHosts(view).has(host)
  const pointsAtUsUnprefixed = host === view.host.toLowerCase() && !underPrefix(url.pathname, view.prefix)
  if (!pointsAtGuest && !pointsAtUsUnprefixed) return location
  return `${view.origin}${view.prefix}${url.pathname}${url.search}${url.hash}`
}

/** The host[:port] forms the guest may use for itself (URL.host drops a default :80). */
function guestHosts(view: PublicView): Set<string> {
  const names = [
    'localhost',
    '127.0.0.1',
    '[::1]',
    '0.0.0.0',
    view.address.includes(':') ? `[${view.address}]` : view.address,
  ]
  const hosts = new Set(names.map((n) => `${n}:${view.port}`))
  if (view.port === 80) for (const n of names) hosts.add(n)
  return hosts
}

function underPrefix(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`) || path.startsWith(`${prefix}?`)
}

/**
 * Chrome's DevTools discovery endpoints, which puppeteer and chrome-remote-interface read, and
 * /json/new (PUT in current Chrome), which answers with the new tab's target.
 */
const CDP_DISCOVERY = /^\/json(\/version|\/list)?\/?(\?|$)/
const CDP_NEW_TAB = /^\/json\/new\/?(\?|$)/

export function isCdpDiscovery(method: string | undefined, guestPath: string): boolean {
  if (method === 'GET' && CDP_DISCOVERY.test(guestPath)) return true
  return (method === 'PUT' || method === 'GET') && CDP_NEW_TAB.test(guestPath)
}

/**
 * Chrome answers /json/version and /json/list with `ws://127.0.0.1:9222/devtools/...` URLs (or the Host
 * it was asked with), which mean nothing outside the sandbox: point them at the proxy instead.
 * `webSocketDebuggerUrl` becomes `ws://<public Host><prefix>/devtools/...`; the `ws=` parameter of
 * `devtoolsFrontendUrl` the same without the scheme, and a path-absolute frontend URL gets the prefix.
 */
export function rewriteCdpDiscovery(body: unknown, view: PublicView): unknown {
  const wsScheme = view.origin.startsWith('https:') ? 'wss' : 'ws'
  const fix = (target: unknown) => {
    if (!target || typeof target !== 'object') return target
    const t = target as Record<string, unknown>
    if (typeof t.webSocketDebuggerUrl === 'string') {
      t.webSocketDebuggerUrl = t.webSocketDebuggerUrl.replace(
        /^wss?:\/\/[^/]+/i,
        `${wsScheme}://${view.host}${view.prefix}`,
      )
    }
    if (typeof t.devtoolsFrontendUrl === 'string') {
      let url = t.devtoolsFrontendUrl.replace(/([?&]wss?=)[^&/]+/gi, `$1${view.host}${view.prefix}`)
      if (url.startsWith('/') && !url.startsWith('//') && !underPrefix(url, view.prefix))
        url = view.prefix + url
      t.devtoolsFrontendUrl = url
    }
    return t
  }
  return Array.isArray(body) ? body.map(fix) : fix(body)
}
