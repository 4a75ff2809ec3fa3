import { mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { DIR_MODE, readJson, removeFile, type WriteOptions, writeJsonAtomic } from '../store/files.ts'
import type { EgressPolicy } from './egress-enforcer.ts'
import type { StoredSnapshot } from './engine.ts'

/** Owner of seeded snapshots that every key may list and restore. */
export const SHARED_OWNER = '*'

/** A snapshot as the domain keeps it; `stored` is the engine's handle on the artifacts. */
export interface SnapshotRecord {
  id: string
  runId: string
  owner: string
  createdAt: number
  sizeBytes: number
  /** True when the snapshot holds the processes' memory (CRIU), false for filesystem only. */
  memory: boolean
  /** What a restore recreates. */
  image: string
  vcpus: number
  memMib: number
  diskMib: number
  timeoutSec: number
  /** Names of the sandbox's credentials (their values are in the image's environment, not here). */
  credentialNames?: string[]
  /** The parent's egress policy, which restores and forks keep. */
  egress?: EgressPolicy
  stored: StoredSnapshot
}

/**
 * Snapshot metadata, one JSON file each under `<data dir>/snapshots/`, replaced atomically, so
 * snapshots outlive their parent and an emulator restart. The artifacts themselves (image, checkpoint
 * files) are the engine's; `stored` says where.
 */
export class SnapshotStore {
  private readonly dir: string
  private readonly records = new Map<string, SnapshotRecord>()

  private readonly writes: WriteOptions

  constructor(dataDir: string, writes: WriteOptions = {}) {
    this.dir = join(dataDir, 'snapshots')
    this.writes = writes
    mkdirSync(this.dir, { recursive: true, mode: DIR_MODE })
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue
      // A torn or foreign file is skipped rather than a reason to refuse to start.
      const record = readJson<SnapshotRecord>(join(this.dir, name))
      if (record?.id) this.records.set(record.id, record)
    }
  }

  /** Where the engine may keep this snapshot's files. */
  artifactDir(id: string): string {
    return join(this.dir, id)
  }

  put(record: SnapshotRecord): void {
    writeJsonAtomic(join(this.dir, `${record.id}.json`), record, this.writes)
    this.records.set(record.id, record)
  }

  get(id: string): SnapshotRecord | undefined {
    return this.records.get(id)
  }

  list(owner: string): SnapshotRecord[] {
    return [...this.records.values()]
      .filter((r) => r.owner === owner)
      .sort((a, b) => b.createdAt - a.createdAt)
  }

  all(): SnapshotRecord[] {
    return [...this.records.values()]
  }

  delete(id: string): void {
    removeFile(join(this.dir, `${id}.json`), this.writes)
    removeFile(this.artifactDir(id))
    this.records.delete(id)
  }
}
