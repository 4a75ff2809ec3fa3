import { mkdirSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { readJson, writeJsonAtomic } from '../store/files.ts'
import type { Sandbox } from './sandbox.ts'

/** What of a sandbox changes after create and must survive a restart (labels hold the rest). */
export interface PersistedSandbox {
  id: string
  timeoutSec: number
  lastActivityAt: number
  status: 'running' | 'hibernated'
  hibernation?: 'memory' | 'pause'
  hibernatedAt?: number
  hibernatedMs: number
  /** Names only; the values stay in the container's environment. */
  credentialNames: string[]
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

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'sandboxes')
    mkdirSync(this.dir, { recursive: true })
  }

  save(s: Sandbox): void {
    if (s.status === 'destroying') return
    const doc: PersistedSandbox = {
      id: s.id,
      timeoutSec: s.timeoutSec,
      lastActivityAt: s.lastActivityAt,
      status: s.status,
      hibernation: s.hibernation,
      hibernatedAt: s.hibernatedAt,
      hibernatedMs: s.hibernatedMs,
      credentialNames: s.credentialNames,
    }
    writeJsonAtomic(this.file(s.id), doc)
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

  ids(): string[] {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length))
  }

  delete(id: string): void {
    rmSync(this.file(id), { force: true })
    this.lastActivityWrite.delete(id)
  }

  private file(id: string): string {
    return join(this.dir, `${id}.json`)
  }
}
