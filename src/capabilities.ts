import type { Config } from './config.ts'
import type { EgressStatus } from './egress/gateway.ts'
import { type AbilityTable, ENGINE_ABILITIES } from './engine-abilities.ts'
import { type ImageMapEntry, STAND_INS } from './images/image-map.ts'
import type { EngineInfo, MemorySupport } from './sandboxes/engine.ts'
import type { SandboxLimits } from './sandboxes/quotas.ts'

/**
 * What this engine can really do, reported at GET /_emulator/capabilities and logged at start, so that
 * nothing the emulator cannot deliver is pretended.
 */
export interface Capabilities {
  engine: EngineInfo | null
  /** What each engine can do on this host and on another (this one's case: `engine` and the rest). */
  engines: AbilityTable
  limits: {
    cpu: boolean
    memory: boolean
    disk: boolean
    disk_note: string
    /** The most one sandbox may ask for (more: a 400 naming the field). */
    per_sandbox: { vcpus: number; mem_mib: number }
    /** What one API key's sandboxes may hold together (more: 429 quota_exceeded). */
    per_key: { sandboxes: number; vcpus: number; mem_mib: number }
  }
  exec: {
    output_limit_bytes: number
    timeout_kills_process_tree: boolean
    /**
     * Whether new sandboxes run exec and files through their agent (src/agent) rather than the engine's
     * exec and archive API; each sandbox's own transport is at GET /_emulator/runs/{id}/exec-transport.
     */
    transport: { agent: boolean; reason: string }
  }
  memory_state: {
    /** CRIU checkpoints work here: snapshot, fork and hibernate keep processes and memory. */
    criu: boolean
    reason: string
    snapshot: 'files+memory' | 'files'
    fork: 'files+memory' | 'files'
    hibernate: 'checkpoint' | 'pause'
    /** Strict mode: what cannot keep memory fails with 409 instead of degrading. */
    strict: boolean
  }
  /** Egress policies (network, network_profile), as of the moment asked (see describeEgress). */
  egress: EgressCapability
  /** url(port)'s fast lane (src/proxy/fast): ordinary proxied requests skip Node's HTTP server and client. */
  proxy_fast_lane: boolean
  /** DevTools discovery at the emulator's root (/json/version), for clients that drop url(port)'s prefix. */
  cdp_root_discovery: { enabled: boolean; port: number; why: string }
  /** The image map: the local image that runs for each name a create may give (docs/images.md). */
  image_map: { requested: string; image: string; from: string }[]
}

export interface EgressCapability {
  /** Policies are enforced (not merely recorded) by this engine. */
  enforced: boolean
  how: string
  /** Where guests find the egress proxy (and its address once it runs). */
  proxy: string
  /** The isolated network, once the first sandbox with a policy has made it. */
  network: string | null
  proxied: string
  not_proxied: string
  ip_rules: string
  dns: string
  /** Whether the host's other ports are closed to sandboxes with a policy; null until the network exists. */
  host_firewall: boolean | null
  note: string
}

/** What capabilities are made of: the engine's answers at start, the settings, egress as of now. */
export interface CapabilityFacts {
  /** What the engine said at start (null: not asked, as in tests on the fake engine). */
  engine: EngineInfo | null
  memory: MemorySupport
  /** Whether new sandboxes get an agent (left out: the engine has none). */
  agent?: { enabled: boolean; reason: string }
  config: Pick<Config, 'execOutputLimit' | 'strict' | 'fastProxy' | 'cdpDiscovery'>
  egressStatus: EgressStatus
  limits: SandboxLimits
  /** The image map's entries (none: no map). */
  images?: ImageMapEntry[]
}

/** What egress enforcement does here, for GET /_emulator/capabilities. */
function describeEgress(status: EgressStatus): EgressCapability {
  return {
    enforced: status.available,
    how: "a sandbox with a policy joins an isolated network (no route out, no traffic between sandboxes: Docker's internal network; on Podman a bridge whose forwarding the host firewall drops) whose only way out is the egress proxy; sandboxes without a policy use the usual network, unchanged",
    proxy: status.proxy,
    network: status.network,
    proxied:
      'HTTP (absolute-form requests) and CONNECT tunnels (HTTPS, anything tunnelled) from clients that honour HTTP_PROXY/HTTPS_PROXY, judged per request against the policy',
    not_proxied: 'every other packet (raw TCP, UDP, ICMP) to anywhere off the isolated network is dropped',
    ip_rules:
      'IP and CIDR rules match the address a proxied destination resolves to (on the host); they apply to proxied traffic only',
    dns: 'inside the sandbox only /etc/hosts names (localhost, isorun-egress) resolve, plus (on Docker) Docker DNS names of containers on the isolated network (which it cannot reach); outside names fail after about a second (no DNS server is reachable off the isolated network); the proxy resolves destinations on the host',
    host_firewall: status.host_firewall,
    note: status.note,
  }
}

export function describeCapabilities({
  engine,
  memory,
  agent,
  config,
  egressStatus,
  limits,
  images = [],
}: CapabilityFacts): Capabilities {
  return {
    engine,
    engines: ENGINE_ABILITIES,
    limits: {
      cpu: true,
      memory: true,
      disk: false,
      disk_note:
        "disk_mib is recorded and reported but not enforced: Docker can cap a container's writable layer only on overlay2 over xfs with project quotas" +
        (engine ? ` (this engine: ${engine.storageDriver} on ${engine.backingFs ?? 'unknown fs'})` : ''),
      per_sandbox: { vcpus: limits.perSandbox.vcpus, mem_mib: limits.perSandbox.memMib },
      per_key: {
        sandboxes: limits.perKey.sandboxes,
        vcpus: limits.perKey.vcpus,
        mem_mib: limits.perKey.memMib,
      },
    },
    exec: {
      output_limit_bytes: config.execOutputLimit,
      timeout_kills_process_tree: true,
      transport: agent
        ? { agent: agent.enabled, reason: agent.reason }
        : { agent: false, reason: 'this engine has no agent: exec and files use its own exec' },
    },
    memory_state: {
      criu: memory.available,
      reason: memory.available
        ? memory.reason
        : `${memory.reason}; snapshots and forks keep files only, hibernate pauses the container`,
      snapshot: memory.available ? 'files+memory' : 'files',
      fork: memory.available ? 'files+memory' : 'files',
      hibernate: memory.available ? 'checkpoint' : 'pause',
      strict: config.strict,
    },
    egress: describeEgress(egressStatus),
    proxy_fast_lane: config.fastProxy,
    cdp_root_discovery: config.cdpDiscovery,
    image_map: images.map((e) => ({
      requested: e.requested,
      image: e.image,
      from: e.standIn ? `built-in stand-in: ${STAND_INS[e.standIn].made}` : 'ISORUN_EMULATOR_IMAGE_MAP',
    })),
  }
}
