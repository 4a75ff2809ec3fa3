import type { SandboxEngine } from './engine.ts'
import type { SandboxEventName, SandboxEvents } from './events.ts'

/**
 * Where each sandbox's own ports are reached, asked of the engine once per container and remembered, so
 * that proxied requests (url(port)) cost no engine round trip. An entry is dropped when the lifecycle
 * may have moved the sandbox to another address (destroy, hibernate, resume, restore) or its container
 * stopped (the engine gives the address to the next container). Remembering is safe only while the
 * engine's stops are followed (`trusted`); while they are not, every lookup asks the engine.
 */
const STALE_AFTER: ReadonlySet<SandboxEventName> = new Set([
  'sandbox.destroyed',
  'sandbox.hibernated',
  'sandbox.resumed',
  'sandbox.restored',
  'sandbox.exited',
])

export class GuestAddresses {
  private readonly byContainer = new Map<string, Promise<string>>()
  private readonly engine: SandboxEngine
  private readonly trusted: () => boolean

  constructor(engine: SandboxEngine, events: SandboxEvents, trusted: () => boolean = () => true) {
    this.engine = engine
    this.trusted = trusted
    events.on((e) => {
      if (STALE_AFTER.has(e.event)) this.byContainer.delete(e.sandbox.containerId)
    })
  }

  get(containerId: string): Promise<string> {
    if (!this.trusted()) return this.fresh(containerId)
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

  /** Asks the engine now (the container's address as of this moment), and remembers the answer. */
  fresh(containerId: string): Promise<string> {
    this.byContainer.delete(containerId)
    const address = this.engine.address(containerId)
    address.then(
      () => {
        if (!this.byContainer.has(containerId)) this.byContainer.set(containerId, address)
      },
      () => undefined,
    )
    return address
  }
}
