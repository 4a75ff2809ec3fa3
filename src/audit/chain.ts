import { createHmac } from 'node:crypto'

/** One audit entry exactly as `GET /v1/runs/:id/audit` serves it (one JSON object per line). */
export interface AuditEntry {
  seq: number
  ts: string
  sandbox_id: string
  event: string
  data: Record<string, unknown>
  hmac: string
}

export type UnsignedEntry = Omit<AuditEntry, 'hmac'>

/** The hmac the first entry chains from. */
export const GENESIS = 'sha256:genesis'

/**
 * JSON with object keys sorted at every level, so that the same entry always hashes the same way,
 * whatever order its fields were built in.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null'
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`
}

/**
 * `sha256:` + hex HMAC-SHA256, keyed, over the previous entry's hmac and this entry's canonical JSON.
 * Each entry thus commits to everything before it: an edit, a deletion or a reordering anywhere breaks
 * every hmac from that point on.
 */
export function signEntry(key: Buffer, previousHmac: string, entry: UnsignedEntry): string {
  const mac = createHmac('sha256', key)
  mac.update(previousHmac)
  mac.update('\n')
  mac.update(canonicalJson(entry))
  return `sha256:${mac.digest('hex')}`
}
