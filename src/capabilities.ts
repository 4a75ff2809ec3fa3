import type { EngineInfo, MemorySupport } from './sandboxes/engine.ts'

/**
 * What this engine can really do, reported at GET /_emulator/capabilities and logged at start, so that
 * nothing the emulator cannot deliver is pretended.
 */
export interface Capabilities {
  engine: EngineInfo | null
  limits: {
    cpu: boolean
    memory: boolean
    disk: boolean
    disk_note: string
  }
  exec: { output_limit_bytes: number; timeout_kills_process_tree: boolean }
  memory_state: {
    /** CRIU checkpoints work here: snapshot, fork and hibernate keep processes and memory. */
    criu: boolean
    reason: string
    snapshot: 'files+memory' | 'files'
    fork: 'files+memory' | 'files'
    hibernate: 'checkpoint' | 'pause'
    /** Strict mode: what cannot keep memory fails with 409 instead of degrading. */
    strict: boolean
  }
}

export function describeCapabilities(
  engine: EngineInfo | null,
  execOutputLimit: number,
  memory: MemorySupport = { available: false, reason: 'unknown engine' },
  strict = false,
): Capabilities {
  return {
    engine,
    limits: {
      cpu: true,
      memory: true,
      disk: false,
      disk_note:
        "disk_mib is recorded and reported but not enforced: Docker can cap a container's writable layer only on overlay2 over xfs with project quotas" +
        (engine ? ` (this engine: ${engine.storageDriver} on ${engine.backingFs ?? 'unknown fs'})` : ''),
    },
    exec: { output_limit_bytes: execOutputLimit, timeout_kills_process_tree: true },
    memory_state: {
      criu: memory.available,
      reason: memory.available
        ? memory.reason
        : `${memory.reason}; snapshots and forks keep files only, hibernate pauses the container`,
      snapshot: memory.available ? 'files+memory' : 'files',
      fork: memory.available ? 'files+memory' : 'files',
      hibernate: memory.available ? 'checkpoint' : 'pause',
      strict,
    },
  }
}
