import { join } from 'node:path'
import type { SandboxEvents } from '../sandboxes/events.ts'
import { appendJsonLine, readJsonLines, type WriteOptions } from '../store/files.ts'

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

/**
 * Every destroyed sandbox, API or idle timeout alike, in an append-only `<data dir>/history.jsonl`: an
 * append per destroy is all the durability it needs, and it survives any restart.
 */
export class HistoryStore {
  private readonly file: string
  private readonly records: HistoryRecord[]

  private readonly writes: WriteOptions

  constructor(dataDir: string, writes: WriteOptions = {}) {
    this.file = join(dataDir, 'history.jsonl')
    this.writes = writes
    this.records = readJsonLines<HistoryRecord>(this.file)
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
    this.records.push(record)
  }

  /** The key's destroyed sandboxes, newest first. */
  list(owner: string): HistoryRecord[] {
    return this.records.filter((r) => r.owner === owner).reverse()
  }

  get(owner: string, id: string): HistoryRecord | undefined {
    return this.records.find((r) => r.owner === owner && r.id === id)
  }
}
