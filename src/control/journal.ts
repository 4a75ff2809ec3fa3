import { MASK, maskSecrets } from '../audit/mask.ts'

export interface JournalEntry {
  at: string
  method: string
  path: string
  key_hash: string | null
  status: number
  duration_ms: number
  /** The request's JSON body, or (past JOURNAL_BODY_LIMIT) the head of its JSON text. */
  body?: unknown
  /** Set when `body` is only the head of the JSON text; `body_bytes` is the whole text's size. */
  body_truncated?: true
  body_bytes?: number
}

/** Characters of a body's JSON kept per entry: enough for any ordinary SDK call, not for a flood. */
export const JOURNAL_BODY_LIMIT = 4096
/** Budget of the whole journal (its entries as JSON): the oldest entries go first beyond it. */
export const JOURNAL_MAX_BYTES = 2 * 1024 * 1024
/** Path characters kept per entry (a url(port) path may be as long as a client likes). */
const PATH_LIMIT = 2048
/** Room an entry takes beside its body and path (field names, figures, the key hash). */
const ENTRY_OVERHEAD = 200

/**
 * The credential values to mask in an entry: those of the sandbox its path names (whoever owns it, for
 * url(port)) and of every live sandbox of the key that sent it.
 */
export type SecretsOf = (path: string, keyHash: string | null) => readonly string[]

/**
 * The recent API requests, newest first, for tests that assert what their code sent. Bounded by count
 * and by bytes: a body is cut to its head, and the oldest entries fall off. Credential values are masked
 * in paths and bodies with the audit log's masking, before anything is kept.
 */
export class RequestJournal {
  private readonly entries: { entry: JournalEntry; bytes: number }[] = []
  private bytes = 0
  private readonly capacity: number
  private readonly secretsOf: SecretsOf

  constructor(options: { capacity?: number; secretsOf?: SecretsOf } = {}) {
    this.capacity = options.capacity ?? 1000
    this.secretsOf = options.secretsOf ?? (() => [])
  }

  /** `body_bytes`, when given, is the body's size as received (its Content-Length). */
  record(raw: Omit<JournalEntry, 'body_truncated'>): void {
    const secrets = this.secretsOf(raw.path, raw.key_hash)
    const { body_bytes: received, ...rest } = raw
    const entry: JournalEntry = {
      ...rest,
      path: detached(maskSecrets(raw.path, secrets).slice(0, PATH_LIMIT)),
    }
    const preview = bodyPreview(raw.body, secrets)
    entry.body = preview.body
    if (preview.truncated) {
      entry.body_truncated = true
      entry.body_bytes = received ?? preview.size
    }
    const bytes = ENTRY_OVERHEAD + entry.path.length + preview.size
    this.entries.push({ entry, bytes })
    this.bytes += bytes
    while (this.entries.length > this.capacity || this.bytes > JOURNAL_MAX_BYTES) {
      this.bytes -= this.entries.shift()?.bytes ?? 0
    }
  }

  query(filter: { path?: string; method?: string; limit?: number }): JournalEntry[] {
    const out: JournalEntry[] = []
    for (let i = this.entries.length - 1; i >= 0 && out.length < (filter.limit ?? 100); i--) {
      const e = (this.entries[i] as { entry: JournalEntry }).entry
      if (filter.method && e.method !== filter.method.toUpperCase()) continue
      if (filter.path && !e.path.includes(filter.path)) continue
      out.push(e)
    }
    return out
  }

  clear(): void {
    this.entries.length = 0
    this.bytes = 0
  }
}

/**
 * What the journal keeps of a body: the body itself when its JSON fits JOURNAL_BODY_LIMIT, else the head
 * of that JSON (`size` is then a lower bound). Long strings and arrays are cut before anything is
 * copied, so a large body costs no more than a small one. A create body's credentials are replaced
 * wholesale, every known credential value is masked; raw bytes (uploads, url(port)) are not kept.
 */
function bodyPreview(
  body: unknown,
  secrets: readonly string[],
): { body: unknown; truncated: boolean; size: number } {
  if (body === undefined || body === null) return { body: undefined, truncated: false, size: 0 }
  if (
    typeof body === 'object' &&
    (typeof (body as { pipe?: unknown }).pipe === 'function' || Buffer.isBuffer(body))
  )
    return { body: undefined, truncated: false, size: 0 }
  let values = secrets
  let shaped = body
  const creds = (body as { credentials?: unknown }).credentials
  if (creds && typeof creds === 'object') {
    values = [...Object.values(creds).filter((v): v is string => typeof v === 'string'), ...secrets]
    shaped = { ...body, credentials: Object.fromEntries(Object.keys(creds).map((k) => [k, MASK])) }
  }
  // Room for a secret that straddles the cut, so that masking still sees all of it.
  const longest = Math.max(0, ...values.map((v) => v.length))
  const cut = { happened: false }
  const small = shrink(shaped, JOURNAL_BODY_LIMIT + longest, cut)
  const text = JSON.stringify(maskSecrets(small, values)) ?? ''
  if (!cut.happened && text.length <= JOURNAL_BODY_LIMIT)
    return { body: JSON.parse(text), truncated: false, size: text.length }
  return {
    body: detached(text.slice(0, JOURNAL_BODY_LIMIT)),
    truncated: true,
    size: Math.max(text.length, JOURNAL_BODY_LIMIT),
  }
}

/** Nesting kept of a body: deeper values become "…" (a deep enough body would exhaust the stack). */
const MAX_DEPTH = 32

/**
 * A copy of `value` with strings longer than `limit` cut, at most `limit` items per array or object,
 * and at most MAX_DEPTH levels.
 */
function shrink(value: unknown, limit: number, cut: { happened: boolean }, depth = 0): unknown {
  if (typeof value === 'string') {
    if (value.length <= limit) return value
    cut.happened = true
    return detached(value.slice(0, limit))
  }
  if (!value || typeof value !== 'object') return value
  if (depth >= MAX_DEPTH) {
    cut.happened = true
    return '…'
  }
  const entries = Array.isArray(value) ? value.entries() : Object.entries(value)
  const out: [unknown, unknown][] = []
  for (const [k, v] of entries) {
    if (out.length >= limit) {
      cut.happened = true
      break
    }
    out.push([k, shrink(v, limit, cut, depth + 1)])
  }
  return Array.isArray(value) ? out.map(([, v]) => v) : Object.fromEntries(out)
}

/**
 * A copy of a string that does not keep its source alive: V8 may represent a slice as a view of the
 * whole string, and the journal would then hold every request body in full.
 */
function detached(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8')
}
