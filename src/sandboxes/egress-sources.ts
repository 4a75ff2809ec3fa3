import type { GuestAddresses } from './addresses.ts'
import type { SandboxEvents } from './events.ts'
import type { SandboxRegistry } from './registry.ts'
import type { Sandbox } from './sandbox.ts'

/** A destination the egress proxy refused. */
export interface BlockedDestination {
  host: string
  port: number
  method: string
  reason: string
}

/**
 * The sandboxes as the egress proxy sees them: a connection is known only by its source address on the
 * isolated network, and a refusal becomes an event of the sandbox it came from.
 */
export class EgressSources {
  private readonly registry: SandboxRegistry
  private readonly addresses: GuestAddresses
  private readonly events: SandboxEvents

  constructor(registry: SandboxRegistry, addresses: GuestAddresses, events: SandboxEvents) {
    this.registry = registry
    this.addresses = addresses
    this.events = events
  }

  /** The running sandbox with an egress policy at `address` (its IP on the isolated network). */
  async at(address: string): Promise<Sandbox | undefined> {
    for (const s of this.registry.all()) {
      if (!s.egress || s.status !== 'running') continue
      const at = await this.addresses.get(s.containerId).catch(() => undefined)
      if (at !== address) continue
      // The policy is judged by this answer: the engine must say so now, not only the cache (a stopped
      // container's address goes to the next container, which must not be taken for it).
      const now = await this.addresses.fresh(s.containerId).catch(() => undefined)
      if (now === address && s.status === 'running') return s
    }
    return undefined
  }

  /** A 'network.blocked' event (the audit log records it). */
  blocked(s: Sandbox, blocked: BlockedDestination): void {
    this.events.emit('network.blocked', s, { ...blocked })
  }
}
