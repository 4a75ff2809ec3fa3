import { randomBytes } from 'node:crypto'
import type { Clock } from './clock.ts'
import type { SandboxEngine } from './engine.ts'
import type { Logger } from './logger.ts'

/** What makes two sandboxes interchangeable before anyone owns them. */
export interface PoolKey {
  image: string
  vcpus: number
  memMib: number
}

export interface WarmPoolOptions {
  engine: SandboxEngine
  clock: Clock
  log: Logger
  /** Containers kept ready per key; 0 disables the pool. */
  size: number
  /** Keys kept warm at once (least recently used dropped first): bounds the pool's memory. */
  maxKeys: number
  /** A key not asked for in this long stops being kept warm. */
  keepMs: number
  /** Labels of every pooled container (app, instance, data dir, pool marker). */
  labels: Record<string, string>
  /**
   * True when no API call is under way and none came in a moment ago. Refills wait for it: a container
   * create costs Docker (and so the machine) CPU, which API calls should not have to share.
   */
  quiet?: () => boolean
  /** After a key's container fails to start, the first wait before trying it again (doubling each time). */
  retryMs?: number
}

interface Slot {
  key: PoolKey
  ready: string[]
  lastUsed: number
  /** Order of use, for keys used in the same millisecond (always, under a virtual clock). */
  useSeq: number
  /** Containers of this key that failed to start in a row, and when (performance.now) to try again. */
  failures: number
  retryAt: number
}

/** Pause between two refills, so that refilling yields to the API work that made it necessary. */
const REFILL_GAP_MS = 25
/** The longest wait before trying a failing key again. */
const MAX_RETRY_MS = 10 * 60_000

/**
 * Started containers kept ready per (image, vcpus, memory) that has been asked for recently, so that a
 * create hands one out at once instead of paying Docker's create + start. Refills run one container at
 * a time, in the background, with a gap between them. Pooled containers belong to nobody: never
 * listed, never billed, removed on shutdown, reaped at the next start if the emulator died.
 */
export class WarmPool {
  private readonly slots = new Map<string, Slot>()
  private readonly opts: WarmPoolOptions
  private refilling = false
  /** The refill under way, so that shutdown can wait for it (its container is then removed, not leaked). */
  private current: Promise<void> | undefined
  private closed = false
  private uses = 0

  constructor(opts: WarmPoolOptions) {
    this.opts = opts
  }

  get enabled(): boolean {
    return this.opts.size > 0
  }

  /** A ready container for `key`, or undefined (then the caller creates one cold). Either way the key is now in demand. */
  take(key: PoolKey): string | undefined {
    if (!this.enabled) return undefined
    const slot = this.slot(key)
    this.markUsed(slot)
    const containerId = slot.ready.shift()
    this.scheduleRefill()
    return containerId
  }

  /** Starts keeping `key` warm without taking anything (the default image at start). */
  prewarm(key: PoolKey): void {
    if (!this.enabled) return
    this.markUsed(this.slot(key))
    this.scheduleRefill()
  }

  /** How many containers are ready, per key (for capabilities and tests). */
  stats(): { image: string; vcpus: number; memMib: number; ready: number }[] {
    return [...this.slots.values()].map((s) => ({
      image: s.key.image,
      vcpus: s.key.vcpus,
      memMib: s.key.memMib,
      ready: s.ready.length,
    }))
  }

  /** Removes every pooled container (on shutdown). */
  async drain(): Promise<void> {
    this.closed = true
    clearTimeout(this.retryTimer)
    await this.current
    const all = [...this.slots.values()].flatMap((s) => s.ready.splice(0))
    await Promise.all(all.map((id) => this.opts.engine.remove(id).catch(() => {})))
  }

  private slot(key: PoolKey): Slot {
    const id = slotId(key)
    let slot = this.slots.get(id)
    if (!slot) {
      slot = { key, ready: [], lastUsed: this.opts.clock.now(), useSeq: ++this.uses, failures: 0, retryAt: 0 }
      this.slots.set(id, slot)
      this.evict()
    }
    return slot
  }

  private markUsed(slot: Slot): void {
    slot.lastUsed = this.opts.clock.now()
    slot.useSeq = ++this.uses
  }

  /** Drops keys beyond maxKeys (least recently used) and keys not asked for within keepMs. */
  private evict(): void {
    const now = this.opts.clock.now()
    const byAge = [...this.slots.entries()].sort(
      ([, a], [, b]) => b.lastUsed - a.lastUsed || b.useSeq - a.useSeq,
    )
    byAge.forEach(([id, slot], rank) => {
      if (rank < this.opts.maxKeys && now - slot.lastUsed <= this.opts.keepMs) return
      this.slots.delete(id)
      for (const c of slot.ready.splice(0)) void this.opts.engine.remove(c).catch(() => {})
    })
  }

  private scheduleRefill(): void {
    if (this.refilling || this.closed) return
    this.refilling = true
    const start = () => {
      if (this.closed) {
        this.refilling = false
        return
      }
      if (this.opts.quiet && !this.opts.quiet()) {
        setTimeout(start, REFILL_GAP_MS).unref()
        return
      }
      this.current = this.refill()
    }
    setTimeout(start, REFILL_GAP_MS).unref()
  }

  /**
   * Fills the emptiest slot by one container, then goes again until every warm key is full. A key
   * whose container fails to start (an image that is not there) waits before its next try, twice as
   * long each time: its creates go cold meanwhile, and the other keys are still filled.
   */
  private async refill(): Promise<void> {
    let again = false
    let slot: Slot | undefined
    try {
      this.evict()
      const now = performance.now()
      const wanting = [...this.slots.values()].filter((s) => s.ready.length < this.opts.size)
      slot = wanting.filter((s) => s.retryAt <= now).sort((a, b) => a.ready.length - b.ready.length)[0]
      if (!slot) {
        this.retryLater(wanting)
        return
      }
      if (this.closed) return
      const containerId = await this.opts.engine.createPooled({
        poolId: `pool${randomBytes(8).toString('hex')}`,
        image: slot.key.image,
        vcpus: slot.key.vcpus,
        memMib: slot.key.memMib,
        labels: this.opts.labels,
      })
      if (this.closed || !this.slots.has(slotId(slot.key))) {
        await this.opts.engine.remove(containerId)
        return
      }
      if (slot.failures > 0)
        this.opts.log.info({ image: slot.key.image }, `warm pool: ${slot.key.image} starts again`)
      slot.failures = 0
      slot.ready.push(containerId)
      again = true
    } catch (err) {
      if (slot) this.failed(slot, err)
      again = true
    } finally {
      this.refilling = false
      if (again) this.scheduleRefill()
    }
  }

  /** Backs a failing key off; says so once per run of failures, in one line (no stack trace). */
  private failed(slot: Slot, err: unknown): void {
    const wait = Math.min((this.opts.retryMs ?? 30_000) * 2 ** slot.failures, MAX_RETRY_MS)
    slot.failures++
    slot.retryAt = performance.now() + wait
    const why = err instanceof Error ? err.message : String(err)
    const data = { image: slot.key.image, failures: slot.failures, retryInMs: wait }
    if (slot.failures === 1) {
      this.opts.log.warn(
        data,
        `warm pool: cannot start a container of ${slot.key.image} (${why}); its creates go cold, and the pool tries again less and less often (up to every ${MAX_RETRY_MS / 60_000} min)`,
      )
    } else this.opts.log.debug(data, `warm pool: ${slot.key.image} still cannot start (${why})`)
  }

  /** When every key that wants a container is backing off, one timer for the first of them to retry. */
  private retryTimer: NodeJS.Timeout | undefined
  private retryLater(waiting: Slot[]): void {
    if (waiting.length === 0 || this.closed || this.retryTimer) return
    const next = Math.min(...waiting.map((s) => s.retryAt))
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = undefined
        this.scheduleRefill()
      },
      Math.max(0, next - performance.now()),
    )
    this.retryTimer.unref()
  }
}

function slotId(key: PoolKey): string {
  return `${key.image}|${key.vcpus}|${key.memMib}`
}
