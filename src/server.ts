import { createServer as createNetServer, type Server } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { type App, buildApp } from './app.ts'
import { type Config, isWildcardHost } from './config.ts'
import { runInitScripts } from './control/seed.ts'
import { createEngine } from './engines.ts'
import { SAMPLE_API_KEY } from './http/auth.ts'
import { acceptedOnAdminOrigin } from './http/origins.ts'
import { ensureStandIns } from './images/stand-ins.ts'
import { type Clock, VirtualClock } from './sandboxes/clock.ts'
import type { SandboxDomain } from './sandboxes/domain.ts'
import type { SandboxEngine } from './sandboxes/engine.ts'
import { loadIdentity } from './sandboxes/identity.ts'
import type { InstanceIdentity } from './sandboxes/labels.ts'
import type { WarmPool } from './sandboxes/warm-pool.ts'
import { ConnectionDrain } from './shutdown.ts'

export interface RunningServer {
  /** The URL to give the SDK: `http://[::1]:PORT` on loopback, which skips the SDK's HTTP/3 attempt. */
  apiUrl: string
  port: number
  /**
   * The dashboard's and the control plane's own origin (`/_emulator/ui`, `/_emulator/faults`...): the
   * same host, its own port, which no url(port) page shares (http/origins.ts).
   */
  adminUrl: string
  adminPort: number
  app: FastifyInstance
  sandboxes: SandboxDomain
  /** This emulator instance: its id (on every container's labels) and data dir. */
  identity: InstanceIdentity
  pool: WarmPool
  /** Everything the app was built from (control plane handles, stores). */
  built: App
  /**
   * Stops accepting on every listener, lets requests in flight finish (up to the shutdown grace period,
   * then cuts them), then closes the app. url(port) streams and WebSockets are cut at once.
   */
  close(): Promise<void>
}

export interface StartOptions {
  engine?: SandboxEngine
  clock?: Clock
}

/**
 * The URL clients should use. Where the server is on `::1` it is `[::1]`: the SDK's optional HTTP/3
 * transport first dials QUIC on port 443 of an IPv4 host and waits 10 s for it; an IPv6 literal makes it
 * fall back at once. `localhost` and `0.0.0.0` are served on `::1` too (see listen()); `::` is dual-stack.
 */
export function publicUrl(host: string, port: number): string {
  if (host === 'localhost' || isWildcardHost(host)) return `http://[::1]:${port}`
  const bare = host.replace(/^\[|\]$/g, '')
  return bare.includes(':') ? `http://[${bare}]:${port}` : `http://${bare}:${port}`
}

/** Starts the emulator: checks the engine, adopts this data dir's sandboxes, listens. */
export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const identity = loadIdentity(config.dataDir, { fsync: config.durability === 'fsync' })
  // The engine speaks before the app (and its logger) exists: what it says then is logged once there is one.
  const early: [Record<string, unknown>, string][] = []
  let logEngine = (data: Record<string, unknown>, message: string) => {
    early.push([data, message])
  }
  const engine = options.engine ?? (await createEngine(config, (data, message) => logEngine(data, message)))
  const engineInfo = await engine.info()
  const clock = options.clock ?? (config.clock === 'virtual' ? new VirtualClock() : undefined)
  const built = buildApp({ config, engine, identity, engineInfo, clock })
  const { app, sandboxes } = built
  logEngine = (data, message) => app.log.info(data, message)
  for (const [data, message] of early.splice(0)) logEngine(data, message)
  const capabilities = built.capabilities()
  // Every listener hands its connections to app.server; the drain waits for them all, after the proxy
  // has cut its streams (app.ts's preClose) and before the app's own onClose hooks run.
  const connections = new ConnectionDrain(app.server)
  const listeners: Server[] = [app.server]
  app.addHook('preClose', async () => connections.drain(listeners, config.shutdownGraceMs, app.log))
  app.log.info({ capabilities }, 'engine capabilities')
  const memory = capabilities.memory_state
  if (memory.criu) app.log.info(`memory snapshots: on (${memory.reason})`)
  else app.log.warn(`memory snapshots: off: ${memory.reason}`)
  const network = engineInfo.sandboxNetwork
  if (network?.isolated) app.log.info(`sandbox network: ${network.note}`)
  else if (network) app.log.warn(`sandbox network: ${network.note}`)
  const transport = capabilities.exec.transport
  app.log.info(
    `exec and files: ${transport.agent ? 'through the sandbox agent' : "through the engine's exec"} (${transport.reason})`,
  )
  const cdp = config.cdpDiscovery
  app.log.info(
    `DevTools discovery at /json/version (port ${cdp.port}): ${cdp.enabled ? 'on' : 'off'} (${cdp.why})`,
  )

  const { pool } = built
  const recovered = await sandboxes.recover()
  if (recovered.adopted || recovered.reaped) app.log.info(recovered, 'recovered sandboxes from the engine')

  // On a first start the SDK's images are not here: the stand-ins are built before the API answers, so
  // the Quickstart works offline (a fake engine, in tests, has every image).
  if (!options.engine && config.standIns) await ensureStandIns(engine, config.standIns, built.images, app.log)
  // The SDK's default image is kept warm from the start (its refill backs off if it is not here).
  pool.prewarm({ image: sandboxes.lifecycle.resolveImage('node:22-slim'), vcpus: 1, memMib: 1024 })
  await built.seeder.apply()
  const listening = await listen(app, config.host, config.port)
  if (listening.extra) listeners.push(listening.extra)
  const admin = await listenAdmin(app, [...listeners], config.adminPort)
  listeners.push(...admin.servers)
  const adminUrl = withPort(listening.url, admin.port)
  built.origins.api = listening.url
  built.origins.admin = adminUrl
  if (config.initDir) {
    await runInitScripts(
      config.initDir,
      { ISORUN_API_URL: listening.url, ISORUN_API_KEY: config.apiKeys[0] ?? SAMPLE_API_KEY },
      app.log,
    )
  }
  return {
    apiUrl: listening.url,
    port: listening.port,
    adminUrl,
    adminPort: admin.port,
    app,
    sandboxes,
    identity,
    pool,
    built,
    close: async () => {
      await app.close()
      await engine.close?.()
    },
  }
}

/**
 * `localhost` means both loopbacks on one port: ::1 (the fast URL for the SDK) and 127.0.0.1 (for every
 * other client). Many hosts resolve localhost to 127.0.0.1 only, so both are bound explicitly. `0.0.0.0`
 * (every IPv4 interface) gets ::1 beside it where there is one, so the printed `[::1]` URL answers on
 * this machine too.
 * The second socket hands its connections to the same HTTP server, upgrades included.
 */
async function listen(
  app: FastifyInstance,
  host: string,
  port: number,
): Promise<{ url: string; port: number; extra?: Server }> {
  if (host !== 'localhost' && host !== '0.0.0.0') {
    await app.listen({ host, port })
    const bound = boundPort(app.server.address(), port)
    return { url: publicUrl(host, bound), port: bound }
  }
  const [first, second] = host === 'localhost' ? ['::1', '127.0.0.1'] : ['0.0.0.0', '::1']
  try {
    await app.listen({ host: first, port })
  } catch (err) {
    if (host !== 'localhost') throw err
    app.log.warn(
      { err },
      'cannot listen on ::1; using 127.0.0.1 only (the SDK will wait ~10 s on its first call)',
    )
    await app.listen({ host: '127.0.0.1', port })
    const bound = boundPort(app.server.address(), port)
    return { url: `http://127.0.0.1:${bound}`, port: bound }
  }
  const bound = boundPort(app.server.address(), port)
  const extra = createNetServer((socket) => app.server.emit('connection', socket))
  try {
    await new Promise<void>((resolve, reject) => {
      extra.once('error', reject)
      extra.listen({ host: second, port: bound }, resolve)
    })
  } catch (err) {
    if (host === 'localhost') throw err
    // No IPv6 loopback here, as in a container on Docker's default network: the printed [::1] URL is
    // then the one to publish the port on (docs/docker.md); from this machine, 127.0.0.1 answers.
    app.log.info(
      { err },
      `cannot also listen on ::1; from this machine use http://127.0.0.1:${bound}, from the host the published port`,
    )
    return { url: publicUrl(host, bound), port: bound }
  }
  return { url: publicUrl(host, bound), port: bound, extra }
}

/**
 * The dashboard's origin: a listener beside each of the API's (the same addresses, its own port), whose
 * connections are marked as the dashboard's and handed to the same HTTP server, which serves each origin
 * its own routes (origins.ts).
 */
async function listenAdmin(
  app: FastifyInstance,
  apiListeners: Server[],
  port: number,
): Promise<{ port: number; servers: Server[] }> {
  const servers: Server[] = []
  let bound = port
  try {
    for (const api of apiListeners) {
      const address = api.address()
      if (typeof address !== 'object' || !address) continue
      const server = createNetServer((socket) => {
        acceptedOnAdminOrigin(socket)
        app.server.emit('connection', socket)
      })
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host: address.address, port: bound }, resolve)
      })
      servers.push(server)
      bound = boundPort(server.address(), bound)
    }
  } catch (err) {
    for (const server of servers) server.close()
    throw new Error(
      `cannot listen on the dashboard's port ${port} (ISORUN_EMULATOR_ADMIN_PORT, --admin-port): ${(err as Error).message}`,
    )
  }
  return { port: bound, servers }
}

/** `url` on another port. */
function withPort(url: string, port: number): string {
  const u = new URL(url)
  u.port = String(port)
  return u.origin
}

function boundPort(address: ReturnType<Server['address']>, fallback: number): number {
  return typeof address === 'object' && address ? address.port : fallback
}
