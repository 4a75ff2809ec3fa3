import type { Sandbox } from './sandbox.ts'

/**
 * Every container the emulator makes carries these labels, so that its sandboxes can be rebuilt after
 * a restart and leftovers of a dead emulator reaped. The key itself is never stored: only its hash.
 */
export const LABEL = {
  app: 'isorun-emulator',
  instance: 'isorun-emulator.instance',
  dataDir: 'isorun-emulator.data-dir',
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
  }
}

/** Rebuilds a sandbox from its container's labels; undefined when they are not ours or incomplete. */
export function sandboxFromLabels(
  containerId: string,
  labels: Record<string, string>,
  now: number,
): Sandbox | undefined {
  const id = labels[LABEL.runId]
  const owner = labels[LABEL.owner]
  const image = labels[LABEL.image]
  const num = (k: string) => {
    const v = Number(labels[k])
    return Number.isFinite(v) ? v : undefined
  }
  const vcpus = num(LABEL.vcpus)
  const memMib = num(LABEL.memMib)
  const diskMib = num(LABEL.diskMib)
  const timeoutSec = num(LABEL.timeoutSec)
  const createdAt = num(LABEL.createdAt)
  const createMs = num(LABEL.createMs)
  if (!id || !owner || !image) return undefined
  if (vcpus === undefined || memMib === undefined || diskMib === undefined) return undefined
  if (timeoutSec === undefined || createdAt === undefined || createMs === undefined) return undefined
  return {
    id,
    owner,
    containerId,
    image,
    engineImage: labels[LABEL.engineImage] ?? image,
    vcpus,
    memMib,
    diskMib,
    timeoutSec,
    status: 'running',
    createdAt,
    createMs,
    lastActivityAt: now,
    inFlight: 0,
    hibernatedMs: 0,
    credentialNames: [],
    secrets: [],
  }
}
