import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../../config.ts'
import { EmulatorError, Errors } from '../../errors.ts'
import type { GuestProxy } from '../../proxy/guest-proxy.ts'
import type { ProxyTarget, ProxyTargets } from '../../sandboxes/proxy-targets.ts'
import { guestTarget, passBodiesThrough } from './proxy.ts'

/**
 * Chrome DevTools discovery (`/json/version`, `/json/list`, `/json/new`...) at the emulator's root, for
 * clients that resolve `/json/version` against their browserURL and so drop url(port)'s prefix:
 * puppeteer-core before 25.13 (`new URL('/json/version', browserURL)`, puppeteer#15250) and the tools
 * that bundle it. Such a request names no sandbox, so it goes to the one running sandbox with a server
 * on the DevTools port; with several, it is refused (409) rather than guessed. The answer is the guest's,
 * rewritten as on url(port), so its WebSocket URLs carry the prefix and everything after is ordinary
 * url(port) traffic. No API key: the client cannot send one (see Config.cdpDiscovery for who may ask).
 */
export function cdpDiscoveryRoutes(
  app: FastifyInstance,
  targets: ProxyTargets,
  proxy: GuestProxy,
  settings: Config['cdpDiscovery'],
): void {
  passBodiesThrough(app)
  const { port } = settings
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    if (!settings.enabled) {
      throw new EmulatorError(
        'route_not_found',
        404,
        `DevTools discovery at the emulator's root is off (${settings.why}): ask the sandbox itself, at sandbox.url(${port}, '/json/version'), or set ISORUN_EMULATOR_CDP_DISCOVERY=on`,
        { port },
      )
    }
    const page = browserPage(request)
    if (page) {
      // Its answer names a sandbox's run id, the credential of its url(port): a page (one a guest serves
      // through url(port) on this very origin included) must not read it. DevTools clients are not pages.
      throw Errors.forbidden(
        `DevTools discovery at the emulator's root does not answer web pages (${page}); ask the sandbox itself, at sandbox.url(${port}, '/json/version')`,
      )
    }
    const browser = await theOneBrowser(targets, proxy, port)
    const target = guestTarget(targets, browser, port, request.raw.url ?? '/')
    await proxy.forward(target, request.raw, reply.raw, () => reply.hijack())
  }
  app.get('/json', handler)
  app.get('/json/*', handler)
  // Chrome opens a tab on PUT /json/new (GET there is refused by current Chrome, but passed on as asked).
  app.put('/json/*', handler)
}

async function theOneBrowser(targets: ProxyTargets, proxy: GuestProxy, port: number): Promise<ProxyTarget> {
  const running = await targets.running()
  const open = await Promise.all(running.map((t) => proxy.isListening(t.address, port)))
  const serving = running.filter((_, i) => open[i])
  const [only] = serving
  if (serving.length === 1 && only) return only
  const howTo = `ask the sandbox itself: puppeteer.connect({ browserURL: sandbox.url(${port}) }) with puppeteer-core >= 25.13, or pass browserWSEndpoint: the webSocketDebuggerUrl of sandbox.url(${port}, '/json/version')`
  if (serving.length === 0) {
    throw new EmulatorError(
      'not_found',
      404,
      `no running sandbox has a server on port ${port} (DevTools discovery at the emulator's root looks there); start the browser with --remote-debugging-port=${port} --remote-debugging-address=0.0.0.0, or ${howTo}`,
      { port, sandboxes_running: running.length },
    )
  }
  throw Errors.conflict(
    `${serving.length} running sandboxes have a server on port ${port}, and a request to the emulator's root names none of them, so it cannot tell which browser is meant; ${howTo}`,
    { port, sandboxes_serving: serving.length },
  )
}

/**
 * What marks a request as a web page's: an `Origin` (cross-origin reads, every non-GET, WebSockets) or a
 * `Sec-Fetch-Site` other than `none` (a user's own navigation), which browsers send to loopback origins
 * on every request. DevTools clients (puppeteer, Playwright, Node's fetch) send neither.
 */
function browserPage(request: FastifyRequest): string | undefined {
  const origin = request.headers.origin
  if (origin !== undefined) return `Origin: ${origin}`
  const site = request.headers['sec-fetch-site']
  if (site !== undefined && site !== 'none') return `Sec-Fetch-Site: ${site}`
  return undefined
}
