import { Errors } from '../errors.ts'
import type { GuestAddresses } from './addresses.ts'
import type { Clock } from './clock.ts'
import type { SandboxEvents } from './events.ts'
import { exitedError, type SandboxRegistry } from './registry.ts'
import type { Sandbox } from './sandbox.ts'

/** What url(port) needs to reach a sandbox's own ports. */
export interface ProxyTarget {
  sandbox: Sandbox
  /** The sandbox's address on the engine's network. */
  address: string
}

/** Proxy traffic re-arms the idle timer at most this often (it arrives per request and per chunk). */
const PROXY_ACTIVITY_GRANULARITY_MS = 1000

export interface ProxyTargetsOptions {
  clock: Clock
  events: SandboxEvents
  registry: SandboxRegistry
  addresses: GuestAddresses
}

/**
 * The sandboxes as url(port) sees them: found by id alone (the URL embeds the unguessable run id and is
 * itself the credential), reached at their address, their proxied traffic counted as activity.
 */
export class ProxyTargets {
  private readonly opts: ProxyTargetsOptions
  private readonly openedPorts = new WeakMap<Sandbox, Set<number>>()

  constructor(opts: ProxyTargetsOptions) {
    this.opts = opts
  }

  /** The sandbox `id`, whoever owns it. Only a running sandbox has ports to reach. */
  async target(id: string): Promise<ProxyTarget> {
    const s = this.opts.registry.find(id)
    if (!s) throw Errors.runNotFound(id)
    if (s.status === 'exited') throw exitedError(s)
    if (s.status !== 'running') {
      throw Errors.conflict(
        `sandbox ${id} is ${s.status === 'destroying' ? 'being destroyed' : s.status}, not running: its ports cannot be reached`,
        { id, status: s.status },
      )
    }
    return { sandbox: s, address: await this.opts.addresses.get(s.containerId) }
  }

  /**
   * Every running sandbox with its address, whoever owns it, for requests that name no sandbox: root
   * DevTools discovery looks among them for the one browser. A sandbox whose address cannot be read
   * (being torn down) is left out.
   */
  async running(): Promise<ProxyTarget[]> {
    const running = this.opts.registry.all().filter((s) => s.status === 'running')
    const targets = await Promise.all(
      running.map(async (sandbox) => {
        const address = await this.opts.addresses.get(sandbox.containerId).catch(() => undefined)
        return address ? { sandbox, address } : undefined
      }),
    )
    return targets.filter((t): t is ProxyTarget => t !== undefined)
  }

  /** The guest answered on `port`: the first time per sandbox and port is a 'proxy.opened' event. */
  noteOpened(s: Sandbox, port: number): void {
    let ports = this.openedPorts.get(s)
    if (!ports) {
      ports = new Set()
      this.openedPorts.set(s, ports)
    }
    if (ports.has(port)) return
    ports.add(port)
    this.opts.events.emit('proxy.opened', s, { port })
  }

  /**
   * Proxy traffic is activity. Called per request and per streamed chunk, so it only re-arms the idle
   * timer when a second has passed since the last activity (the timeout then fires at most that early).
   */
  noteTraffic(s: Sandbox): void {
    const now = this.opts.clock.now()
    if (now - s.lastActivityAt < PROXY_ACTIVITY_GRANULARITY_MS) return
    if (s.status !== 'running' || !this.opts.registry.isLive(s)) return
    s.lastActivityAt = now
    this.opts.registry.arm(s)
  }
}
