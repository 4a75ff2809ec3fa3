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

/**
 * The event of an anchor: the first line of a log whose oldest entries retention removed. It carries
 * the seq and hmac of the last entry removed, so the entries kept still verify from there, and is
 * signed under its own prefix (ANCHOR) with the same key: without the key nobody can make one, so a
 * log cut at its head without the emulator's anchor still fails verification.
 */
export const ANCHOR_EVENT = 'audit.anchor'
export const ANCHOR = 'sha256:anchor'

export interface AnchorData {
  /** How many entries precede the ones kept (seq 0 to the anchor's seq). */
  removed_entries: number
  /** The hmac of the last entry removed: the kept entries chain from it. */
  chain_hmac: string
}

export function isAnchor(entry: { event?: unknown }): boolean {
  return entry.event === ANCHOR_EVENT
}
