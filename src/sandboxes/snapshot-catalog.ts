import { EmulatorError, Errors } from '../errors.ts'
import type { SandboxEngine } from './engine.ts'
import { KeyedLock } from './locks.ts'
import type { Logger } from './logger.ts'
import { SHARED_OWNER, type SnapshotRecord, type SnapshotStore } from './snapshot-store.ts'

/**
 * The snapshots each key may see, use and delete: its own, plus the seed's shared ones (which only the
 * seed may remove). A delete waits for the restores of that snapshot in flight instead of pulling its
 * files from under them.
 */
export class SnapshotCatalog {
  private readonly store: SnapshotStore
  private readonly engine: SandboxEngine
  private readonly log: Logger
  /** Restores in flight per snapshot. */
  private readonly inUse = new KeyedLock()

  constructor(store: SnapshotStore, engine: SandboxEngine, log: Logger) {
    this.store = store
    this.engine = engine
    this.log = log
  }

  /** Where the engine may keep a new snapshot's files. */
  artifactDir(snapshotId: string): string {
    return this.store.artifactDir(snapshotId)
  }

  add(record: SnapshotRecord): void {
    this.store.put(record)
  }

  /** Every key's snapshots, the seeded ones included (owner SHARED_OWNER). */
  all(): SnapshotRecord[] {
    return this.store.all()
  }

  list(owner: string): SnapshotRecord[] {
    return [...this.store.list(owner), ...this.store.list(SHARED_OWNER)]
  }

  has(snapshotId: string): boolean {
    return this.store.get(snapshotId) !== undefined
  }

  /** Runs `op` on the key's snapshot; a delete of it waits until `op` is done. */
  use<T>(owner: string, snapshotId: string, op: (record: SnapshotRecord) => Promise<T>): Promise<T> {
    return this.inUse.run(snapshotId, () => op(this.visible(owner, snapshotId)))
  }

  async delete(owner: string, snapshotId: string): Promise<void> {
    const record = this.visible(owner, snapshotId)
    if (record.owner === SHARED_OWNER && owner !== SHARED_OWNER) {
      throw new EmulatorError(
        'forbidden',
        403,
        `snapshot ${snapshotId} comes from the seed file; remove it there`,
        {
          id: snapshotId,
        },
      )
    }
    // New restores find it gone once it is removed below.
    await this.inUse.run(snapshotId, async () => {
      if (!this.store.get(snapshotId)) throw Errors.snapshotNotFound(snapshotId)
      this.store.delete(snapshotId)
      await this.engine.deleteSnapshot(record.stored)
    })
    this.log.info({ snapshotId }, 'snapshot deleted')
  }

  /**
   * Deletes the snapshots of one key (or of every key), except the seeded ones every key shares, which
   * belong to the seed state. Returns how many there were; one that cannot be deleted is skipped.
   */
  async deleteOwnedBy(owner?: string): Promise<number> {
    const doomed = this.store.all().filter((r) => r.owner !== SHARED_OWNER && (!owner || r.owner === owner))
    for (const r of doomed) await this.delete(r.owner, r.id).catch(() => {})
    return doomed.length
  }

  /** Deletes the seeded snapshots every key shares (when the emulator's data dir itself goes away). */
  async deleteShared(): Promise<number> {
    const shared = this.store.list(SHARED_OWNER)
    for (const r of shared) await this.delete(SHARED_OWNER, r.id)
    return shared.length
  }

  private visible(owner: string, snapshotId: string): SnapshotRecord {
    const record = this.store.get(snapshotId)
    if (!record || (record.owner !== owner && record.owner !== SHARED_OWNER))
      throw Errors.snapshotNotFound(snapshotId)
    return record
  }
}
