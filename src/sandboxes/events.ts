import type { Clock } from './clock.ts'
import type { EgressPolicy } from './egress-enforcer.ts'
import type { Logger } from './logger.ts'
import type { DestroyReason, Sandbox } from './sandbox.ts'

/**
 * What happens to sandboxes, as the domain announces it. The audit log, usage history and the proxy's
 * connection pools listen here instead of being called from inside the lifecycle code. What each event
 * says beside its sandbox is below; it never holds credentials. (The audit log's own format for these
 * payloads is in src/audit/audit-data.ts.)
 */
export interface SandboxEventData {
  'sandbox.created': {
    image: string
    vcpus: number
    memMib: number
    diskMib: number
    timeoutSec: number
    credentialNames: string[]
    egress?: EgressPolicy
  }
  'sandbox.destroyed': {
    reason: DestroyReason
    cpuMs: number
    memPeakBytes: number
    uptimeMs: number
    costCents: number
    /** Uptime that was billed (hibernation excluded). */
    billableMs: number
  }
  'exec.start': { command: string; timeoutSec: number }
  'exec.end': {
    exitCode: number
    timedOut: boolean
    durationMs: number
    stdoutBytes: number
    stderrBytes: number
  }
  'file.write': { path: string; size: number }
  'timeout.set': { timeoutSec: number }
  'snapshot.created': { snapshotId: string; sizeBytes: number; memory: boolean }
  /** A new sandbox from a snapshot, or one child of a fork. */
  'sandbox.restored': { snapshotId: string; memory: boolean } | { forkedFrom: string; memory: boolean }
  'sandbox.forked': { count: number; children: string[]; failed: number; memory: boolean }
  'sandbox.hibernated': { memory: boolean }
  'sandbox.resumed': Record<string, never>
  /** Its container stopped without being asked to (see exits.ts). */
  'sandbox.exited': { reason: 'exited' | 'oom'; exitCode: number | undefined }
  'proxy.opened': { port: number }
  'network.blocked': { host: string; port: number; method: string; reason: string }
}

export type SandboxEventName = keyof SandboxEventData

/** One event; `data` is typed by `event`. */
export type SandboxEvent = {
  [K in SandboxEventName]: { event: K; sandbox: Sandbox; at: number; data: SandboxEventData[K] }
}[SandboxEventName]

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
  emit<K extends SandboxEventName>(event: K, sandbox: Sandbox, data: SandboxEventData[K]): void {
    const e = { event, sandbox, at: this.clock.now(), data } as SandboxEvent
    for (const l of this.listeners) {
      try {
        l(e)
      } catch (err) {
        this.log.error({ runId: sandbox.id, event, err }, 'sandbox event listener failed')
      }
    }
  }
}
