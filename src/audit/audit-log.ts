import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { SandboxEvents } from '../sandboxes/events.ts'
import type { Sandbox } from '../sandboxes/sandbox.ts'
import { appendJsonLine, readJsonLines } from '../store/files.ts'
import { auditData } from './audit-data.ts'
import { type AuditEntry, GENESIS, signEntry } from './chain.ts'
import { maskSecrets } from './mask.ts'

export interface AuditHead {
  seq: number
  hmac: string
}

/**
 * The tamper-evident audit log: one JSON-lines file per sandbox under `<data dir>/audit/`, each entry
 * chained to the one before by an HMAC (see chain.ts). It follows the domain's events, so every API
 * action on a sandbox is recorded without the lifecycle code knowing about auditing. Secrets are masked
 * before anything is written.
 */
export class AuditLog {
  private readonly dir: string
  private readonly key: Buffer
  private readonly heads = new Map<string, AuditHead>()
  private readonly now: () => number

  constructor(dataDir: string, key: Buffer, now: () => number = Date.now) {
    this.dir = join(dataDir, 'audit')
    mkdirSync(this.dir, { recursive: true })
    this.key = key
    this.now = now
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
    const head = this.head(sandbox.id)
    const unsigned = {
      seq: head ? head.seq + 1 : 0,
      ts: new Date(at).toISOString(),
      sandbox_id: sandbox.id,
      event,
      data: maskSecrets(data, sandbox.secrets),
    }
    const entry: AuditEntry = { ...unsigned, hmac: signEntry(this.key, head?.hmac ?? GENESIS, unsigned) }
    appendJsonLine(this.file(sandbox.id), entry)
    this.heads.set(sandbox.id, { seq: entry.seq, hmac: entry.hmac })
    return entry
  }

  /** The log as served: the file's JSON lines, or undefined when the sandbox has none. */
  read(sandboxId: string): string | undefined {
    const file = this.file(sandboxId)
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined
  }

  /** Last seq and hmac, from memory or (after a restart) from the file's last entry. */
  head(sandboxId: string): AuditHead | undefined {
    const known = this.heads.get(sandboxId)
    if (known) return known
    const last = readJsonLines<AuditEntry>(this.file(sandboxId)).at(-1)
    if (!last) return undefined
    const head = { seq: last.seq, hmac: last.hmac }
    this.heads.set(sandboxId, head)
    return head
  }

  private file(sandboxId: string): string {
    // Run ids are [a-z0-9]; anything else never reaches the file system.
    if (!/^[a-z0-9]+$/.test(sandboxId)) throw new Error(`invalid sandbox id for the audit log: ${sandboxId}`)
    return join(this.dir, `${sandboxId}.jsonl`)
  }
}

/**
 * The HMAC key: from configuration when given, else generated once and kept in the data dir (mode 0600),
 * so that logs written before a restart still verify after it.
 */
export function loadAuditKey(dataDir: string, configured: string | undefined): Buffer {
  if (configured) return Buffer.from(configured, 'utf8')
  const file = join(dataDir, 'audit.key')
  if (existsSync(file)) return Buffer.from(readFileSync(file, 'utf8').trim(), 'hex')
  const key = randomBytes(32)
  writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600 })
  chmodSync(file, 0o600)
  return key
}
