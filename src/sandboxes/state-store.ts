import { mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { DIR_MODE, readJson, removeFile, type WriteOptions, writeJsonAtomic } from '../store/files.ts'
import type { Sandbox } from './sandbox.ts'

/**
 * A sandbox as it must survive a restart: everything but the credential values (which stay in the
 * container's environment) and what is only meaningful in a running process (operations in flight).
 * Container labels cannot change after create (and a pooled container is labelled before it has an
 * owner), so this file, not the labels, is the record.
 */
export type PersistedSandbox = Omit<Sandbox, 'inFlight' | 'secrets' | 'status'> & {
  status: 'running' | 'hibernated' | 'exited'
}

/** Activity timestamps are written at most this often (they change on every request). */
const ACTIVITY_WRITE_INTERVAL_MS = 1000

/**
 * One small JSON file per live sandbox under `<data dir>/sandboxes/`, replaced atomically on every
 * lifecycle change. A container of this instance without a file is one whose create never completed or
 * whose destroy was cut short: the next start reaps it.
 */
export class SandboxStateStore {
  private readonly dir: string
  private readonly lastActivityWrite = new Map<string, number>()

  private readonly writes: WriteOptions

  constructor(dataDir: string, writes: WriteOptions = {}) {
    this.dir = join(dataDir, 'sandboxes')
    this.writes = writes
    mkdirSync(this.dir, { recursive: true, mode: DIR_MODE })
  }

  save(s: Sandbox): void {
    if (s.status === 'destroying') return
    const { inFlight: _inFlight, secrets: _secrets, status, ...rest } = s
    const doc: PersistedSandbox = { ...rest, status }
    writeJsonAtomic(this.file(s.id), doc, this.writes)
    this.lastActivityWrite.set(s.id, s.lastActivityAt)
  }

  /** Saves an activity timestamp, but not more than once a second per sandbox. */
  saveActivity(s: Sandbox): void {
    const last = this.lastActivityWrite.get(s.id) ?? 0
    if (s.lastActivityAt - last >= ACTIVITY_WRITE_INTERVAL_MS) this.save(s)
  }

  load(id: string): PersistedSandbox | undefined {
    return readJson<PersistedSandbox>(this.file(id))
  }

  /** Every recorded sandbox, by the id of the container behind it. */
  byContainer(): Map<string, PersistedSandbox> {
    const out = new Map<string, PersistedSandbox>()
    for (const id of this.ids()) {
      const doc = this.load(id)
      if (doc?.containerId) out.set(doc.containerId, doc)
    }
    return out
  }

  ids(): string[] {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length))
  }

  delete(id: string): void {
    removeFile(this.file(id), this.writes)
    this.lastActivityWrite.delete(id)
  }

  private file(id: string): string {
    return join(this.dir, `${id}.json`)
  }
}
