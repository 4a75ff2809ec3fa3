/**
 * What a pull's progress stream says, summed over its layers, as one line at a time for the log: a
 * pull from a reachable registry can take minutes, and the person who started the emulator should see
 * it move. Docker and Podman's compatible endpoint send the same events.
 */
export interface PullEvent {
  status?: string
  id?: string
  progressDetail?: { current?: number; total?: number }
  error?: string
}

interface Layer {
  current: number
  total: number
  done: boolean
}

/** Lines no closer together than this, but the first and the last. */
const EVERY_MS = 2_000

export class PullProgress {
  private readonly layers = new Map<string, Layer>()
  private readonly began: number
  private lastAt = Number.NEGATIVE_INFINITY
  private readonly image: string
  private readonly now: () => number

  constructor(image: string, now: () => number = () => performance.now()) {
    this.image = image
    this.now = now
    this.began = now()
  }

  /** Takes one event; returns a line to log when one is due. */
  event(e: PullEvent): string | undefined {
    const id = e.id
    const status = e.status ?? ''
    if (
      id &&
      /^(Pulling fs layer|Waiting|Downloading|Verifying Checksum|Download complete|Extracting|Pull complete|Already exists)/.test(
        status,
      )
    ) {
      const layer = this.layers.get(id) ?? { current: 0, total: 0, done: false }
      if (status === 'Downloading') {
        layer.current = e.progressDetail?.current ?? layer.current
        layer.total = e.progressDetail?.total ?? layer.total
      }
      if (/^(Download complete|Extracting|Pull complete|Already exists)/.test(status))
        layer.current = layer.total
      if (/^(Pull complete|Already exists)/.test(status)) layer.done = true
      this.layers.set(id, layer)
    }
    const t = this.now()
    if (t - this.lastAt < EVERY_MS) return undefined
    this.lastAt = t
    return this.line()
  }

  /** The closing line. */
  finished(): string {
    return `pulled ${this.image} in ${((this.now() - this.began) / 1000).toFixed(1)} s (${this.layers.size} layers, ${mb(this.sum('total'))} MB)`
  }

  private line(): string {
    const layers = [...this.layers.values()]
    const done = layers.filter((l) => l.done).length
    const total = this.sum('total')
    const bytes = total > 0 ? `, ${mb(this.sum('current'))} of ${mb(total)} MB downloaded` : ''
    return `pulling ${this.image}: ${done} of ${layers.length} layers done${bytes}`
  }

  private sum(key: 'current' | 'total'): number {
    let n = 0
    for (const l of this.layers.values()) n += l[key]
    return n
  }
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1)
}
