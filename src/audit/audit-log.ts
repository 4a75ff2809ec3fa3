import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { SandboxEvents } from '../sandboxes/events.ts'
import type { Sandbox } from '../sandboxes/sandbox.ts'
import {
  appendJsonLine,
  DIR_MODE,
  readJsonLines,
  removeFile,
  type WriteOptions,
  writeFileAtomic,
} from '../store/files.ts'
import { auditData } from './audit-data.ts'
import {
  ANCHOR,
  ANCHOR_EVENT,
  type AnchorData,
  type AuditEntry,
  GENESIS,
  isAnchor,
  signEntry,
} from './chain.ts'
import { maskSecrets } from './mask.ts'

export interface AuditHead {
  seq: number
  hmac: string
}

/** Per sandbox log: entries past this count are trimmed from the head, behind an anchor. 0 = no limit. */
export interface AuditOptions {
  now?: () => number
  writes?: WriteOptions
  maxEntries?: number
}

interface KnownLog extends AuditHead {
  /** The seq of the oldest entry in the file: 0, or the one after its anchor. */
  first: number
}

/**
 * The tamper-evident audit log: one JSON-lines file per sandbox under `<data dir>/audit/`, each entry
 * chained to the one before by an HMAC (see chain.ts). It follows the domain's events, so every API
 * action on a sandbox is recorded without the lifecycle code knowing about auditing. Secrets are masked
 * before anything is written. A log longer than `maxEntries` (plus a tenth, so trims are rare) loses
 * its oldest entries to a signed anchor that keeps the rest verifiable; a destroyed sandbox's log goes
 * when its history record does.
 */
export class AuditLog {
  private readonly dir: string
  private readonly key: Buffer
  private readonly logs = new Map<string, KnownLog>()
  private readonly now: () => number
  private readonly writes: WriteOptions
  private readonly maxEntries: number

  constructor(dataDir: string, key: Buffer, options: AuditOptions = {}) {
    this.dir = join(dataDir, 'audit')
    mkdirSync(this.dir, { recursive: true, mode: DIR_MODE })
    this.key = key
    this.now = options.now ?? Date.now
    this.writes = options.writes ?? {}
    this.maxEntries = options.maxEntries ?? 0
  }

  /** Records every domain event as an audit entry of its sandbox. */
  follow(events: SandboxEvents): void {
    events.on((e) => {
      this.append(e.sandbox, e.event, auditData(e), e.at)
    })
  }

  append(
    sandbox: Pick<Sandbox, 'id' | 'secrets'>,
    event: string,
    data: Record<string, unknown>,
    at = this.now(),
  ): AuditEntry {
    const log = this.known(sandbox.id)
    const unsigned = {
      seq: log ? log.seq + 1 : 0,
      ts: new Date(at).toISOString(),
      sandbox_id: sandbox.id,
      event,
      data: maskSecrets(data, sandbox.secrets),
    }
    const entry: AuditEntry = { ...unsigned, hmac: signEntry(this.key, log?.hmac ?? GENESIS, unsigned) }
    appendJsonLine(this.file(sandbox.id), entry, this.writes)
    const first = log?.first ?? 0
    this.logs.set(sandbox.id, { seq: entry.seq, hmac: entry.hmac, first })
    const max = this.maxEntries
    if (max > 0 && entry.seq - first + 1 > max + Math.max(1, Math.floor(max / 10))) this.trim(sandbox.id, at)
    return entry
  }

  /** The log as served: the file's JSON lines, or undefined when the sandbox has none. */
  read(sandboxId: string): string | undefined {
    const file = this.file(sandboxId)
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined
  }

  /** Last seq and hmac, from memory or (after a restart) from the file's last entry. */
  head(sandboxId: string): AuditHead | undefined {
    const log = this.known(sandboxId)
    return log ? { seq: log.seq, hmac: log.hmac } : undefined
  }

  /** Removes a sandbox's log (retention: its history record went). */
  remove(sandboxId: string): void {
    removeFile(this.file(sandboxId), this.writes)
    this.logs.delete(sandboxId)
  }

  /**
   * Removes the logs of sandboxes neither live nor in history (a destroy cut short between its last
   * entry and its history record) once they are older than `maxAgeMs`.
   */
  sweep(keep: (sandboxId: string) => boolean, maxAgeMs: number): void {
    if (maxAgeMs <= 0) return
    const cutoff = this.now() - maxAgeMs
    for (const name of readdirSync(this.dir)) {
      const id = name.endsWith('.jsonl') ? name.slice(0, -'.jsonl'.length) : undefined
      if (!id || !/^[a-z0-9]+$/.test(id) || keep(id)) continue
      const file = join(this.dir, name)
      if (statSync(file).mtimeMs < cutoff) this.remove(id)
    }
  }

  private known(sandboxId: string): KnownLog | undefined {
    const known = this.logs.get(sandboxId)
    if (known) return known
    const entries = readJsonLines<AuditEntry>(this.file(sandboxId))
    const last = entries.at(-1)
    if (!last) return undefined
    const head = entries[0] as AuditEntry
    const log = { seq: last.seq, hmac: last.hmac, first: isAnchor(head) ? head.seq + 1 : head.seq }
    this.logs.set(sandboxId, log)
    return log
  }

  /**
   * Keeps the newest `maxEntries` entries behind an anchor that carries the seq and hmac of the last
   * entry removed, signed with the key; the kept lines are written back byte for byte. Atomic: a crash
   * leaves the old file or the new one.
   */
  private trim(sandboxId: string, at: number): void {
    const file = this.file(sandboxId)
    const lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
    const parsed = lines.map((line) => ({ line, entry: parseEntry(line) }))
    const entries = parsed.filter((p) => p.entry && !isAnchor(p.entry))
    const kept = entries.slice(-this.maxEntries)
    const lastRemoved = entries[entries.length - kept.length - 1]?.entry
    if (!lastRemoved) return
    const unsigned = {
      seq: lastRemoved.seq,
      ts: new Date(at).toISOString(),
      sandbox_id: sandboxId,
      event: ANCHOR_EVENT,
      data: { removed_entries: lastRemoved.seq + 1, chain_hmac: lastRemoved.hmac } satisfies AnchorData,
    }
    const anchor: AuditEntry = { ...unsigned, hmac: signEntry(this.key, ANCHOR, unsigned) }
    const text = [JSON.stringify(anchor), ...kept.map((k) => k.line)].join('\n')
    writeFileAtomic(file, `${text}\n`, this.writes)
    const log = this.logs.get(sandboxId)
    if (log) log.first = lastRemoved.seq + 1
  }

  private file(sandboxId: string): string {
    // Run ids are [a-z0-9]; anything else never reaches the file system.
    if (!/^[a-z0-9]+$/.test(sandboxId)) throw new Error(`invalid sandbox id for the audit log: ${sandboxId}`)
    return join(this.dir, `${sandboxId}.jsonl`)
  }
}

function parseEntry(line: string): AuditEntry | undefined {
  try {
    return JSON.parse(line) as AuditEntry
  } catch {
    return undefined
  }
}
