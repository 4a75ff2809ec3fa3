/**
 * One lifecycle operation at a time per sandbox (snapshot, fork, hibernate, resume, destroy): each
 * waits for the one before it. Exec and file calls do not take the lock, but wait for it to be free, so
 * they never hit a sandbox that is paused for a checkpoint.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>()

  async run<T>(key: string, op: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve()
    const result = before.catch(() => undefined).then(op)
    const tail = result.catch(() => undefined)
    this.tails.set(key, tail)
    try {
      return await result
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  /** Resolves once no operation holds or waits for the key. */
  async idle(key: string): Promise<void> {
    for (let tail = this.tails.get(key); tail; tail = this.tails.get(key)) await tail
  }

  busy(key: string): boolean {
    return this.tails.has(key)
  }
}
