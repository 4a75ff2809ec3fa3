import { timingSafeEqual } from 'node:crypto'
import { ANCHOR, type AnchorData, type AuditEntry, GENESIS, isAnchor, signEntry } from './chain.ts'

export interface AuditVerification {
  ok: boolean
  /** Lines verified (an anchor included). */
  entries: number
  /** Set when the log starts at an anchor: the seq of its first kept entry (those before were removed by retention). */
  firstSeq?: number
  /** The first problem found, with the line (1-based) it was found on. */
  problem?: { line: number; seq?: number; reason: string }
}

export interface VerifyOptions {
  /** The head the emulator recorded (last seq and hmac): catches a log cut short at its end. */
  expectedHead?: { seq: number; hmac: string }
}

/**
 * Verifies an audit log (the JSON-lines text served by the API): every line parses, seq counts up
 * without gaps, every entry names the same sandbox, and every hmac matches the chain under `key`. The
 * chain starts at 0 from GENESIS, or, when retention removed the oldest entries, at the anchor on the
 * first line, whose own hmac (under ANCHOR) proves that the emulator removed them and where the chain
 * resumes. Any edit, deletion, insertion or reordering is reported with the line where the chain
 * first breaks.
 */
export function verifyAuditLog(text: string, key: Buffer, options: VerifyOptions = {}): AuditVerification {
  const lines = text.split('\n').filter((l) => l.trim().length > 0)
  let previous = GENESIS
  let nextSeq = 0
  let sandbox: string | undefined
  let firstSeq: number | undefined
  let lastSeq: number | undefined
  for (const [i, line] of lines.entries()) {
    const at = i + 1
    let entry: AuditEntry
    try {
      entry = JSON.parse(line) as AuditEntry
    } catch {
      return { ok: false, entries: i, problem: { line: at, reason: 'not valid JSON' } }
    }
    const fail = (reason: string): AuditVerification => ({
      ok: false,
      entries: i,
      problem: { line: at, seq: entry.seq, reason },
    })
    sandbox ??= entry.sandbox_id
    if (entry.sandbox_id !== sandbox) return fail('entry of another sandbox')
    const { hmac, ...unsigned } = entry
    if (i === 0 && isAnchor(entry)) {
      const data = entry.data as Partial<AnchorData>
      if (!Number.isInteger(entry.seq) || entry.seq < 0 || typeof data?.chain_hmac !== 'string')
        return fail('malformed anchor')
      if (!sameMac(hmac, signEntry(key, ANCHOR, unsigned)))
        return fail('anchor altered, or not made with this key')
      previous = data.chain_hmac
      nextSeq = entry.seq + 1
      firstSeq = nextSeq
      continue
    }
    if (entry.seq !== nextSeq) return fail(`expected seq ${nextSeq}, found ${entry.seq}`)
    if (!sameMac(hmac, signEntry(key, previous, unsigned)))
      return fail('hmac mismatch: entry altered, or the chain before it broken')
    previous = hmac
    lastSeq = entry.seq
    nextSeq++
  }
  const done = { entries: lines.length, ...(firstSeq !== undefined ? { firstSeq } : {}) }
  const head = options.expectedHead
  if (head && (lastSeq !== head.seq || previous !== head.hmac)) {
    return {
      ok: false,
      ...done,
      problem: {
        line: lines.length,
        reason: `log ends before the recorded head (seq ${head.seq}): entries removed from its end`,
      },
    }
  }
  return { ok: true, ...done }
}

function sameMac(actual: unknown, expected: string): boolean {
  return (
    typeof actual === 'string' &&
    actual.length === expected.length &&
    timingSafeEqual(Buffer.from(actual), Buffer.from(expected))
  )
}
