import { join } from 'node:path'
import type { SandboxEvents } from '../sandboxes/events.ts'
import { appendJsonLine, readJsonLines, type WriteOptions, writeFileAtomic } from '../store/files.ts'

/**
 * A destroyed sandbox, with the same figures its destroy returned: one line of history.jsonl, whose names
 * are the wire's (the SDK reads the same fields).
 */
export interface HistoryRecord {
  owner: string
  id: string
  image: string
  vcpus: number
  mem_mib: number
  create_ms: number
  created_at: string
  destroyed_at: string
  uptime_ms: number
  cpu_ms: number
  mem_peak_bytes: number
  cost_cents: number
  /** Uptime that was billed (hibernation excluded): what cpu_seconds and mem_seconds are made of. */
  billable_ms: number
  reason: string
}

/** How long history is kept: records past either limit are dropped, oldest first. 0 = no limit. */
export interface HistoryRetention {
  maxAgeMs: number
  maxRecords: number
}

export interface HistoryOptions {
  writes?: WriteOptions
  retention?: HistoryRetention
  now?: () => number
  /** Called with the records retention drops (their audit logs go with them). */
  onDrop?: (dropped: HistoryRecord[]) => void
}

/**
 * Every destroyed sandbox, API or idle timeout alike, in an append-only `<data dir>/history.jsonl`: an
 * append per destroy is all the durability it needs, and it survives any restart. In memory the
 * records are indexed by key, so a key's list, usage and lookups never walk other keys' records (the
 * dashboard asks every second). Retention drops the oldest records by age and count; the file is
 * rewritten (atomically) once the dropped ones add up to a tenth of what is kept, and at start.
 */
export class HistoryStore {
  private readonly file: string
  /** Every record in the order written (oldest first), and the same records by key and by run id. */
  private readonly records: HistoryRecord[] = []
  private readonly byOwner = new Map<string, HistoryRecord[]>()
  private readonly byId = new Map<string, HistoryRecord>()
  private readonly writes: WriteOptions
  private readonly retention: HistoryRetention
  private readonly now: () => number
  private readonly onDrop: (dropped: HistoryRecord[]) => void
  /** Records dropped from memory but still in the file. */
  private droppedInFile = 0

  constructor(dataDir: string, options: HistoryOptions = {}) {
    this.file = join(dataDir, 'history.jsonl')
    this.writes = options.writes ?? {}
    this.retention = options.retention ?? { maxAgeMs: 0, maxRecords: 0 }
    this.now = options.now ?? Date.now
    this.onDrop = options.onDrop ?? (() => undefined)
    for (const r of readJsonLines<HistoryRecord>(this.file)) this.index(r)
    this.expire()
    if (this.droppedInFile > 0) this.compact()
  }

  /** Records each 'sandbox.destroyed' event. */
  follow(events: SandboxEvents): void {
    events.on((e) => {
      if (e.event !== 'sandbox.destroyed') return
      const d = e.data
      const s = e.sandbox
      this.add({
        owner: s.owner,
        id: s.id,
        image: s.image,
        vcpus: s.vcpus,
        mem_mib: s.memMib,
        create_ms: s.createMs,
        created_at: new Date(s.createdAt).toISOString(),
        destroyed_at: new Date(e.at).toISOString(),
        uptime_ms: d.uptimeMs,
        cpu_ms: d.cpuMs,
        mem_peak_bytes: d.memPeakBytes,
        cost_cents: d.costCents,
        billable_ms: d.billableMs,
        reason: d.reason,
      })
    })
  }

  add(record: HistoryRecord): void {
    appendJsonLine(this.file, record, this.writes)
    this.index(record)
    this.expire()
  }

  /** The key's destroyed sandboxes, newest first. */
  list(owner: string): HistoryRecord[] {
    this.expire()
    return [...(this.byOwner.get(owner) ?? [])].reverse()
  }

  /** The keys (hashes) with destroyed sandboxes on record. */
  owners(): string[] {
    this.expire()
    return [...this.byOwner.keys()]
  }

  get(owner: string, id: string): HistoryRecord | undefined {
    this.expire()
    const r = this.byId.get(id)
    return r?.owner === owner ? r : undefined
  }

  has(id: string): boolean {
    return this.byId.has(id)
  }

  private index(r: HistoryRecord): void {
    this.records.push(r)
    const own = this.byOwner.get(r.owner)
    if (own) own.push(r)
    else this.byOwner.set(r.owner, [r])
    this.byId.set(r.id, r)
  }

  /** Drops the records past retention from memory (the file follows in batches). */
  private expire(): void {
    const { maxAgeMs, maxRecords } = this.retention
    const cutoff = maxAgeMs > 0 ? this.now() - maxAgeMs : Number.NEGATIVE_INFINITY
    const dropped: HistoryRecord[] = []
    for (;;) {
      const oldest = this.records[0]
      if (!oldest) break
      const tooMany = maxRecords > 0 && this.records.length > maxRecords
      if (!tooMany && !(Date.parse(oldest.destroyed_at) < cutoff)) break
      this.records.shift()
      this.unindex(oldest)
      dropped.push(oldest)
    }
    if (dropped.length === 0) return
    this.droppedInFile += dropped.length
    if (this.droppedInFile >= Math.max(1, this.records.length / 10)) this.compact()
    this.onDrop(dropped)
  }

  private unindex(r: HistoryRecord): void {
    const own = this.byOwner.get(r.owner)
    // Records leave in the order they came, so a key's oldest is at the head of its list.
    if (own?.[0] === r) own.shift()
    else if (own) own.splice(own.indexOf(r), 1)
    if (own?.length === 0) this.byOwner.delete(r.owner)
    if (this.byId.get(r.id) === r) this.byId.delete(r.id)
  }

  /** Rewrites the file with the records kept, atomically. */
  private compact(): void {
    writeFileAtomic(this.file, this.records.map((r) => `${JSON.stringify(r)}\n`).join(''), this.writes)
    this.droppedInFile = 0
  }
}
