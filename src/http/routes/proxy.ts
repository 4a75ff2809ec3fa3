import { type IncomingMessage, METHODS, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { FaultInjector } from '../../control/faults.ts'
import type { RequestJournal } from '../../control/journal.ts'
import { EmulatorError, Errors, isEmulatorError } from '../../errors.ts'
import { bearerToken } from '../../net/bearer.ts'
import type { FastLaneHooks } from '../../proxy/fast/hooks.ts'
import type { GuestProxy } from '../../proxy/guest-proxy.ts'
import { guestPath, isProxyUrl, parseProxyUrl, proxyPrefix } from '../../proxy/proxy-url.ts'
import { isCdpDiscovery } from '../../proxy/rewrite.ts'
import type { GuestTarget } from '../../proxy/target.ts'
import type { ProxyTarget, ProxyTargets } from '../../sandboxes/proxy-targets.ts'
import { journalEntry } from '../control-hooks.ts'
import { urlPortDoc } from '../openapi.ts'
import { errorResponse } from '../raw-reply.ts'
import type { RequestGuard } from '../request-guard.ts'
import { ProxyParams, ProxyRestParams } from '../wire.ts'

/**
 * url(port): `/v1/runs/:id/proxy/:port/*` reaches the sandbox's own port, for every method, for
 * WebSocket upgrades too. The URL embeds the sandbox's unguessable run id and is itself the credential,
 * so these routes live outside the bearer-auth scope (a bearer header is accepted, and not forwarded).
 */
export function proxyRoutes(app: FastifyInstance, targets: ProxyTargets, proxy: GuestProxy): void {
  passBodiesThrough(app)
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const target = await resolveTarget(targets, request.raw.url ?? '')
    await proxy.forward(target, request.raw, reply.raw, () => reply.hijack())
  }
  app.all('/runs/:id/proxy/:port', { schema: { openapi: urlPortDoc('proxy', ProxyParams) } }, handler)
  app.all(
    '/runs/:id/proxy/:port/*',
    { schema: { openapi: urlPortDoc('proxyPath', ProxyRestParams) } },
    handler,
  )
}

/**
 * Makes a route scope leave request bodies to the guest and accept every method a guest may speak.
 * For the routes of that scope only (Fastify encapsulation).
 */
export function passBodiesThrough(app: FastifyInstance): void {
  // Bodies are the guest's business: never parsed, never buffered, whatever their content type.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
  // Fastify reads Content-Type only to pick a parser, and refuses a malformed or missing one (415, or
  // 400 for QUERY) before any handler runs. Here the guest decides: Fastify is shown a neutral type,
  // the guest gets the headers as they were sent (from rawHeaders).
  app.addHook('onRequest', (request, _reply, done) => {
    request.headers['content-type'] = 'application/octet-stream'
    done()
  })

  // Fastify routes the common methods only; a guest may speak WebDAV and the like. (CONNECT never
  // reaches routes: Node hands it to the server's 'connect' event.)
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method))
      app.addHttpMethod(method, { hasBody: true })
  }
}

/**
 * WebSocket (and any other) upgrades arrive on the Node server's `upgrade` event, not through Fastify's
 * routes; only url(port) paths accept one. Errors get the usual JSON body, written to the socket.
 */
export function proxyUpgrades(
  server: Server,
  targets: ProxyTargets,
  proxy: GuestProxy,
  log: FastifyBaseLogger,
  faults?: FaultInjector,
  guard?: RequestGuard,
): void {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A client that resets mid-handshake must not take the process down.
    socket.on('error', (err) => log.debug({ err, url: req.url }, 'upgrade socket error'))
    const refused = guard?.refusal(req)
    if (refused) return answerOnSocket(socket, refused, log)
    const url = req.url ?? ''
    if (!isProxyUrl(url)) {
      const path = url.split('?')[0]
      return answerOnSocket(
        socket,
        new EmulatorError(
          'route_not_found',
          404,
          `no route ${req.method} ${path} accepts an upgrade; url(port) paths do`,
        ),
        log,
      )
    }
    // Upgrades bypass Fastify's hooks, so a drop_connection fault is applied here: the WebSocket drops.
    const auth = bearerToken(req.headers.authorization)
    const fault = faults?.match(req.method ?? 'GET', url.split('?')[0] ?? url, auth)
    if (fault?.action === 'drop_connection') return void socket.destroy()
    resolveTarget(targets, url)
      .then((target) => proxy.upgrade(target, req, socket, head))
      .catch((err: unknown) => answerOnSocket(socket, err, log))
  })
}

async function resolveTarget(targets: ProxyTargets, url: string): Promise<GuestTarget> {
  const parsed = parseProxyUrl(url)
  if (!parsed) throw new EmulatorError('route_not_found', 404, `no route ${url.split('?')[0]}`)
  const { prefix, runId, portText, port, path } = parsed
  if (port === undefined) {
    throw Errors.validation(
      'params.port',
      `must be an integer in [1, 65535], got ${JSON.stringify(portText)}`,
    )
  }
  return guestTarget(targets, await targets.target(runId), port, path, prefix)
}

/**
 * Where a request for `path` on a sandbox's `port` goes, and how its traffic counts as activity.
 * `prefix` is the url(port) prefix as the client spelled it (the guest's self-references get it).
 */
export function guestTarget(
  targets: ProxyTargets,
  { sandbox, address }: ProxyTarget,
  port: number,
  path: string,
  prefix = proxyPrefix(sandbox.id, port),
): GuestTarget {
  return {
    runId: sandbox.id,
    address,
    port,
    prefix,
    path: guestPath(path),
    onConnected: () => targets.noteOpened(sandbox, port),
    onTraffic: () => targets.noteTraffic(sandbox),
  }
}

function answerOnSocket(socket: Duplex, err: unknown, log: FastifyBaseLogger): void {
  let e: EmulatorError
  if (isEmulatorError(err)) e = err
  else {
    log.error({ err }, 'unhandled error in an upgrade request')
    e = new EmulatorError('internal', 500, 'internal error; see the emulator log')
  }
  if (!socket.writable) return void socket.destroy()
  socket.end(errorResponse(e))
}

/**
 * What the fast lane (proxy/fast/lane.ts) needs from the HTTP layer: the same target resolution as the
 * routes (a request it cannot resolve is left to them, and they answer the error), the fault injector's
 * say (armed faults must see every request, so the lane steps aside), and the request journal.
 */
export function fastLaneHooks(
  targets: ProxyTargets,
  faults: FaultInjector,
  journal: RequestJournal,
  guard?: RequestGuard,
): FastLaneHooks {
  return {
    route: async (method, url, host, client) => {
      // The routes answer what the guard refuses.
      if (guard && !guard.admits(client, host)) return undefined
      const target = await resolveTarget(targets, url)
      // DevTools discovery answers are rewritten whole: the routes do that.
      return isCdpDiscovery(method, target.path) ? undefined : target
    },
    enabled: () => !faults.armed(),
    completed: (e) => journal.record(journalEntry({ ...e, url: e.target })),
    errorResponse,
  }
}
