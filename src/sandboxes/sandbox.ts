import type { EgressPolicy } from './egress-enforcer.ts'

/** A sandbox as the domain knows it. The container behind it is the engine's business. */
export type SandboxStatus = 'running' | 'hibernated' | 'exited' | 'destroying'

/** How an exited sandbox's container ended (see exits.ts). */
export interface SandboxExit {
  /** `oom`: the OOM killer ended its main process; `exited`: it ended otherwise. */
  reason: 'exited' | 'oom'
  exitCode: number | undefined
  /** When the emulator learnt of it; billing stops here. */
  at: number
}

/** Why a sandbox went: asked for, idle past its timeout, or a reset of the emulator. */
export type DestroyReason = 'api' | 'idle_timeout' | 'reset'

export interface Sandbox {
  id: string
  /** sha256 of the API key that created it; only that key can see it. */
  owner: string
  containerId: string
  /** The image as the user named it. */
  image: string
  /** The image the container really runs: `image`, or a snapshot's for restores and forks. */
  engineImage: string
  vcpus: number
  memMib: number
  diskMib: number
  /** Idle seconds before auto-destroy; 0 disables it. */
  timeoutSec: number
  status: SandboxStatus
  createdAt: number
  createMs: number
  /** Last API activity, for the idle timer. */
  lastActivityAt: number
  /** Operations in flight; a sandbox is never idle while one runs. */
  inFlight: number
  /** How it is hibernated: checkpointed to disk with its memory, or paused. */
  hibernation?: 'memory' | 'pause'
  hibernatedAt?: number
  /** Time spent hibernated, which is not billed. */
  hibernatedMs: number
  /** Names of the credentials given at create (persisted); their values live in the container's env. */
  credentialNames: string[]
  /** Credential values, in memory only, so the audit log can mask them. Never persisted or returned. */
  secrets: string[]
  /** Its egress policy, enforced by the egress proxy; absent: unrestricted. */
  egress?: EgressPolicy
  /** Set once its container stopped without being asked to (status `exited`). */
  exit?: SandboxExit
}

/** Uptime that costs money: all of it except hibernation. */
export function billableMs(s: Sandbox, at: number): number {
  const now = Math.min(at, s.exit?.at ?? at)
  const hibernatedNow = s.hibernatedAt === undefined ? 0 : now - s.hibernatedAt
  return Math.max(0, now - s.createdAt - s.hibernatedMs - hibernatedNow)
}
