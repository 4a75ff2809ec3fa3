import { homedir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { parseHostMap } from './egress/resolver.ts'
import { type PullPolicy, parseRegistries } from './images/pull-policy.ts'

/**
 * All settings, parsed once from an environment-like record (process.env by default, so tests pass
 * their own). The CLI turns its flags into the same keys, so a flag and its variable behave alike.
 * Each setting's default is stated beside it and in the README's configuration table.
 */
const ConfigSchema = z.object({
  // Interface to listen on. `localhost` binds both 127.0.0.1 and ::1.
  ISORUN_EMULATOR_HOST: z.string().min(1).default('localhost'),
  // TCP port; 0 picks any free port (the banner prints the one chosen).
  ISORUN_EMULATOR_PORT: z.coerce.number().int().min(0).max(65535).default(8731),
  // Where the emulator keeps its own state (instance id, later snapshots, history, audit logs).
  ISORUN_EMULATOR_DATA_DIR: z.string().min(1).optional(),
  // Comma-separated API keys. Empty: any non-empty bearer token is accepted (each key still only
  // sees its own sandboxes).
  ISORUN_EMULATOR_API_KEYS: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((k) => k.trim())
        .filter(Boolean),
    ),
  // pino log level: fatal, error, warn, info, debug, trace, silent.
  ISORUN_EMULATOR_LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info'),
  // Price in US cents per vCPU-second of a sandbox's uptime (about $0.05 per vCPU-hour).
  ISORUN_EMULATOR_PRICE_VCPU_SECOND_CENTS: z.coerce.number().min(0).default(0.0014),
  // Price in US cents per GiB-second of a sandbox's memory allocation (about $0.016 per GiB-hour).
  ISORUN_EMULATOR_PRICE_GIB_SECOND_CENTS: z.coerce.number().min(0).default(0.00045),
  // Bytes of stdout and of stderr kept per exec; the rest is read and discarded (16 MiB each).
  ISORUN_EMULATOR_EXEC_OUTPUT_LIMIT: z.coerce
    .number()
    .int()
    .min(1024)
    .default(16 * 1024 * 1024),
  // Largest file accepted by files/upload, in bytes (1 GiB).
  ISORUN_EMULATOR_UPLOAD_LIMIT: z.coerce
    .number()
    .int()
    .min(1)
    .default(1024 * 1024 * 1024),
  // How long an image pull may take before create gives up with a 400 naming the image.
  ISORUN_EMULATOR_PULL_TIMEOUT_MS: z.coerce.number().int().min(1).default(60_000),
  // Image pulls: `missing` pulls an image create names that is not present locally, `never` uses local
  // images only (docs/images.md).
  ISORUN_EMULATOR_PULL: z.enum(['missing', 'never']).default('missing'),
  // Registries pulls may contact (`host[:port]`, comma-separated; `*`: any). Docker Hub only by default:
  // tenants name images, and a pull makes dockerd connect to the registry an image names.
  ISORUN_EMULATOR_PULL_REGISTRIES: z
    .string()
    .default('docker.io')
    .transform((s, ctx) => {
      try {
        return parseRegistries(s)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
        return z.NEVER
      }
    }),
  // Docker network sandboxes join.
  ISORUN_EMULATOR_NETWORK: z.string().min(1).default('bridge'),
  // JSON file of network profiles ([{name, description?, allow, deny}]) merged over the built-ins
  // (default, none, web-dev) by name.
  ISORUN_EMULATOR_NETWORK_PROFILES: z.string().min(1).optional(),
  // Port of the egress proxy on the isolated network's gateway address. Fixed, because sandboxes keep
  // it in their environment (HTTP_PROXY) across emulator restarts.
  ISORUN_EMULATOR_EGRESS_PORT: z.coerce.number().int().min(1).max(65535).default(3128),
  // Names the egress proxy resolves to a fixed address instead of asking DNS: `name=ip,name=ip`.
  ISORUN_EMULATOR_EGRESS_HOSTS: z
    .string()
    .default('')
    .transform((s, ctx) => {
      try {
        return parseHostMap(s)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
        return z.NEVER
      }
    }),
  // Warm pool: started containers kept ready per (image, vcpus, memory) asked for in the last 5
  // minutes (and for the default node:22-slim), so create hands one out at once. 0 disables it.
  ISORUN_EMULATOR_POOL: z.coerce.number().int().min(0).max(16).default(2),
  // `real`, or `virtual`: a clock that moves only by POST /_emulator/clock/advance (idle timeouts and
  // costs follow it).
  ISORUN_EMULATOR_CLOCK: z.enum(['real', 'virtual']).default('real'),
  // Bearer token the control plane (/_emulator faults, clock, reset, requests) requires; unset: open.
  ISORUN_EMULATOR_ADMIN_TOKEN: z.string().min(1).optional(),
  // A JSON file of sandboxes and snapshots to prepare at start and after a reset (see README).
  ISORUN_EMULATOR_SEED: z.string().min(1).optional(),
  // A directory of scripts run once the emulator is ready, with ISORUN_API_URL/ISORUN_API_KEY set.
  ISORUN_EMULATOR_INIT: z.string().min(1).optional(),
  // Key of the audit log's HMAC chain; when unset one is generated and kept in <data dir>/audit.key.
  ISORUN_EMULATOR_AUDIT_KEY: z.string().min(16).optional(),
  // Chrome DevTools discovery at the emulator's root (/json/version, /json/list): for clients that drop
  // url(port)'s prefix (puppeteer-core before 25.13). It answers for the one running sandbox with a
  // server on ISORUN_EMULATOR_CDP_PORT, naming no key, so `auto` turns it on only when the emulator
  // listens on loopback; `on` and `off` say so outright.
  ISORUN_EMULATOR_CDP_DISCOVERY: z.enum(['auto', 'on', 'off']).default('auto'),
  // The guest port root DevTools discovery looks for (Chrome's usual --remote-debugging-port).
  ISORUN_EMULATOR_CDP_PORT: z.coerce.number().int().min(1).max(65535).default(9222),
  // url(port)'s fast lane: ordinary proxied requests are relayed without Node's HTTP server and client
  // (about 3x less CPU each); `0` sends every request through the routes (the slow path).
  ISORUN_EMULATOR_FAST_PROXY: z
    .enum(['1', '0', 'true', 'false'])
    .default('1')
    .transform((v) => v === '1' || v === 'true'),
  // CRIU memory checkpoints: `auto` uses them when they work on this host, `off` never does.
  ISORUN_EMULATOR_CRIU: z.enum(['auto', 'off']).default('auto'),
  // Strict: a snapshot, fork or hibernate that cannot keep memory fails (409) instead of degrading
  // to files only (or to pause).
  ISORUN_EMULATOR_STRICT: z
    .enum(['1', '0', 'true', 'false'])
    .default('0')
    .transform((v) => v === '1' || v === 'true'),
})

export interface PricingConfig {
  vcpuSecondCents: number
  gibSecondCents: number
}

export interface Config {
  host: string
  port: number
  dataDir: string
  apiKeys: string[]
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  pricing: PricingConfig
  execOutputLimit: number
  uploadLimit: number
  pullTimeoutMs: number
  pull: PullPolicy
  network: string
  criu: 'auto' | 'off'
  strict: boolean
  auditKey: string | undefined
  poolSize: number
  networkProfilesFile: string | undefined
  egressPort: number
  egressHosts: Record<string, string>
  clock: 'real' | 'virtual'
  adminToken: string | undefined
  seedFile: string | undefined
  initDir: string | undefined
  fastProxy: boolean
  /** Root DevTools discovery, `auto` already decided from `host`. */
  cdpDiscovery: { enabled: boolean; port: number; why: string }
}

export type ConfigEnv = Record<string, string | undefined>

function defaultDataDir(env: ConfigEnv): string {
  const base = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share')
  return join(base, 'isorun-emulator')
}

export function loadConfig(env: ConfigEnv = process.env): Config {
  // Treat empty strings as "unset" so `FOO= isorun-emulator` falls back to the default.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''))
  const parsed = ConfigSchema.safeParse(present)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new Error(`invalid configuration: ${issue?.path.join('.')}: ${issue?.message}`)
  }
  const c = parsed.data
  return {
    host: c.ISORUN_EMULATOR_HOST,
    port: c.ISORUN_EMULATOR_PORT,
    dataDir: c.ISORUN_EMULATOR_DATA_DIR ?? defaultDataDir(env),
    apiKeys: c.ISORUN_EMULATOR_API_KEYS,
    logLevel: c.ISORUN_EMULATOR_LOG_LEVEL,
    pricing: {
      vcpuSecondCents: c.ISORUN_EMULATOR_PRICE_VCPU_SECOND_CENTS,
      gibSecondCents: c.ISORUN_EMULATOR_PRICE_GIB_SECOND_CENTS,
    },
    execOutputLimit: c.ISORUN_EMULATOR_EXEC_OUTPUT_LIMIT,
    uploadLimit: c.ISORUN_EMULATOR_UPLOAD_LIMIT,
    pullTimeoutMs: c.ISORUN_EMULATOR_PULL_TIMEOUT_MS,
    pull: { mode: c.ISORUN_EMULATOR_PULL, registries: c.ISORUN_EMULATOR_PULL_REGISTRIES },
    network: c.ISORUN_EMULATOR_NETWORK,
    criu: c.ISORUN_EMULATOR_CRIU,
    strict: c.ISORUN_EMULATOR_STRICT,
    auditKey: c.ISORUN_EMULATOR_AUDIT_KEY,
    poolSize: c.ISORUN_EMULATOR_POOL,
    networkProfilesFile: c.ISORUN_EMULATOR_NETWORK_PROFILES,
    egressPort: c.ISORUN_EMULATOR_EGRESS_PORT,
    egressHosts: c.ISORUN_EMULATOR_EGRESS_HOSTS,
    clock: c.ISORUN_EMULATOR_CLOCK,
    adminToken: c.ISORUN_EMULATOR_ADMIN_TOKEN,
    seedFile: c.ISORUN_EMULATOR_SEED,
    initDir: c.ISORUN_EMULATOR_INIT,
    fastProxy: c.ISORUN_EMULATOR_FAST_PROXY,
    cdpDiscovery: cdpDiscovery(
      c.ISORUN_EMULATOR_CDP_DISCOVERY,
      c.ISORUN_EMULATOR_HOST,
      c.ISORUN_EMULATOR_CDP_PORT,
    ),
  }
}

function cdpDiscovery(mode: 'auto' | 'on' | 'off', host: string, port: number): Config['cdpDiscovery'] {
  if (mode !== 'auto') return { enabled: mode === 'on', port, why: `ISORUN_EMULATOR_CDP_DISCOVERY=${mode}` }
  const loopback = isLoopbackHost(host)
  return {
    enabled: loopback,
    port,
    why: loopback
      ? `ISORUN_EMULATOR_CDP_DISCOVERY=auto and the emulator listens on loopback (${host})`
      : `ISORUN_EMULATOR_CDP_DISCOVERY=auto and the emulator listens on ${host}, beyond loopback`,
  }
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h)
}
