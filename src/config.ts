import { isIP } from 'node:net'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { parseHostMap } from './egress/resolver.ts'
import { DEFAULT_STAND_IN_REPOSITORY, parseImageMap } from './images/image-map.ts'
import { type PullPolicy, parseRegistries } from './images/pull-policy.ts'
import { parseImageReference } from './images/reference.ts'
import { LOG_FORMATS } from './log-format.ts'
import { defaultPodmanUrl, parsePodmanUrl } from './podman/endpoint.ts'

/**
 * Every setting of the emulator, once. From this table come the environment parsing (`loadConfig`),
 * the `Config` type, the command-line flags and `--help` (cli.ts), and the table in
 * docs/configuration.md (`npm run docs:config`; test/config.test.ts fails when the two differ).
 *
 * A setting is an `ISORUN_EMULATOR_*` variable whose text `schema` parses; a flag, when it has one,
 * sets the same variable, so the two behave alike and the flag wins. `default` is written as a user
 * would type it and goes through the same schema. `help` is one line for --help and the docs (`code`
 * in backticks is kept in the docs, stripped in --help).
 */
export interface Setting {
  env: `ISORUN_EMULATOR_${string}`
  schema: z.ZodType
  /** The text used when the variable is unset or empty; a function when it depends on the environment. */
  default?: string | ((env: ConfigEnv) => string)
  /** How the docs and --help state the default when it is not the literal text (or there is none). */
  shownDefault?: string
  flag?: { name: string; arg: string; repeatable?: boolean }
  help: string
}

const boolean = z.enum(['1', '0', 'true', 'false']).transform((v) => v === '1' || v === 'true')
const port = (min: number) => z.coerce.number().int().min(min).max(65535)
const text = z.string().min(1)
const DEFAULT_PORT = '8731'

export const SETTINGS = {
  host: {
    env: 'ISORUN_EMULATOR_HOST',
    schema: text,
    default: 'localhost',
    flag: { name: 'host', arg: 'H' },
    help: 'interface to listen on; `localhost` binds both `::1` and `127.0.0.1`; `0.0.0.0` and `::` are every interface (`0.0.0.0` also binds `::1`)',
  },
  port: {
    env: 'ISORUN_EMULATOR_PORT',
    schema: port(0),
    default: DEFAULT_PORT,
    flag: { name: 'port', arg: 'N' },
    help: 'TCP port; `0` = any free port (the banner prints the one chosen)',
  },
  // Its own port, so its own origin: no page a guest serves through url(port) shares it (security.md).
  adminPort: {
    env: 'ISORUN_EMULATOR_ADMIN_PORT',
    schema: port(0),
    default: (env) => {
      const api = Number(env.ISORUN_EMULATOR_PORT || DEFAULT_PORT)
      return api > 0 && api < 65535 ? String(api + 1) : '0'
    },
    shownDefault: 'the API port + 1 (`8732`); `0` when the API port is `0`',
    flag: { name: 'admin-port', arg: 'N' },
    help: "TCP port of the dashboard (`/_emulator/ui`) and the control plane, on the same host as the API; `0` = any free port (the banner prints the dashboard's URL)",
  },
  dataDir: {
    env: 'ISORUN_EMULATOR_DATA_DIR',
    schema: text,
    default: (env) =>
      join(env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share'), 'isorun-emulator'),
    shownDefault: '`$XDG_DATA_HOME/isorun-emulator` (`~/.local/share/...`)',
    flag: { name: 'data-dir', arg: 'DIR' },
    help: "the emulator's own state: instance id, snapshots, history, audit logs",
  },
  // Each key still only sees its own sandboxes; keys are hashed at once and never stored.
  apiKeys: {
    env: 'ISORUN_EMULATOR_API_KEYS',
    schema: z.string().transform((s) =>
      s
        .split(',')
        .map((k) => k.trim())
        .filter(Boolean),
    ),
    default: '',
    shownDefault: 'none',
    flag: { name: 'api-key', arg: 'KEY', repeatable: true },
    help: 'accept only these keys (comma-separated; the flag is repeatable); without any, every non-empty bearer token is accepted',
  },
  logLevel: {
    env: 'ISORUN_EMULATOR_LOG_LEVEL',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    default: 'info',
    flag: { name: 'log-level', arg: 'L' },
    help: 'pino level: fatal, error, warn, info, debug, trace, silent',
  },
  logFormat: {
    env: 'ISORUN_EMULATOR_LOG_FORMAT',
    schema: z.enum(LOG_FORMATS),
    default: 'auto',
    flag: { name: 'log-format', arg: 'F' },
    help: "`pretty`: one readable line per record; `json`: pino's JSON lines; `auto`: pretty when standard output is a terminal, JSON otherwise",
  },
  // About $0.05 per vCPU-hour.
  priceVcpuSecondCents: {
    env: 'ISORUN_EMULATOR_PRICE_VCPU_SECOND_CENTS',
    schema: z.coerce.number().min(0),
    default: '0.0014',
    help: "price per vCPU-second of a sandbox's uptime, US cents",
  },
  // About $0.016 per GiB-hour.
  priceGibSecondCents: {
    env: 'ISORUN_EMULATOR_PRICE_GIB_SECOND_CENTS',
    schema: z.coerce.number().min(0),
    default: '0.00045',
    help: "price per GiB-second of a sandbox's memory allocation, US cents",
  },
  execOutputLimit: {
    env: 'ISORUN_EMULATOR_EXEC_OUTPUT_LIMIT',
    schema: z.coerce.number().int().min(1024),
    default: String(16 * 1024 * 1024),
    help: 'bytes of stdout and of stderr kept per exec; the rest is read and discarded',
  },
  uploadLimit: {
    env: 'ISORUN_EMULATOR_UPLOAD_LIMIT',
    schema: z.coerce.number().int().min(1),
    default: String(1024 * 1024 * 1024),
    help: 'largest file accepted by files/upload, bytes',
  },
  pullTimeoutMs: {
    env: 'ISORUN_EMULATOR_PULL_TIMEOUT_MS',
    schema: z.coerce.number().int().min(1),
    default: '60000',
    help: 'how long a pull of a missing image may take before create gives up with a 400 naming the image',
  },
  pullMode: {
    env: 'ISORUN_EMULATOR_PULL',
    schema: z.enum(['missing', 'never']),
    default: 'missing',
    help: '`missing`: pull an image create names that is not present locally; `never`: local images only (see [images](images.md))',
  },
  // Docker Hub only by default: tenants name images, and a pull makes dockerd connect to the registry
  // an image names.
  pullRegistries: {
    env: 'ISORUN_EMULATOR_PULL_REGISTRIES',
    schema: z.string().transform((s, ctx) => {
      try {
        return parseRegistries(s)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
        return z.NEVER
      }
    }),
    default: 'docker.io',
    help: 'registries pulls may contact, `host[:port]` comma-separated; `*`: any (see [images](images.md))',
  },
  imageMap: {
    env: 'ISORUN_EMULATOR_IMAGE_MAP',
    schema: z.string().transform((s, ctx) => {
      try {
        return parseImageMap(s)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
        return z.NEVER
      }
    }),
    default: '',
    shownDefault: 'none',
    flag: { name: 'image-map', arg: 'NAME=IMAGE', repeatable: true },
    help: '`requested=local,...`: the local image to run when a create names `requested`, over the built-in stand-ins (see [images](images.md))',
  },
  // A repository of the emulator's own: a test points it at a fresh one to see a first start.
  standIns: {
    env: 'ISORUN_EMULATOR_STAND_INS',
    schema: z
      .string()
      .transform((s) => (s === 'off' ? '' : s))
      .superRefine((repo, ctx) => {
        try {
          if (repo) parseImageReference(`${repo}/node:22`)
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `not a repository name: ${(err as Error).message}` })
        }
      }),
    default: DEFAULT_STAND_IN_REPOSITORY,
    help: 'repository of the stand-in images built offline at the first start for `node:22-slim`, `node:22` and `python:3.12-slim`; `off`: no stand-ins (see [images](images.md))',
  },
  engine: {
    env: 'ISORUN_EMULATOR_ENGINE',
    schema: z.enum(['docker', 'podman']),
    default: 'docker',
    flag: { name: 'engine', arg: 'E' },
    help: '`docker` or `podman`: what runs sandboxes; what each can do, locally and remotely, in [engines](engines.md)',
  },
  podmanUrl: {
    env: 'ISORUN_EMULATOR_PODMAN_URL',
    schema: z.string().superRefine((url, ctx) => {
      try {
        parsePodmanUrl(url)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
      }
    }),
    default: (env) => defaultPodmanUrl(env),
    shownDefault: '`CONTAINER_HOST`, else `unix:///run/podman/podman.sock` (root)',
    help: "Podman's API service: `unix:///path` (started by the emulator when nothing answers there) or `tcp://host:port` (taken for another host's, never started)",
  },
  // CRIU cannot restore a container whose init was bind-mounted through a symlink, which Podman's own
  // init path is on Debian; on a local socket the emulator resolves it itself.
  podmanInit: {
    env: 'ISORUN_EMULATOR_PODMAN_INIT',
    schema: z.string().regex(/^\//, 'an absolute path on the Podman host').optional(),
    shownDefault: 'resolved on this host for a local socket',
    help: "the real path (not a symlink) of catatonit on a remote Podman's host, mounted as each sandbox's init (see [engines](engines.md))",
  },
  network: {
    env: 'ISORUN_EMULATOR_NETWORK',
    schema: text.optional(),
    shownDefault: "the emulator's own, `isorun-emulator-sandboxes`",
    help: "the engine's network sandboxes without an egress policy join; the default has no traffic between sandboxes (see [egress](egress.md), [engines](engines.md)); one named here is used as it is (Podman's `bridge` is its `podman` network)",
  },
  networkProfilesFile: {
    env: 'ISORUN_EMULATOR_NETWORK_PROFILES',
    schema: text.optional(),
    flag: { name: 'network-profiles', arg: 'FILE' },
    help: 'JSON file of network profiles (`[{name, description?, allow, deny}]`) merged over the built-ins by name',
  },
  // Fixed, because sandboxes keep it in their environment (HTTP_PROXY) across emulator restarts.
  egressPort: {
    env: 'ISORUN_EMULATOR_EGRESS_PORT',
    schema: port(1),
    default: '3128',
    help: "port of the egress proxy on the isolated network's gateway address",
  },
  egressHosts: {
    env: 'ISORUN_EMULATOR_EGRESS_HOSTS',
    schema: z.string().transform((s, ctx) => {
      try {
        return parseHostMap(s)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
        return z.NEVER
      }
    }),
    default: '',
    shownDefault: 'none',
    help: '`name=ip,...`: names the egress proxy resolves to a fixed address instead of asking DNS (tests)',
  },
  // Unset, each is derived from the engine host's cores and memory when the emulator starts (the engine
  // may be on another host: src/sandboxes/quotas.ts). Sizes are limits, not reservations, so the per-key
  // sums allow overcommit; one sandbox's size does not.
  maxVcpus: {
    env: 'ISORUN_EMULATOR_MAX_VCPUS',
    schema: z.coerce.number().int().min(1).optional(),
    shownDefault: "the engine host's cores",
    help: 'most vCPUs one sandbox may ask for (more: a 400 naming `vcpus`); set beyond the host, the sandbox gets all its cores and the record keeps what was asked (see [security](security.md#quotas))',
  },
  maxMemMib: {
    env: 'ISORUN_EMULATOR_MAX_MEM_MIB',
    schema: z.coerce.number().int().min(64).optional(),
    shownDefault: "the engine host's memory",
    help: 'most memory one sandbox may ask for, MiB (more: a 400 naming `mem_mib`)',
  },
  quotaSandboxes: {
    env: 'ISORUN_EMULATOR_QUOTA_SANDBOXES',
    schema: z.coerce.number().int().min(1).optional(),
    shownDefault: '32 per host core',
    help: 'sandboxes one API key may hold at once (hibernated included); beyond it create, restore and fork answer 429 `quota_exceeded`',
  },
  quotaVcpus: {
    env: 'ISORUN_EMULATOR_QUOTA_VCPUS',
    schema: z.coerce.number().int().min(1).optional(),
    shownDefault: '32 per host core',
    help: "vCPUs one API key's sandboxes may add up to (429 beyond)",
  },
  quotaMemMib: {
    env: 'ISORUN_EMULATOR_QUOTA_MEM_MIB',
    schema: z.coerce.number().int().min(64).optional(),
    shownDefault: "4 × the host's memory",
    help: "memory one API key's sandboxes may add up to, MiB (429 beyond)",
  },
  // Kept per (image, vcpus, memory) asked for in the last 5 minutes, and for the default node:22-slim.
  poolSize: {
    env: 'ISORUN_EMULATOR_POOL',
    schema: z.coerce.number().int().min(0).max(16),
    default: '2',
    flag: { name: 'pool', arg: 'N' },
    help: 'warm containers kept per image/size in use, so create hands one out at once; `0` = off',
  },
  clock: {
    env: 'ISORUN_EMULATOR_CLOCK',
    schema: z.enum(['real', 'virtual']),
    default: 'real',
    flag: { name: 'clock', arg: 'MODE' },
    help: '`virtual`: time (idle timeouts, costs) moves only by `POST /_emulator/clock/advance`',
  },
  adminToken: {
    env: 'ISORUN_EMULATOR_ADMIN_TOKEN',
    schema: text.optional(),
    flag: { name: 'admin-token', arg: 'T' },
    help: 'bearer token the `/_emulator` control plane (faults, clock, reset, requests) requires; unset: open to loopback peers only, and `--host` must be loopback (see [security](security.md))',
  },
  // Checked against the Host header of every request, so a DNS-rebinding page (a name of its own that
  // resolves to this machine) reaches nothing.
  allowedHosts: {
    env: 'ISORUN_EMULATOR_ALLOWED_HOSTS',
    schema: z.string().transform((s) =>
      s
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean),
    ),
    default: '',
    shownDefault: 'none',
    help: "more names clients may use in the Host header, comma-separated, beside `localhost`, IP addresses, this machine's host name and `--host`; `*`: any name (no DNS-rebinding guard)",
  },
  seedFile: {
    env: 'ISORUN_EMULATOR_SEED',
    schema: text.optional(),
    flag: { name: 'seed', arg: 'FILE' },
    help: 'JSON file of sandboxes and snapshots to prepare at start and after a reset',
  },
  initDir: {
    env: 'ISORUN_EMULATOR_INIT',
    schema: text.optional(),
    flag: { name: 'init', arg: 'DIR' },
    help: 'directory of scripts run once the emulator is ready, with `ISORUN_API_URL`/`ISORUN_API_KEY` set',
  },
  auditKey: {
    env: 'ISORUN_EMULATOR_AUDIT_KEY',
    schema: z.string().min(16).optional(),
    shownDefault: 'generated',
    help: 'HMAC key of the audit chain; unset: one is generated and kept in `<data dir>/audit.key`',
  },
  // What an answered call's writes (state, history, audit, snapshot records, keys) survive; see
  // docs/accounts.md.
  durability: {
    env: 'ISORUN_EMULATOR_DURABILITY',
    schema: z.enum(['process', 'fsync']),
    default: 'process',
    help: '`process`: writes reach the kernel before the answer (they survive a crash of the emulator); `fsync`: also flushed to the disk with their directory (they survive a power cut; slower) (see [durability](accounts.md))',
  },
  // Retention: a history record goes with its sandbox's audit log.
  historyDays: {
    env: 'ISORUN_EMULATOR_HISTORY_DAYS',
    schema: z.coerce.number().min(0),
    default: '30',
    help: "days a destroyed sandbox's history record and audit log are kept; `0`: forever",
  },
  historyMax: {
    env: 'ISORUN_EMULATOR_HISTORY_MAX',
    schema: z.coerce.number().int().min(0),
    default: '10000',
    help: 'history records kept (all keys together), the oldest dropped first with their audit logs; `0`: no limit',
  },
  auditMaxEntries: {
    env: 'ISORUN_EMULATOR_AUDIT_MAX_ENTRIES',
    schema: z.coerce.number().int().min(0),
    default: '10000',
    help: "entries kept per sandbox's audit log: beyond them the oldest give way to a signed anchor, so the rest still verifies; `0`: no limit",
  },
  // It answers for the one running sandbox with a server on the CDP port, naming no key: hence `auto`.
  cdpDiscoveryMode: {
    env: 'ISORUN_EMULATOR_CDP_DISCOVERY',
    schema: z.enum(['auto', 'on', 'off']),
    default: 'auto',
    help: "DevTools discovery at the root (`/json/version`) for clients that drop url(port)'s prefix (puppeteer-core < 25.13); `auto` = on when listening on loopback; `on`, `off`",
  },
  cdpPort: {
    env: 'ISORUN_EMULATOR_CDP_PORT',
    schema: port(1),
    default: '9222',
    help: 'the guest port root DevTools discovery looks for',
  },
  fastProxy: {
    env: 'ISORUN_EMULATOR_FAST_PROXY',
    schema: boolean,
    default: '1',
    help: '`0`: every url(port) request goes through the routes (no fast lane, which costs more CPU per request)',
  },
  // From the head's first byte; for a connection's first request, from its opening. Bodies have none.
  headersTimeoutMs: {
    env: 'ISORUN_EMULATOR_HEADERS_TIMEOUT_MS',
    schema: z.coerce.number().int().min(100),
    default: '60000',
    help: 'how long a client may take to send a request head; past it 408 and the connection closes (the routes and the fast lane alike)',
  },
  agent: {
    env: 'ISORUN_EMULATOR_AGENT',
    schema: z.enum(['auto', 'off']),
    default: 'auto',
    help: '`auto`: exec and files through the agent in each sandbox when it is built (see [agent](agent.md)); `off`: docker exec and the archive API',
  },
  criu: {
    env: 'ISORUN_EMULATOR_CRIU',
    schema: z.enum(['auto', 'off']),
    default: 'auto',
    help: '`auto`: memory checkpoints when CRIU works on this host; `off`: files only',
  },
  strict: {
    env: 'ISORUN_EMULATOR_STRICT',
    schema: boolean,
    default: '0',
    help: '`1`: a snapshot, fork or hibernate that cannot keep memory fails (409) instead of degrading',
  },
  // Below `docker stop`'s 10 s, which must also cover closing the rest (cli.ts allows 3 s for that).
  shutdownGraceMs: {
    env: 'ISORUN_EMULATOR_SHUTDOWN_GRACE_MS',
    schema: z.coerce.number().int().min(0).max(600_000),
    default: '5000',
    help: 'on SIGTERM/SIGINT, how long requests in flight get to finish before their connections are cut (see Stopping)',
  },
} satisfies Record<string, Setting>

type Table = typeof SETTINGS
/** Each setting's parsed value; `undefined` when it has no default and is unset. */
export type Settings = {
  [K in keyof Table]: Table[K] extends { default: unknown }
    ? z.output<Table[K]['schema']>
    : z.output<Table[K]['schema']> | undefined
}

export interface PricingConfig {
  vcpuSecondCents: number
  gibSecondCents: number
}

/** Root DevTools discovery, `auto` already decided from the host. */
export interface CdpDiscovery {
  enabled: boolean
  port: number
  why: string
}

/** How long history and audit logs are kept (0 = no limit). */
export interface RetentionConfig {
  historyMaxAgeMs: number
  historyMaxRecords: number
  auditMaxEntries: number
}

/** Settings the app takes as one value: the prices, the pull policy, DevTools discovery (decided), retention. */
type Combined =
  | 'priceVcpuSecondCents'
  | 'priceGibSecondCents'
  | 'pullMode'
  | 'pullRegistries'
  | 'cdpDiscoveryMode'
  | 'cdpPort'
  | 'historyDays'
  | 'historyMax'
  | 'auditMaxEntries'

/** The settings as the app uses them. */
export type Config = Omit<Settings, Combined> & {
  pricing: PricingConfig
  pull: PullPolicy
  cdpDiscovery: CdpDiscovery
  retention: RetentionConfig
}

export type ConfigEnv = Record<string, string | undefined>

/** Parses every setting from `env` (process.env by default, so tests pass their own). */
export function loadConfig(env: ConfigEnv = process.env): Config {
  const values: Record<string, unknown> = {}
  for (const [key, setting] of Object.entries(SETTINGS) as [string, Setting][]) {
    values[key] = parseSetting(setting, env)
  }
  const {
    priceVcpuSecondCents,
    priceGibSecondCents,
    pullMode,
    pullRegistries,
    cdpDiscoveryMode,
    cdpPort,
    historyDays,
    historyMax,
    auditMaxEntries,
    ...rest
  } = values as Settings
  if (!isLoopbackHost(rest.host) && !rest.adminToken) {
    // The control plane resets every tenant and reads the request journal: beyond loopback, it must not
    // be open to whoever can reach the port (sandboxes included).
    throw new Error(
      `invalid configuration: ISORUN_EMULATOR_HOST=${rest.host} listens beyond loopback, where the control plane (/_emulator) would be open to the network; set ISORUN_EMULATOR_ADMIN_TOKEN (--admin-token), or listen on localhost`,
    )
  }
  if (rest.adminPort !== 0 && rest.adminPort === rest.port) {
    throw new Error(
      `invalid configuration: ISORUN_EMULATOR_ADMIN_PORT=${rest.adminPort} is the API's port; the dashboard and the control plane need a port of their own (their own origin)`,
    )
  }
  return {
    ...rest,
    pricing: { vcpuSecondCents: priceVcpuSecondCents, gibSecondCents: priceGibSecondCents },
    pull: { mode: pullMode, registries: pullRegistries },
    cdpDiscovery: cdpDiscovery(cdpDiscoveryMode, rest.host, cdpPort),
    retention: {
      historyMaxAgeMs: Math.round(historyDays * 24 * 3600 * 1000),
      historyMaxRecords: historyMax,
      auditMaxEntries,
    },
  }
}

function parseSetting(setting: Setting, env: ConfigEnv): unknown {
  // An empty string means "unset", so `FOO= isorun-emulator` falls back to the default.
  const given = env[setting.env]
  const raw = given !== undefined && given !== '' ? given : defaultText(setting, env)
  if (raw === undefined) return undefined
  const parsed = setting.schema.safeParse(raw)
  if (parsed.success) return parsed.data
  throw new Error(`invalid configuration: ${setting.env}: ${parsed.error.issues[0]?.message}`)
}

function defaultText(setting: Setting, env: ConfigEnv): string | undefined {
  return typeof setting.default === 'function' ? setting.default(env) : setting.default
}

function cdpDiscovery(mode: 'auto' | 'on' | 'off', host: string, port: number): CdpDiscovery {
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

/**
 * Whether listening on `host` keeps the emulator to this machine. The wildcards (`0.0.0.0`, `::`) are
 * not loopback: they listen on every interface.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h)
}

/** `0.0.0.0` or `::` (in any spelling): every interface, loopback included. */
export function isWildcardHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '')
  return h === '0.0.0.0' || (isIP(h) === 6 && /^[0:]+$/.test(h))
}
