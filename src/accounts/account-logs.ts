import { loadAuditKey } from '../audit/audit-key.ts'
import { AuditLog } from '../audit/audit-log.ts'
import type { RetentionConfig } from '../config.ts'
import type { SandboxEvents } from '../sandboxes/events.ts'
import type { WriteOptions } from '../store/files.ts'
import { HistoryStore } from './history.ts'

export interface AccountLogs {
  audit: AuditLog
  history: HistoryStore
}

/**
 * The audit log and the history, with their retention wired together: a destroyed sandbox's audit log
 * goes when its history record does, and logs of sandboxes neither live nor in history are swept once
 * they are older than the history's age limit. Both follow the domain's events; the audit log listens
 * first, so a destroy's history entry is written after its last audit entry.
 */
export function openAccountLogs(options: {
  dataDir: string
  auditKey: string | undefined
  retention: RetentionConfig
  writes: WriteOptions
  now: () => number
  /** Whether a sandbox is live (has a state file): its log is never swept. */
  isLive: (sandboxId: string) => boolean
  events: SandboxEvents
}): AccountLogs {
  const { dataDir, retention, writes, now } = options
  const audit = new AuditLog(dataDir, loadAuditKey(dataDir, options.auditKey, writes), {
    now,
    writes,
    maxEntries: retention.auditMaxEntries,
  })
  const history = new HistoryStore(dataDir, {
    writes,
    now,
    retention: { maxAgeMs: retention.historyMaxAgeMs, maxRecords: retention.historyMaxRecords },
    onDrop: (dropped) => {
      for (const r of dropped) audit.remove(r.id)
    },
  })
  audit.sweep((id) => history.has(id) || options.isLive(id), retention.historyMaxAgeMs)
  audit.follow(options.events)
  history.follow(options.events)
  return { audit, history }
}
