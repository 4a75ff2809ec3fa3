import type { Clock } from './clock.ts'
import type { Logger } from './logger.ts'
import type { Sandbox } from './sandbox.ts'

/**
 * What happens to sandboxes, as the domain announces it. The audit log, usage history and the proxy's
 * connection pools listen here instead of being called from inside the lifecycle code.
 * `data` never holds credentials.
 */
export type SandboxEventName =
  | 'sandbox.created'
  | 'sandbox.destroyed'
  | 'exec.start'
  | 'exec.end'
  | 'file.write'
  | 'file.read'
  | 'dir.list'
  | 'timeout.set'
  | 'snapshot.created'
  | 'sandbox.restored'
  | 'sandbox.forked'
  | 'sandbox.hibernated'
  | 'sandbox.resumed'
  | 'proxy.opened'
  | 'network.blocked'

export interface SandboxEvent {
  event: SandboxEventName
  sandbox: Sandbox
  at: number
  data: Record<string, unknown>
}

export type SandboxListener = (e: SandboxEvent) => void

export class SandboxEvents {
  private readonly listeners: SandboxListener[] = []
  private readonly clock: Clock
  private readonly log: Logger

  constructor(clock: Clock, log: Logger) {
    this.clock = clock
    this.log = log
  }

  on(listener: SandboxListener): () => void {
    this.listeners.push(listener)
    return () => {
      const i = this.listeners.indexOf(listener)
      if (i >= 0) this.listeners.splice(i, 1)
    }
  }

  /** Listeners run synchronously, in order; one that throws is logged and stops neither the others nor the caller. */
  emit(event: SandboxEventName, sandbox: Sandbox, data: Record<string, unknown> = {}): void {
    const e: SandboxEvent = { event, sandbox, at: this.clock.now(), data }
    for (const l of this.listeners) {
      try {
        l(e)
      } catch (err) {
        this.log.error({ runId: sandbox.id, event, err }, 'sandbox event listener failed')
      }
    }
  }
}
