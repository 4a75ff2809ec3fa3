import { availableParallelism, totalmem } from 'node:os'
import type { Config } from '../config.ts'
import { Errors } from '../errors.ts'
import type { EngineInfo } from './engine.ts'
import type { SandboxRegistry } from './registry.ts'

const MIB = 1024 * 1024

/**
 * Per-key defaults, from the engine host's cores and memory. A sandbox's vCPUs and memory are limits,
 * not reservations (an idle sandbox uses a few MiB and no CPU), so a key may hold more than the host
 * could run flat out at once; what it may not do is ask for sizes without end.
 */
const SANDBOXES_PER_CORE = 32
const VCPUS_PER_CORE = 32
const MEMORY_OVERCOMMIT = 4

export interface Size {
  vcpus: number
  memMib: number
}

/** What one sandbox may be, and what one key's sandboxes may hold together. */
export interface SandboxLimits {
  perSandbox: Size
  perKey: { sandboxes: number; vcpus: number; memMib: number }
}

type LimitSettings = Pick<Config, 'maxVcpus' | 'maxMemMib' | 'quotaSandboxes' | 'quotaVcpus' | 'quotaMemMib'>

/**
 * The limits in force: the settings where set, else figures derived from the engine's host (what the
 * engine said at start; without its word, as with the fake engine in tests, this machine's).
 */
export function sandboxLimits(
  settings: Partial<LimitSettings>,
  engine: EngineInfo | null | undefined,
): SandboxLimits {
  const cpus = engine?.hostCpus || availableParallelism()
  const memMib = Math.floor((engine?.hostMemoryBytes || totalmem()) / MIB)
  return {
    perSandbox: { vcpus: settings.maxVcpus ?? cpus, memMib: settings.maxMemMib ?? memMib },
    perKey: {
      sandboxes: settings.quotaSandboxes ?? SANDBOXES_PER_CORE * cpus,
      vcpus: settings.quotaVcpus ?? VCPUS_PER_CORE * cpus,
      memMib: settings.quotaMemMib ?? MEMORY_OVERCOMMIT * memMib,
    },
  }
}

/** A size one sandbox may not have: which of its two parts, and why. */
export interface SizeProblem {
  part: 'vcpus' | 'memMib'
  message: string
}

/** Room taken for sandboxes on their way; given back once they are registered (or failed). */
export interface Reservation {
  release(): void
}

interface Use {
  sandboxes: number
  vcpus: number
  memMib: number
}

const QUOTAS = [
  { part: 'sandboxes', name: 'sandboxes', unit: 'sandboxes', setting: 'ISORUN_EMULATOR_QUOTA_SANDBOXES' },
  { part: 'vcpus', name: 'vcpus', unit: 'vCPUs', setting: 'ISORUN_EMULATOR_QUOTA_VCPUS' },
  { part: 'memMib', name: 'mem_mib', unit: 'MiB of memory', setting: 'ISORUN_EMULATOR_QUOTA_MEM_MIB' },
] as const

/**
 * Per-key quotas: the sandboxes a key holds (every status: a hibernated one may resume, one being
 * destroyed still has its container) plus those on their way. Room is taken when a create, restore or
 * fork is asked for, synchronously, so concurrent requests cannot all pass the same check; a fork takes
 * room for all its children at once or for none. The warm pool's containers are no one's until a
 * create claims one, and that create counts like any other.
 */
export class Quotas {
  readonly limits: SandboxLimits
  private readonly registry: SandboxRegistry
  private readonly pending = new Map<string, Use>()

  constructor(limits: SandboxLimits, registry: SandboxRegistry) {
    this.limits = limits
    this.registry = registry
  }

  /** Why one sandbox of `size` cannot be had here, or undefined. */
  sizeProblem(size: Size): SizeProblem | undefined {
    const { vcpus, memMib } = this.limits.perSandbox
    if (size.vcpus > vcpus) {
      return {
        part: 'vcpus',
        message: `${size.vcpus} is more than ${vcpus} vCPUs, the most one sandbox can have here (the engine's host has that many cores unless ISORUN_EMULATOR_MAX_VCPUS says otherwise)`,
      }
    }
    if (size.memMib > memMib) {
      return {
        part: 'memMib',
        message: `${size.memMib} is more than ${memMib} MiB, the most one sandbox can have here (the engine's host has that much memory unless ISORUN_EMULATOR_MAX_MEM_MIB says otherwise)`,
      }
    }
    return undefined
  }

  /**
   * Takes room for `count` sandboxes of `size` for `owner`, or throws 429 `quota_exceeded` naming the
   * quota. `what` names the operation in the message ("a restore", "a fork of 3").
   */
  reserve(owner: string, size: Size, count = 1, what = 'this create'): Reservation {
    const asked: Use = { sandboxes: count, vcpus: size.vcpus * count, memMib: size.memMib * count }
    const used = this.use(owner)
    for (const q of QUOTAS) {
      const limit = this.limits.perKey[q.part]
      if (used[q.part] + asked[q.part] > limit) {
        throw Errors.quotaExceeded(
          `${what} would bring this key to ${used[q.part] + asked[q.part]} ${q.unit}, beyond its quota of ${limit} (${q.setting}); destroy some of its sandboxes first`,
          { quota: q.name, limit, used: used[q.part], asked: asked[q.part] },
        )
      }
    }
    this.add(owner, asked, 1)
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        this.add(owner, asked, -1)
      },
    }
  }

  /** What `owner` holds and has on its way. */
  private use(owner: string): Use {
    const use: Use = { ...(this.pending.get(owner) ?? { sandboxes: 0, vcpus: 0, memMib: 0 }) }
    for (const s of this.registry.all()) {
      if (s.owner !== owner) continue
      use.sandboxes++
      use.vcpus += s.vcpus
      use.memMib += s.memMib
    }
    return use
  }

  private add(owner: string, use: Use, sign: 1 | -1): void {
    const now = this.pending.get(owner) ?? { sandboxes: 0, vcpus: 0, memMib: 0 }
    const next = {
      sandboxes: now.sandboxes + sign * use.sandboxes,
      vcpus: now.vcpus + sign * use.vcpus,
      memMib: now.memMib + sign * use.memMib,
    }
    if (next.sandboxes === 0) this.pending.delete(owner)
    else this.pending.set(owner, next)
  }
}
