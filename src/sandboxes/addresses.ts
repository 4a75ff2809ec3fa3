import type { SandboxEngine } from './engine.ts'
import type { SandboxEventName, SandboxEvents } from './events.ts'

/**
 * Where each sandbox's own ports are reached, asked of the engine once per container and remembered, so
 * that proxied requests (url(port)) cost no engine round trip. An entry is dropped when the lifecycle
 * may have moved the sandbox to another address (destroy, hibernate, resume, restore).
 */
const STALE_AFTER: ReadonlySet<SandboxEventName> = new Set([
  'sandbox.destroyed',
  'sandbox.hibernated',
  'sandbox.resumed',
  'sandbox.restored',
])

export class GuestAddresses {
  private readonly byContainer = new Map<string, Promise<string>>()
  private readonly engine: SandboxEngine

  constructor(engine: SandboxEngine, events: SandboxEvents) {
    this.engine = engine
    events.on((e) => {
      if (STALE_AFTER.has(e.event)) this.byContainer.delete(e.sandbox.containerId)
    })
  }

  get(containerId: string): Promise<string> {
    let address = this.byContainer.get(containerId)
    if (!address) {
      address = this.engine.address(containerId)
      this.byContainer.set(containerId, address)
      // A failed lookup is not remembered: the next request asks again.
      address.catch(() => {
        if (this.byContainer.get(containerId) === address) this.byContainer.delete(containerId)
      })
    }
    return address
  }
}
