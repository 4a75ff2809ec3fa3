import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { closeSockets } from '../net/close-sockets.ts'
import { limitConnectTime } from '../net/connect-timeout.ts'
import { SocketsByRun } from '../net/sockets-by-run.ts'
import { badStatusLine, clientResponseHeaders, closingResponse } from '../proxy/headers.ts'
import type { Logger } from '../sandboxes/logger.ts'
import type { Sandbox } from '../sandboxes/sandbox.ts'
import { type CompiledPolicy, compilePolicy, type Decision, decide, type GuardedAddresses } from './policy.ts'
import type { HostResolver } from './resolver.ts'

/** A request the policy refused, as the domain event `network.blocked` records it. */
export interface BlockedRequest {
  host: string
  port: number
  /** `CONNECT` for a tunnel (HTTPS and anything else tunnelled), else the HTTP method. */
  method: string
  reason: string
}

export interface EgressProxyOptions {
  /** The running sandbox with an egress policy at this source address; undefined for anyone else. */
  identify(address: string): Promise<Sandbox | undefined>
  resolver: HostResolver
  guarded: GuardedAddresses
  onBlocked(sandbox: Sandbox, blocked: BlockedRequest): void
  logger: Logger
}

/** Where a request goes, once its sandbox is known and the policy has let it through. */
interface Route {
  sandbox: Sandbox
  host: string
  port: number
  address: string
}

/**
 * The egress proxy: the only way out of the isolated network. An HTTP forward proxy (absolute-form
 * requests) and an HTTPS/TCP tunnel (CONNECT), listening on the host's address on that network. It
 * knows a sandbox by the source address of its connection, judges every destination against that
 * sandbox's policy (the name, and the resolved address for IP and CIDR rules), connects to the very
 * address it checked, and answers a refusal with a 403 whose body says why.
 */
export class EgressProxy {
  private readonly server: Server
  private readonly opts: EgressProxyOptions
  private readonly compiled = new WeakMap<object, CompiledPolicy>()
  /** Every socket, both sides, so close() leaves nothing open. */
  private readonly sockets = new Set<Duplex>()
  /** Each sandbox's client connections, cut before a checkpoint (CRIU refuses established TCP). */
  private readonly byRun = new SocketsByRun()

  constructor(opts: EgressProxyOptions) {
    this.opts = opts
    this.server = createServer({ requestTimeout: 0 })
    this.server.on('connection', (socket: Socket) => this.track(socket))
    this.server.on('request', (req, res) => void this.onRequest(req, res))
    this.server.on('connect', (req, socket, head) => void this.onTunnel(req, socket, head, 'connect'))
    this.server.on('upgrade', (req, socket, head) => void this.onTunnel(req, socket, head, 'upgrade'))
    this.server.on('clientError', (_err, socket) => socket.destroy())
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen({ host, port, exclusive: true }, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
  }

  /** The port it listens on (useful when asked for port 0). */
  get port(): number {
    const address = this.server.address()
    return typeof address === 'object' && address ? address.port : 0
  }

  /**
   * Closes a sandbox's connections through the proxy (tunnels included) and resolves once the guest has
   * closed its side of each too (bounded): before a checkpoint, a connection merely cut lingers in the
   * guest long enough, on a busy machine, for CRIU to find it and refuse the dump.
   */
  closeConnections(runId: string): Promise<void> {
    return closeSockets(this.byRun.take(runId))
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    if (!this.server.listening) return
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  // --- plain HTTP: GET http://host:port/path --------------------------------------------------------

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = absoluteHttpUrl(req.url)
    if (!url) {
      return plain(
        res,
        400,
        'this is the isorun-emulator egress proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port',
      )
    }
    const method = req.method ?? 'GET'
    const route = await this.route(req.socket, url.hostname, Number(url.port || 80), method, (status, body) =>
      plain(res, status, body),
    )
    if (!route) return
    const headers = clientResponseHeaders(req.rawHeaders, (v) => v)
    if (req.headers.host === undefined) headers.push('Host', url.host)
    const upstream = request({
      host: route.address,
      port: route.port,
      method,
      path: `${url.pathname}${url.search}`,
      headers,
      setHost: false,
      agent: false,
    })
    let answered = false
    connectTimeout(upstream, (socket) => this.track(socket))
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy()
    })
    upstream.on('response', (up) => {
      answered = true
      up.on('error', () => res.destroy())
      // Node's server throws on what its client reads here (a status below 100, control characters).
      const bad = badStatusLine(up.statusCode ?? 0, up.statusMessage ?? '')
      if (bad) {
        up.resume()
        return plain(res, 502, `${route.host}:${route.port} (${route.address}) answered with ${bad}`)
      }
      res.writeHead(
        up.statusCode ?? 502,
        up.statusMessage,
        clientResponseHeaders(up.rawHeaders, (v) => v),
      )
      // The head now, as latin1 (flushHeaders() would send it as UTF-8, mangling bytes beyond ASCII).
      if (up.headers['content-length'] === undefined) res.write(Buffer.alloc(0))
      up.pipe(res)
    })
    upstream.on('error', (err) => {
      if (answered || res.headersSent) return res.destroy()
      plain(res, 502, destinationUnreachable(route, err))
    })
    req.pipe(upstream)
  }

  // --- tunnels: CONNECT host:port, and upgrades (WebSocket) of absolute-form requests -----------------

  private async onTunnel(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    kind: 'connect' | 'upgrade',
  ): Promise<void> {
    socket.on('error', () => socket.destroy())
    const target = kind === 'connect' ? authority(req.url) : upgradeTarget(req.url)
    if (!target) {
      const what = kind === 'connect' ? 'CONNECT needs host:port' : 'send absolute-form requests'
      return rawReply(socket, 400, `this is the isorun-emulator egress proxy: ${what}`)
    }
    const route = await this.route(
      socket,
      target.host,
      target.port,
      req.method ?? 'CONNECT',
      (status, body) => rawReply(socket, status, body),
    )
    if (!route) return
    const upstream = connect({ host: route.address, port: route.port })
    this.track(upstream)
    let connected = false
    // A destination that does not answer the handshake is given up on (502).
    limitConnectTime(upstream)
    upstream.once('connect', () => {
      connected = true
      if (kind === 'connect') socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      else upstream.write(upgradeHead(req, target.path))
      if (head.length > 0) upstream.write(head)
      upstream.pipe(socket)
      socket.pipe(upstream)
    })
    upstream.on('error', (err) => {
      if (!connected) rawReply(socket, 502, destinationUnreachable(route, err))
      else socket.destroy()
    })
    socket.once('close', () => upstream.destroy())
    // Before the connection was made, the 502 above is on its way out; destroying would cut it.
    upstream.once('close', () => {
      if (connected) socket.destroy()
    })
  }

  // --- policy ------------------------------------------------------------------------------------

  /** Identifies the sandbox and judges the destination; answers (and returns undefined) when refused. */
  private async route(
    client: Duplex,
    rawHost: string,
    port: number,
    method: string,
    refuse: (status: number, body: string) => void,
  ): Promise<Route | undefined> {
    const host = rawHost.replace(/^\[|\]$/g, '')
    const source = (client as Socket).remoteAddress?.replace(/^::ffff:/, '') ?? ''
    const sandbox = await this.opts.identify(source).catch(() => undefined)
    if (!sandbox?.egress) {
      refuse(403, `blocked: ${source} is not a running sandbox with an egress policy`)
      return undefined
    }
    this.byRun.add(sandbox.id, client)
    let decision: Decision
    try {
      decision = await decide(this.policyOf(sandbox), host, {
        resolve: (h) => this.opts.resolver.resolve(h),
        guarded: this.opts.guarded,
        pinned: (h) => this.opts.resolver.pinned?.(h) === true,
      })
    } catch (err) {
      refuse(502, `cannot resolve ${host}: ${(err as Error).message}`)
      return undefined
    }
    if (!decision.allowed) {
      const profile = sandbox.egress.profile ? ` (network profile ${sandbox.egress.profile})` : ''
      refuse(
        403,
        `blocked by the egress policy of sandbox ${sandbox.id}${profile}: ${host}:${port}: ${decision.reason}`,
      )
      this.opts.logger.info({ runId: sandbox.id, host, port, reason: decision.reason }, 'egress blocked')
      this.opts.onBlocked(sandbox, { host, port, method, reason: decision.reason })
      return undefined
    }
    return { sandbox, host, port, address: decision.address }
  }

  private policyOf(sandbox: Sandbox): CompiledPolicy {
    const policy = sandbox.egress
    if (!policy) throw new Error('no policy')
    let compiled = this.compiled.get(policy)
    if (!compiled) {
      compiled = compilePolicy(policy)
      this.compiled.set(policy, compiled)
    }
    return compiled
  }

  private track(socket: Duplex): void {
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
  }
}

function absoluteHttpUrl(raw: string | undefined): URL | undefined {
  if (!raw || !/^http:\/\//i.test(raw)) return undefined
  try {
    const url = new URL(raw)
    return url.hostname ? url : undefined
  } catch {
    return undefined
  }
}

/** `host:port` or `[v6]:port`, as CONNECT names its destination. */
function authority(raw: string | undefined): { host: string; port: number; path: string } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(raw ?? '')
  const port = Number(m?.[3])
  const host = m?.[1] ?? m?.[2]
  if (!host || !(port >= 1 && port <= 65535)) return undefined
  return { host, port, path: '' }
}

function upgradeTarget(raw: string | undefined): { host: string; port: number; path: string } | undefined {
  const url = absoluteHttpUrl(raw)
  if (!url) return undefined
  return { host: url.hostname, port: Number(url.port || 80), path: `${url.pathname}${url.search}` }
}

/** The upgrade request as the destination must see it: origin-form, its own headers (Upgrade kept). */
function upgradeHead(req: IncomingMessage, path: string): string {
  let head = `${req.method} ${path} HTTP/1.1\r\n`
  const raw = req.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    if (name === 'proxy-connection' || name === 'proxy-authorization') continue
    head += `${raw[i]}: ${raw[i + 1]}\r\n`
  }
  return `${head}\r\n`
}

function connectTimeout(upstream: ReturnType<typeof request>, track: (s: Socket) => void): void {
  upstream.once('socket', (socket) => {
    track(socket)
    limitConnectTime(socket, (err) => upstream.destroy(err))
  })
}

function destinationUnreachable(route: Route, err: unknown): string {
  const code = (err as { code?: string })?.code
  const why = code === 'ECONNREFUSED' ? 'connection refused' : ((err as Error)?.message ?? String(err))
  return `${route.host}:${route.port} (${route.address}) is allowed but did not answer: ${why}`
}

function plain(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) return void res.destroy()
  const body = `isorun-emulator egress proxy: ${message}\n`
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-isorun-egress': status === 403 ? 'blocked' : 'error',
  })
  res.end(body)
}

function rawReply(socket: Duplex, status: number, message: string): void {
  const body = `isorun-emulator egress proxy: ${message}\n`
  const headers = [
    'Content-Type',
    'text/plain; charset=utf-8',
    'X-Isorun-Egress',
    status === 403 ? 'blocked' : 'error',
  ]
  socket.end(closingResponse(status, headers, body))
}
