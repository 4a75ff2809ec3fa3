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

  on(listener: SandboxListener): () => void {
    this.listeners.push(listener)
    return () => {
      const i = this.listeners.indexOf(listener)
      if (i >= 0) this.listeners.splice(i, 1)
    }
  }

  /** Listeners run synchronously, in order; one that throws does not stop the others or the caller. */
  emit(e: SandboxEvent, onError: (err: unknown) => void): void {
    for (const l of this.listeners) {
      try {
        l(e)
      } catch (err) {
        onError(err)
      }
    }
  }
}
