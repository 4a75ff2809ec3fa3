import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadAuditKey } from '../src/audit/audit-key.ts'
import { AuditLog } from '../src/audit/audit-log.ts'
import type { AuditEntry } from '../src/audit/chain.ts'
import { maskSecrets } from '../src/audit/mask.ts'
import { verifyAuditLog } from '../src/audit/verify.ts'

const dir = mkdtempSync(join(tmpdir(), 'isorun-audit-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const key = loadAuditKey(dir, undefined)
const log = new AuditLog(dir, key)
const sandbox = { id: 'run0123456789abcdef0123', secrets: ['hunter2-secret'] }
log.append(sandbox, 'sandbox.created', { image: 'busybox:latest' })
log.append(sandbox, 'exec.start', { command: 'echo hunter2-secret | sha256sum' })
log.append(sandbox, 'exec.end', { exit_code: 0 })
log.append(sandbox, 'file.write', { path: '/tmp/a', size: 3 })
log.append(sandbox, 'sandbox.destroyed', { cost_cents: 0.01 })
const text = log.read(sandbox.id) ?? ''
const lines = text.trim().split('\n')
const entries = lines.map((l) => JSON.parse(l) as AuditEntry)
const join_ = (ls: string[]) => `${ls.join('\n')}\n`

describe('the audit log’s HMAC chain', () => {
  it('writes seq from 0, the sandbox id, the event and a sha256: hmac, with secrets masked', () => {
    expect(entries.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4])
    expect(entries.every((e) => e.sandbox_id === sandbox.id && /^sha256:[0-9a-f]{64}$/.test(e.hmac))).toBe(
      true,
    )
    expect(entries[1]?.data.command).toBe('echo *** | sha256sum')
    expect(text).not.toContain('hunter2-secret')
  })

  it('verifies an untouched log, and against its recorded head', () => {
    expect(verifyAuditLog(text, key)).toEqual({ ok: true, entries: 5 })
    const head = log.head(sandbox.id)
    expect(head?.seq).toBe(4)
    expect(verifyAuditLog(text, key, { expectedHead: head }).ok).toBe(true)
  })

  it('catches an edited entry', () => {
    const edited = [...lines]
    edited[2] = JSON.stringify({ ...entries[2], data: { exit_code: 1 } })
    const r = verifyAuditLog(join_(edited), key)
    expect(r.ok).toBe(false)
    expect(r.problem).toMatchObject({ line: 3, seq: 2 })
    expect(r.problem?.reason).toContain('hmac mismatch')
  })

  it('catches an edit that also recomputes the hmac without the key', () => {
    const forged = [...lines]
    forged[1] = JSON.stringify({ ...entries[1], data: { command: 'ls' }, hmac: entries[1]?.hmac })
    expect(verifyAuditLog(join_(forged), key).ok).toBe(false)
    expect(verifyAuditLog(text, Buffer.from('another key')).ok).toBe(false)
  })

  it('catches a deleted entry', () => {
    const r = verifyAuditLog(join_(lines.filter((_, i) => i !== 1)), key)
    expect(r.ok).toBe(false)
    expect(r.problem?.reason).toBe('expected seq 1, found 2')
  })

  it('catches reordered entries, even with their seq renumbered', () => {
    const swapped = [lines[0], lines[2], lines[1], lines[3], lines[4]] as string[]
    expect(verifyAuditLog(join_(swapped), key).ok).toBe(false)
    const renumbered = [entries[0], entries[2], entries[1], entries[3], entries[4]].map((e, i) =>
      JSON.stringify({ ...e, seq: i }),
    )
    expect(verifyAuditLog(join_(renumbered), key).ok).toBe(false)
  })

  it('catches entries cut from the end when the recorded head is known', () => {
    const cut = join_(lines.slice(0, 3))
    expect(verifyAuditLog(cut, key).ok).toBe(true)
    const r = verifyAuditLog(cut, key, { expectedHead: log.head(sandbox.id) })
    expect(r.ok).toBe(false)
    expect(r.problem?.reason).toContain('entries removed from its end')
  })

  it('continues the chain after a restart from the file’s last entry', () => {
    const again = new AuditLog(dir, loadAuditKey(dir, undefined))
    again.append(sandbox, 'sandbox.resumed', {})
    const all = again.read(sandbox.id) ?? ''
    expect(verifyAuditLog(all, key)).toEqual({ ok: true, entries: 6 })
  })

  it('is checked by `isorun-emulator verify-audit`, which exits 4 on tampering', () => {
    const cli = join(import.meta.dirname, '..', 'src', 'cli.ts')
    const good = join(dir, 'good.jsonl')
    writeFileSync(good, readFileSync(join(dir, 'audit', `${sandbox.id}.jsonl`)))
    const out = execFileSync(process.execPath, [cli, 'verify-audit', good, '--data-dir', dir], {
      encoding: 'utf8',
    })
    expect(out).toMatch(/^ok: 6 entries, chain intact/)
    const bad = join(dir, 'bad.jsonl')
    writeFileSync(bad, join_(lines.filter((_, i) => i !== 3)))
    let status = 0
    let stdout = ''
    try {
      execFileSync(process.execPath, [cli, 'verify-audit', bad, '--data-dir', dir], { encoding: 'utf8' })
    } catch (err) {
      status = (err as { status: number }).status
      stdout = (err as { stdout: string }).stdout
    }
    expect(status).toBe(4)
    expect(stdout).toMatch(/^TAMPERED at line 4/)
  })
})

describe('secret masking', () => {
  it('masks values inside nested strings, leaves short values alone', () => {
    expect(
      maskSecrets({ a: ['x tok3n-value y'], b: { c: 'tok3n-value' }, n: 3 }, ['tok3n-value', 'ab']),
    ).toEqual({
      a: ['x *** y'],
      b: { c: '***' },
      n: 3,
    })
  })
})
