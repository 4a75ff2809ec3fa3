import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { SandboxEvents } from '../sandboxes/events.ts'
import type { Sandbox } from '../sandboxes/sandbox.ts'
import {
  appendJsonLine,
  DIR_MODE,
  readJsonLines,
  type WriteOptions,
  writeFileAtomic,
} from '../store/files.ts'
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

  private readonly writes: WriteOptions

  constructor(dataDir: string, key: Buffer, now: () => number = Date.now, writes: WriteOptions = {}) {
    this.dir = join(dataDir, 'audit')
    mkdirSync(this.dir, { recursive: true, mode: DIR_MODE })
    this.key = key
    this.now = now
    this.writes = writes
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
    appendJsonLine(this.file(sandbox.id), entry, this.writes)
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
export function loadAuditKey(
  dataDir: string,
  configured: string | undefined,
  options: WriteOptions = {},
): Buffer {
  if (configured) return Buffer.from(configured, 'utf8')
  const file = auditKeyFile(dataDir)
  if (existsSync(file)) return readAuditKeyFile(file)
  const key = randomBytes(AUDIT_KEY_BYTES)
  writeFileAtomic(file, `${key.toString('hex')}\n`, options)
  return key
}

const AUDIT_KEY_BYTES = 32

export function auditKeyFile(dataDir: string): string {
  return join(dataDir, 'audit.key')
}

/**
 * Reads a generated key (64 hex digits). Anything else is refused: an empty or damaged file would
 * otherwise become a short or empty HMAC key, under which every new entry "verifies" for anyone.
 */
export function readAuditKeyFile(file: string): Buffer {
  const text = readFileSync(file, 'utf8').trim()
  const fix =
    'restore it from a backup, or set ISORUN_EMULATOR_AUDIT_KEY; removing it starts a new key, under which existing audit logs no longer verify'
  if (text === '') throw new Error(`the audit key file ${file} is empty: ${fix}`)
  if (!/^[0-9a-fA-F]+$/.test(text) || text.length % 2 !== 0)
    throw new Error(`the audit key file ${file} is not a hex key: ${fix}`)
  if (text.length !== AUDIT_KEY_BYTES * 2)
    throw new Error(
      `the audit key file ${file} holds ${text.length / 2} bytes, not ${AUDIT_KEY_BYTES}: ${fix}`,
    )
  return Buffer.from(text, 'hex')
}
