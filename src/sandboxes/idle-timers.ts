import type { Clock } from './clock.ts'
import type { Sandbox } from './sandbox.ts'

/**
 * One idle timer per sandbox: it fires `timeoutSec` after the last API activity. Re-arming costs a
 * clearTimeout and a setTimeout, cheap enough to do on every request.
 */
export class IdleTimers {
  private readonly timers = new Map<string, () => void>()
  private readonly clock: Clock
  private readonly onIdle: (s: Sandbox) => void

  constructor(clock: Clock, onIdle: (s: Sandbox) => void) {
    this.clock = clock
    this.onIdle = onIdle
  }

  arm(s: Sandbox): void {
    this.cancel(s.id)
    if (s.timeoutSec <= 0) return
    const due = s.lastActivityAt + s.timeoutSec * 1000
    this.timers.set(
      s.id,
      this.clock.schedule(Math.max(0, due - this.clock.now()), () => {
        this.timers.delete(s.id)
        this.onIdle(s)
      }),
    )
  }

  cancel(id: string): void {
    this.timers.get(id)?.()
    this.timers.delete(id)
  }

  cancelAll(): void {
    for (const cancel of this.timers.values()) cancel()
    this.timers.clear()
  }
}
