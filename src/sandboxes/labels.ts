import { FS_VIEW, FS_VIEW_LABEL } from './fs-view.ts'
import type { Sandbox } from './sandbox.ts'

/**
 * Every container the emulator makes carries these labels, so that leftovers can be found and reaped
 * and a human can tell what a container is. (The sandbox's record, which changes after create, is in
 * the data dir: see state-store.ts.) The key itself is never stored: only its hash.
 */
export const LABEL = {
  app: 'isorun-emulator',
  instance: 'isorun-emulator.instance',
  dataDir: 'isorun-emulator.data-dir',
  /** On warm-pool containers: started ahead of demand, nobody's yet. */
  pool: 'isorun-emulator.pool',
  runId: 'isorun-emulator.run-id',
  owner: 'isorun-emulator.owner',
  image: 'isorun-emulator.image',
  engineImage: 'isorun-emulator.engine-image',
  vcpus: 'isorun-emulator.vcpus',
  memMib: 'isorun-emulator.mem-mib',
  diskMib: 'isorun-emulator.disk-mib',
  timeoutSec: 'isorun-emulator.timeout-sec',
  createdAt: 'isorun-emulator.created-at',
  createMs: 'isorun-emulator.create-ms',
  /** The egress policy as JSON ({profile?, allow, deny}); absent when unrestricted. Never a credential. */
  egress: 'isorun-emulator.egress',
} as const

export interface InstanceIdentity {
  instanceId: string
  dataDir: string
}

export function sandboxLabels(
  identity: InstanceIdentity,
  s: Omit<Sandbox, 'containerId'>,
): Record<string, string> {
  return {
    [LABEL.app]: '1',
    [LABEL.instance]: identity.instanceId,
    [FS_VIEW_LABEL]: FS_VIEW,
    [LABEL.dataDir]: identity.dataDir,
    [LABEL.runId]: s.id,
    [LABEL.owner]: s.owner,
    [LABEL.image]: s.image,
    [LABEL.engineImage]: s.engineImage,
    [LABEL.vcpus]: String(s.vcpus),
    [LABEL.memMib]: String(s.memMib),
    [LABEL.diskMib]: String(s.diskMib),
    [LABEL.timeoutSec]: String(s.timeoutSec),
    [LABEL.createdAt]: String(s.createdAt),
    [LABEL.createMs]: String(s.createMs),
    ...(s.egress ? { [LABEL.egress]: JSON.stringify(s.egress) } : {}),
  }
}
