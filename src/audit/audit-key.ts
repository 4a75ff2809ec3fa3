import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type WriteOptions, writeFileAtomic } from '../store/files.ts'

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
