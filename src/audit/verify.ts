import { timingSafeEqual } from 'node:crypto'
import { type AuditEntry, GENESIS, signEntry } from './chain.ts'

export interface AuditVerification {
  ok: boolean
  entries: number
  /** The first problem found, with the line (1-based) it was found on. */
  problem?: { line: number; seq?: number; reason: string }
}

export interface VerifyOptions {
  /** The head the emulator recorded (last seq and hmac): catches a log cut short at its end. */
  expectedHead?: { seq: number; hmac: string }
}

/**
 * Verifies an audit log (the JSON-lines text served by the API): every line parses, seq counts up from 0
 * without gaps, every entry names the same sandbox, and every hmac matches the chain under `key`. Any
 * edit, deletion, insertion or reordering is reported with the line where the chain first breaks.
 */
export function verifyAuditLog(text: string, key: Buffer, options: VerifyOptions = {}): AuditVerification {
  const lines = text.split('\n').filter((l) => l.trim().length > 0)
  let previous = GENESIS
  let sandbox: string | undefined
  for (const [i, line] of lines.entries()) {
    const at = i + 1
    let entry: AuditEntry
    try {
      entry = JSON.parse(line) as AuditEntry
    } catch {
      return { ok: false, entries: i, problem: { line: at, reason: 'not valid JSON' } }
    }
    if (entry.seq !== i) {
      return {
        ok: false,
        entries: i,
        problem: { line: at, seq: entry.seq, reason: `expected seq ${i}, found ${entry.seq}` },
      }
    }
    sandbox ??= entry.sandbox_id
    if (entry.sandbox_id !== sandbox) {
      return {
        ok: false,
        entries: i,
        problem: { line: at, seq: entry.seq, reason: 'entry of another sandbox' },
      }
    }
    const { hmac, ...unsigned } = entry
    const expected = signEntry(key, previous, unsigned)
    if (
      typeof hmac !== 'string' ||
      hmac.length !== expected.length ||
      !timingSafeEqual(Buffer.from(hmac), Buffer.from(expected))
    ) {
      return {
        ok: false,
        entries: i,
        problem: {
          line: at,
          seq: entry.seq,
          reason: 'hmac mismatch: entry altered, or the chain before it broken',
        },
      }
    }
    previous = hmac
  }
  const head = options.expectedHead
  if (head && (lines.length !== head.seq + 1 || previous !== head.hmac)) {
    return {
      ok: false,
      entries: lines.length,
      problem: {
        line: lines.length,
        reason: `log ends before the recorded head (seq ${head.seq}): entries removed from its end`,
      },
    }
  }
  return { ok: true, entries: lines.length }
}
