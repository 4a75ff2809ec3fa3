/**
 * Time as the domain sees it. Idle timers and billing read this, never Date.now() or setTimeout
 * directly, so that a virtual clock can drive them in tests.
 */
export interface Clock {
  now(): number
  /** Calls `fn` once after `ms`; the returned function cancels it. */
  schedule(ms: number, fn: () => void): () => void
}

export const realClock: Clock = {
  now: () => Date.now(),
  schedule(ms, fn) {
    const timer = setTimeout(fn, ms)
    timer.unref()
    return () => clearTimeout(timer)
  },
}

/**
 * A clock that moves only when told (`--clock virtual`): idle timeouts fire and costs accrue by it, so
 * a test of "auto-destroys after 300 s" takes milliseconds and costs the same every run.
 */
export class VirtualClock implements Clock {
  private current: number
  private readonly timers: { due: number; fn: () => void; id: number }[] = []
  private nextId = 0

  constructor(start = Date.now()) {
    this.current = start
  }

  now(): number {
    return this.current
  }

  schedule(ms: number, fn: () => void): () => void {
    const id = this.nextId++
    this.timers.push({ due: this.current + Math.max(0, ms), fn, id })
    return () => {
      const i = this.timers.findIndex((t) => t.id === id)
      if (i >= 0) this.timers.splice(i, 1)
    }
  }

  /** Moves time forward, firing every timer that falls due, in order, each at its own instant. */
  advance(ms: number): number {
    const target = this.current + ms
    for (;;) {
      this.timers.sort((a, b) => a.due - b.due || a.id - b.id)
      const next = this.timers[0]
      if (!next || next.due > target) break
      this.timers.shift()
      this.current = Math.max(this.current, next.due)
      next.fn()
    }
    this.current = target
    return this.current
  }
}
