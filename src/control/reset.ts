import type { SandboxDomain } from '../sandboxes/domain.ts'
import type { Seeder } from './seed.ts'

export interface ResetResult {
  destroyed: number
  snapshotsDeleted: number
}

/**
 * Back to a clean slate without a restart: destroys every sandbox (of one key, or all) and deletes
 * their snapshots. History and audit logs stay, as they would on the real service.
 */
export async function resetSandboxes(
  sandboxes: Pick<SandboxDomain, 'registry' | 'lifecycle' | 'snapshots'>,
  owner?: string,
): Promise<ResetResult> {
  const doomed = sandboxes.registry.all().filter((s) => !owner || s.owner === owner)
  const results = await Promise.allSettled(
    doomed.map((s) => sandboxes.lifecycle.destroy(s.owner, s.id, 'reset')),
  )
  const snapshotsDeleted = await sandboxes.snapshots.deleteOwnedBy(owner)
  return {
    destroyed: results.filter((r) => r.status === 'fulfilled').length,
    snapshotsDeleted,
  }
}

/** A reset as the control plane and startEmulator() offer it: back to the seed state, not to nothing. */
export async function resetToSeed(
  sandboxes: Pick<SandboxDomain, 'registry' | 'lifecycle' | 'snapshots'>,
  seeder: Seeder,
  owner?: string,
): Promise<ResetResult> {
  const result = await resetSandboxes(sandboxes, owner)
  await seeder.apply()
  return result
}
