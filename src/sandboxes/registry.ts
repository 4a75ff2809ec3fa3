import { type EmulatorError, Errors } from '../errors.ts'
import type { Clock } from './clock.ts'
import { IdleTimers } from './idle-timers.ts'
import { KeyedLock } from './locks.ts'
import type { Sandbox } from './sandbox.ts'
import type { SandboxStateStore } from './state-store.ts'

export interface SandboxRegistryOptions {
  clock: Clock
  /** Each live sandbox's record on disk, so a restart (even SIGKILL) loses nothing. */
  records: SandboxStateStore
  /** A running sandbox's idle timer fired and nothing holds it: nothing in flight, no lifecycle operation. */
  onIdle: (s: Sandbox) => void
}

/**
 * The live sandboxes of this instance and what every operation on one needs: who may see it, its
 * activity and idle timer, its record on disk, and the lock that keeps lifecycle operations (snapshot,
 * fork, hibernate, resume, destroy) one at a time per sandbox.
 */
export class SandboxRegistry {
  private readonly byId = new Map<string, Sandbox>()
  private readonly clock: Clock
  private readonly records: SandboxStateStore
  private readonly idle: IdleTimers
  /** Exec and file calls do not take it, but wait while it is held (see GuestOperations). */
  readonly locks = new KeyedLock()

  constructor(opts: SandboxRegistryOptions) {
    this.clock = opts.clock
    this.records = opts.records
    this.idle = new IdleTimers(opts.clock, (s) => {
      if (!this.isLive(s) || !timed(s)) return
      // An operation still running keeps the sandbox alive; its end re-arms the timer.
      if (s.inFlight > 0 || this.locks.busy(s.id)) return
      opts.onIdle(s)
    })
  }

  /** Registers a sandbox; a running one gets its idle timer (from its last recorded activity). */
  add(s: Sandbox): void {
    this.byId.set(s.id, s)
    if (timed(s)) this.idle.arm(s)
  }

  /** Forgets a destroyed sandbox, its record on disk included. */
  remove(id: string): void {
    this.idle.cancel(id)
    this.byId.delete(id)
    this.records.delete(id)
  }

  /** The caller's sandbox; another key's sandbox is indistinguishable from a missing one (404). */
  get(owner: string, id: string): Sandbox {
    const s = this.byId.get(id)
    if (!s || s.owner !== owner) throw Errors.runNotFound(id)
    return s
  }

  /** A sandbox by id alone, whoever owns it: only for callers whose credential is the id itself (url(port)). */
  find(id: string): Sandbox | undefined {
    return this.byId.get(id)
  }

  /** The key's sandboxes, except those being destroyed. */
  list(owner: string): Sandbox[] {
    return this.all().filter((s) => s.owner === owner && s.status !== 'destroying')
  }

  /** Every sandbox of every key, those being destroyed included. */
  all(): Sandbox[] {
    return [...this.byId.values()]
  }

  has(id: string): boolean {
    return this.byId.has(id)
  }

  /** Whether `s` is still the registered sandbox of its id (not destroyed meanwhile). */
  isLive(s: Sandbox): boolean {
    return this.byId.get(s.id) === s
  }

  /** Throws unless `s` is live and its container has not exited (409: it can only be destroyed). */
  assertAlive(s: Sandbox): void {
    if (!this.isLive(s) || s.status === 'destroying') throw Errors.runNotFound(s.id)
    if (s.status === 'exited') throw exitedError(s)
  }

  /**
   * Marks activity on a sandbox, which restarts its idle timer (a hibernated one has none): exec, files,
   * url(port) traffic, state operations and setTimeout. Reads (get, list, audit, history) are not.
   */
  touch(owner: string, id: string): Sandbox {
    const s = this.get(owner, id)
    s.lastActivityAt = this.clock.now()
    if (timed(s)) this.idle.arm(s)
    this.records.saveActivity(s)
    return s
  }

  /** (Re)starts the idle timer from the sandbox's last activity. */
  arm(s: Sandbox): void {
    this.idle.arm(s)
  }

  disarm(id: string): void {
    this.idle.cancel(id)
  }

  /** Writes the sandbox's record after a lifecycle change. */
  save(s: Sandbox): void {
    this.records.save(s)
  }

  /** Stops the idle timers; sandboxes keep running and are adopted by the next start. */
  close(): void {
    this.idle.cancelAll()
  }
}

/** Running sandboxes have an idle timer, and so do exited ones: the timeout clears them away too. */
function timed(s: Sandbox): boolean {
  return s.status === 'running' || s.status === 'exited'
}

/** The answer to work asked of a sandbox whose container has stopped: only destroy is left. */
export function exitedError(s: Sandbox): EmulatorError {
  const how =
    s.exit?.reason === 'oom'
      ? 'the OOM killer ended its main process'
      : `its main process ended${s.exit?.exitCode === undefined ? '' : ` (exit code ${s.exit.exitCode})`}`
  return Errors.conflict(`sandbox ${s.id} has exited: ${how}; destroy it`, {
    id: s.id,
    status: 'exited',
    reason: s.exit?.reason ?? 'exited',
    exit_code: s.exit?.exitCode ?? null,
  })
}
