import type { EgressPolicy } from '../sandboxes/egress-enforcer.ts'
import type { SandboxRegistry } from '../sandboxes/registry.ts'
import type { Sandbox } from '../sandboxes/sandbox.ts'
import { SHARED_OWNER, type SnapshotRecord } from '../sandboxes/snapshot-store.ts'

/** One live sandbox as the person running the emulator sees it: what the SDK's record does not say. */
export interface SandboxWatch {
  id: string
  lastActivityAt: number
  /** When the idle timer destroys it; undefined while it has none (timeout 0, hibernated, busy). */
  idleDeadlineAt: number | undefined
  /** An operation is in flight: never idle meanwhile. */
  busy: boolean
  /** Its egress policy; undefined: unrestricted. */
  egress: EgressPolicy | undefined
}

/** A tenant (an API key, by its SHA-256) and what it holds. */
export interface Tenant {
  owner: string
  sandboxes: SandboxWatch[]
  snapshots: number
  destroyed: number
  /** Its latest sandbox's creation (live or destroyed), for ordering. */
  lastCreatedAt: number
}

export interface TenantSources {
  registry: SandboxRegistry
  snapshots: () => SnapshotRecord[]
  history: { owners(): string[]; list(owner: string): { created_at: string }[] }
}

/**
 * Every tenant the emulator holds something of, the most recently active first: for the dashboard of
 * the person running the emulator, who may view any (security.md), and who needs no key to do so.
 */
export function listTenants(src: TenantSources): Tenant[] {
  const tenants = new Map<string, Tenant>()
  const of = (owner: string): Tenant => {
    let t = tenants.get(owner)
    if (!t) {
      t = { owner, sandboxes: [], snapshots: 0, destroyed: 0, lastCreatedAt: 0 }
      tenants.set(owner, t)
    }
    return t
  }
  for (const s of src.registry.all()) {
    if (s.status === 'destroying') continue
    const t = of(s.owner)
    t.sandboxes.push(watch(s))
    t.lastCreatedAt = Math.max(t.lastCreatedAt, s.createdAt)
  }
  for (const r of src.snapshots()) if (r.owner !== SHARED_OWNER) of(r.owner).snapshots++
  for (const owner of src.history.owners()) {
    const t = of(owner)
    const destroyed = src.history.list(owner)
    t.destroyed = destroyed.length
    for (const h of destroyed) t.lastCreatedAt = Math.max(t.lastCreatedAt, Date.parse(h.created_at) || 0)
  }
  return [...tenants.values()].sort((a, b) => b.lastCreatedAt - a.lastCreatedAt)
}

function watch(s: Sandbox): SandboxWatch {
  const busy = s.inFlight > 0
  const timed = s.status === 'running' && s.timeoutSec > 0 && !busy
  return {
    id: s.id,
    lastActivityAt: s.lastActivityAt,
    idleDeadlineAt: timed ? s.lastActivityAt + s.timeoutSec * 1000 : undefined,
    busy,
    egress: s.egress,
  }
}
