import type { EngineInfo } from './sandboxes/engine.ts'

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
  memory_state: { snapshot: boolean; fork: boolean; hibernate: boolean; note: string }
}

export function describeCapabilities(engine: EngineInfo | null, execOutputLimit: number): Capabilities {
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
      snapshot: false,
      fork: false,
      hibernate: false,
      note: 'snapshot, fork and hibernate are not implemented yet',
    },
  }
}
