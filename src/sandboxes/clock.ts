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
