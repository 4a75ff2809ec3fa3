import { join } from 'node:path'
import Fastify, { type FastifyInstance, LogController } from 'fastify'
import { openAccountLogs } from './accounts/account-logs.ts'
import type { HistoryStore } from './accounts/history.ts'
import type { AuditLog } from './audit/audit-log.ts'
import { type Capabilities, describeCapabilities } from './capabilities.ts'
import type { Config } from './config.ts'
import { FaultInjector } from './control/faults.ts'
import { RequestJournal } from './control/journal.ts'
import { loadSeedFile, Seeder } from './control/seed.ts'
import { EgressGateway } from './egress/gateway.ts'
import { NetworkProfiles } from './egress/profiles.ts'
import { hostResolver } from './egress/resolver.ts'
import { EmulatorError } from './errors.ts'
import { requireApiKey } from './http/auth.ts'
import { answerClientError, limitHeadTime } from './http/client-errors.ts'
import { trustsWithoutToken } from './http/control-guard.ts'
import { journalSecrets, registerControlHooks } from './http/control-hooks.ts'
import { frameworkErrors, registerErrorHandling } from './http/error-handler.ts'
import { EmulatorNames } from './http/host-names.ts'
import { openApiFromRoutes } from './http/openapi.ts'
import { type OriginUrls, servedOnlyOn } from './http/origins.ts'
import { RequestGuard } from './http/request-guard.ts'
import { accountRoutes } from './http/routes/accounts.ts'
import { cdpDiscoveryRoutes } from './http/routes/cdp-discovery.ts'
import { checkpointRoutes } from './http/routes/checkpoints.ts'
import { controlRoutes } from './http/routes/control.ts'
import { emulatorRoutes } from './http/routes/emulator.ts'
import { execRoutes, execTransportRoutes } from './http/routes/exec.ts'
import { fileRoutes } from './http/routes/files.ts'
import { networkProfileRoutes } from './http/routes/network-profiles.ts'
import { notImplementedRoutes } from './http/routes/not-implemented.ts'
import { fastLaneHooks, proxyRoutes, proxyUpgrades } from './http/routes/proxy.ts'
import { runRoutes } from './http/routes/runs.ts'
import { uiRoutes } from './http/routes/ui.ts'
import { findRunBeforeBody } from './http/run-guard.ts'
import { clearUploadSpool } from './http/upload-body.ts'
import { ImageMap } from './images/image-map.ts'
import { standInBuildCommand } from './images/stand-ins.ts'
import { logStream } from './log-format.ts'
import { GuestProxy } from './proxy/guest-proxy.ts'
import { type Clock, realClock } from './sandboxes/clock.ts'
import { createSandboxDomain, type SandboxDomain } from './sandboxes/domain.ts'
import type { EngineInfo, SandboxEngine } from './sandboxes/engine.ts'
import { FS_VIEW, FS_VIEW_LABEL } from './sandboxes/fs-view.ts'
import type { InstanceIdentity } from './sandboxes/labels.ts'
import { LABEL } from './sandboxes/labels.ts'
import { sandboxLimits } from './sandboxes/quotas.ts'
import { SnapshotStore } from './sandboxes/snapshot-store.ts'
import { SandboxStateStore } from './sandboxes/state-store.ts'
import { WarmPool } from './sandboxes/warm-pool.ts'
import type { WriteOptions } from './store/files.ts'

export interface AppDeps {
  config: Config
  engine: SandboxEngine
  identity: InstanceIdentity
  /** What the engine said at start, for capabilities (null or left out: not asked). */
  engineInfo?: EngineInfo | null
  clock?: Clock
}

export interface App {
  app: FastifyInstance
  /** The sandbox domain: registry, lifecycle, exec and files, checkpoints, lookups for the proxies. */
  sandboxes: SandboxDomain
  identity: InstanceIdentity
  /** What this emulator can really do, as GET /_emulator/capabilities says it (egress as of now). */
  capabilities: () => Capabilities
  /** url(port)'s connections into sandboxes; `closeConnections(runId)` before a checkpoint. */
  proxy: GuestProxy
  audit: AuditLog
  history: HistoryStore
  pool: WarmPool
  /** Egress enforcement: the isolated network and the egress proxy, started with the first policy. */
  egressGateway: EgressGateway
  faults: FaultInjector
  journal: RequestJournal
  clock: Clock
  /** Prepares the seed file's sandboxes and snapshots (at start and after a reset). */
  seeder: Seeder
  /** The local image run for each image a create names. */
  images: ImageMap
  /** Where the API's and the dashboard's origins are, set once the server listens (server.ts). */
  origins: OriginUrls
}

/** Builds the HTTP application: plugins, routes, error handling. It never listens; server.ts does. */
export function buildApp(deps: AppDeps): App {
  const { config, engine, identity } = deps
  const app = Fastify({
    logger: { level: config.logLevel, stream: logStream(config.logFormat) },
    // Requests are not logged one by one; the domain logs what it does to which sandbox.
    logController: new LogController({ disableRequestLogging: true }),
    // Long execs are fine; the SDK waits up to 120 s for headers.
    requestTimeout: 0,
    bodyLimit: 8 * 1024 * 1024,
    // Requests Node's parser refuses get its status with the emulator's error body.
    clientErrorHandler: (err, socket) => answerClientError(err, socket, config.headersTimeoutMs),
    // What the router refuses before any route (a malformed URL, a too long parameter), in the same shape.
    frameworkErrors,
  })
  limitHeadTime(app.server, config.headersTimeoutMs)
  const proxy = new GuestProxy()
  const writes: WriteOptions = { fsync: config.durability === 'fsync' }
  const clock = deps.clock ?? realClock
  const activity = trackApiActivity(app)
  const pool = new WarmPool({
    engine,
    clock,
    log: app.log,
    quiet: activity.quiet,
    size: config.poolSize,
    maxKeys: 4,
    keepMs: 5 * 60_000,
    labels: {
      [LABEL.app]: '1',
      [LABEL.instance]: identity.instanceId,
      [LABEL.dataDir]: identity.dataDir,
      [FS_VIEW_LABEL]: FS_VIEW,
      [LABEL.pool]: '1',
    },
  })
  const profiles = NetworkProfiles.load(config.networkProfilesFile)
  // The proxy asks the domain which sandbox is at an address; the domain is made just below.
  const egressGateway: EgressGateway = new EgressGateway({
    engine,
    identity,
    port: config.egressPort,
    resolver: hostResolver(config.egressHosts),
    logger: app.log,
    sandboxes: {
      at: (address) => sandboxes.egressSources.at(address),
      blocked: (sandbox, blocked) => sandboxes.egressSources.blocked(sandbox, blocked),
    },
  })
  const records = new SandboxStateStore(identity.dataDir, writes)
  const images = new ImageMap(
    config.standIns,
    config.imageMap,
    config.standIns ? standInBuildCommand(config.standIns) : undefined,
  )
  const sandboxes = createSandboxDomain({
    engine,
    clock,
    pricing: config.pricing,
    identity,
    logger: app.log,
    execOutputLimit: config.execOutputLimit,
    snapshots: new SnapshotStore(identity.dataDir, writes),
    records,
    pool,
    strict: config.strict,
    beforeCheckpoint: async (runId) => {
      await Promise.all([egressGateway.closeConnections(runId), proxy.closeConnections(runId)])
    },
    egressEnforcer: egressGateway,
    limits: sandboxLimits(config, deps.engineInfo),
    images,
  })

  const { audit, history } = openAccountLogs({
    dataDir: identity.dataDir,
    auditKey: config.auditKey,
    retention: config.retention,
    writes,
    now: () => clock.now(),
    isLive: (id) => records.load(id) !== undefined,
    events: sandboxes.events,
  })

  const uploadSpool = join(identity.dataDir, 'uploads')
  clearUploadSpool(uploadSpool)
  registerErrorHandling(app)
  acceptEmptyJsonBodies(app)
  // Before any route: the document is made from the routes as they are registered.
  const openApiDocument = openApiFromRoutes(app)
  const seeder = new Seeder(config.seedFile ? loadSeedFile(config.seedFile) : undefined, sandboxes, app.log)
  const faults = new FaultInjector()
  const journal = new RequestJournal({ secretsOf: journalSecrets(sandboxes.registry) })
  const origins: OriginUrls = {}
  const guard = new RequestGuard(new EmulatorNames(config.host, config.allowedHosts), origins)
  guard.register(app)
  registerControlHooks(app, faults, journal)
  app.register(
    async (v1) => {
      requireApiKey(v1, config.apiKeys, (request) => trustsWithoutToken(request, config.adminToken))
      findRunBeforeBody(v1, sandboxes.registry)
      runRoutes(v1, sandboxes, profiles)
      networkProfileRoutes(v1, profiles)
      execRoutes(v1, sandboxes.guest)
      checkpointRoutes(v1, sandboxes)
      accountRoutes(v1, { registry: sandboxes.registry, history, audit, pricing: config.pricing, clock })
      notImplementedRoutes(v1)
      v1.register(async (files) => fileRoutes(files, sandboxes.guest, config.uploadLimit, uploadSpool))
    },
    { prefix: '/v1' },
  )
  const capabilities = () =>
    describeCapabilities({
      engine: deps.engineInfo ?? null,
      memory: engine.memorySupport(),
      agent: engine.agentSupport?.(),
      config,
      egressStatus: egressGateway.status(),
      limits: sandboxes.quotas.limits,
      images: images.entries(),
    })
  app.register(async (emu) => emulatorRoutes(emu, engine, capabilities, openApiDocument, origins), {
    prefix: '/_emulator',
  })
  // With a sandbox's API key: how its exec and files travel now.
  app.register(
    async (emu) => {
      requireApiKey(emu, config.apiKeys)
      execTransportRoutes(emu, sandboxes.guest)
    },
    { prefix: '/_emulator' },
  )
  // The control plane and the dashboard are the person running the emulator's: their own origin only.
  app.register(
    async (control) => {
      servedOnlyOn(control, 'admin', origins)
      controlRoutes(control, {
        sandboxes,
        seeder,
        faults,
        journal,
        clock,
        history,
        adminToken: config.adminToken,
      })
    },
    { prefix: '/_emulator' },
  )
  // The dashboard: a static page; its script calls /v1 on its own origin, as one key or tenant.
  app.register(
    async (ui) => {
      servedOnlyOn(ui, 'admin', origins)
      uiRoutes(ui, origins)
    },
    { prefix: '/_emulator' },
  )
  // url(port): same /v1 prefix, outside the bearer-auth scope (the run id in the URL is the credential).
  proxy.followLifecycle(sandboxes.events)
  const targets = sandboxes.proxyTargets
  // Guests' pages never on the dashboard's origin (origins.ts).
  app.register(
    async (guest) => {
      servedOnlyOn(guest, 'api', origins)
      proxyRoutes(guest, targets, proxy)
    },
    { prefix: '/v1' },
  )
  // The same proxy for DevTools clients that drop url(port)'s prefix (see cdp-discovery.ts).
  app.register(async (cdp) => {
    servedOnlyOn(cdp, 'api', origins)
    cdpDiscoveryRoutes(cdp, targets, proxy, config.cdpDiscovery)
  })
  proxyUpgrades(app.server, targets, proxy, app.log, faults, guard)
  if (config.fastProxy) proxy.attachFastLane(app.server, fastLaneHooks(targets, faults, journal, guard))
  // Before the server waits for its connections to end: proxied streams and WebSockets never would.
  app.addHook('preClose', async () => proxy.close())
  app.addHook('onClose', async () => {
    sandboxes.close()
    await pool.drain()
    await egressGateway.close()
  })
  return {
    app,
    sandboxes,
    identity,
    capabilities,
    proxy,
    audit,
    history,
    pool,
    egressGateway,
    faults,
    journal,
    clock,
    seeder,
    images,
    origins,
  }
}

/**
 * Like Fastify's JSON parser, but an empty body with a JSON content type (a bodiless POST or DELETE from
 * some clients) means "no body" rather than a 400.
 */
function acceptEmptyJsonBodies(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = (body as string).trim()
    if (text === '') return done(null, undefined)
    try {
      done(null, JSON.parse(text))
    } catch (err) {
      done(
        new EmulatorError('validation_failed', 400, `body: invalid JSON: ${(err as Error).message}`),
        undefined,
      )
    }
  })
}

/** Quiet means: no API call in flight and none finished in the last QUIET_AFTER_MS. */
const QUIET_AFTER_MS = 50

/**
 * Counts API calls in flight, so background work (pool refills) can wait for a quiet moment. Proxied
 * url(port) traffic is not counted: its replies are hijacked streams that may stay open for hours.
 */
function trackApiActivity(app: FastifyInstance): { quiet: () => boolean } {
  let inFlight = 0
  let lastAt = 0
  const counted = (url: string) => url.startsWith('/v1/') && !url.includes('/proxy/')
  app.addHook('onRequest', async (request) => {
    if (!counted(request.url)) return
    inFlight++
    lastAt = Date.now()
  })
  const done = async (request: { url: string }) => {
    if (!counted(request.url)) return
    inFlight = Math.max(0, inFlight - 1)
    lastAt = Date.now()
  }
  app.addHook('onResponse', done)
  app.addHook('onRequestAbort', done)
  return { quiet: () => inFlight === 0 && Date.now() - lastAt >= QUIET_AFTER_MS }
}
