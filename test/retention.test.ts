import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { type HistoryRecord, HistoryStore } from '../src/accounts/history.ts'
import { loadAuditKey } from '../src/audit/audit-key.ts'
import { AuditLog } from '../src/audit/audit-log.ts'
import type { AuditEntry } from '../src/audit/chain.ts'
import { verifyAuditLog } from '../src/audit/verify.ts'
import { buildInjectApp } from './support/inject-app.ts'

const root = mkdtempSync(join(tmpdir(), 'isorun-retention-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let n = 0
const freshDir = () => mkdtempSync(join(root, `d${n++}-`))
const DAY = 24 * 3600 * 1000
const T0 = Date.parse('2030-01-01T00:00:00Z')

function record(owner: string, id: string, destroyedAt: number): HistoryRecord {
  return {
    owner,
    id,
    image: 'busybox:latest',
    vcpus: 1,
    mem_mib: 512,
    create_ms: 1,
    created_at: new Date(destroyedAt - 1000).toISOString(),
    destroyed_at: new Date(destroyedAt).toISOString(),
    uptime_ms: 1000,
    cpu_ms: 1,
    mem_peak_bytes: 1,
    cost_cents: 0.01,
    billable_ms: 1000,
    reason: 'api',
  }
}

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')

describe('history', () => {
  it("answers a key's list and lookups without reading other keys' records", () => {
    const history = new HistoryStore(freshDir())
    let reads = 0
    for (let i = 0; i < 500; i++) {
      const r = record('other', `runother${i}`, T0 + i)
      // Counts every look at a record's owner once it is stored.
      let owner = r.owner
      Object.defineProperty(r, 'owner', {
        enumerable: true,
        get: () => {
          reads++
          return owner
        },
        set: (v: string) => {
          owner = v
        },
      })
      history.add(r)
    }
    history.add(record('mine', 'runmine1', T0 + 1000))
    reads = 0
    for (let i = 0; i < 10; i++) {
      expect(history.list('mine').map((r) => r.id)).toEqual(['runmine1'])
      expect(history.get('mine', 'runmine1')?.id).toBe('runmine1')
      expect(history.get('mine', 'runother3')).toBeUndefined()
    }
    // One read: the lookup of another key's run id checks whose it is.
    expect(reads).toBeLessThanOrEqual(10)
  })

  it('keeps at most HISTORY_MAX records, the newest, across a restart, and the file stays bounded', () => {
    const dir = freshDir()
    const retention = { maxAgeMs: 0, maxRecords: 20 }
    const history = new HistoryStore(dir, { retention })
    for (let i = 0; i < 100; i++) history.add(record(i % 2 ? 'a' : 'b', `run${i}`, T0 + i))
    const ids = [...history.list('a'), ...history.list('b')].map((r) => Number(r.id.slice(3)))
    expect(ids.sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => 80 + i))
    expect(lines(join(dir, 'history.jsonl')).length).toBeLessThanOrEqual(22)
    const again = new HistoryStore(dir, { retention })
    expect(again.list('a').map((r) => r.id)).toEqual(history.list('a').map((r) => r.id))
    expect(again.get('b', 'run10')).toBeUndefined()
  })

  it('drops records older than HISTORY_DAYS, at start and as time passes', () => {
    const dir = freshDir()
    let now = T0
    const old = new HistoryStore(dir)
    old.add(record('k', 'runold', T0 - 40 * DAY))
    old.add(record('k', 'runmid', T0 - 20 * DAY))
    old.add(record('k', 'runnew', T0 - 1 * DAY))
    const history = new HistoryStore(dir, {
      retention: { maxAgeMs: 30 * DAY, maxRecords: 0 },
      now: () => now,
    })
    expect(history.list('k').map((r) => r.id)).toEqual(['runnew', 'runmid'])
    expect(lines(join(dir, 'history.jsonl')).length).toBe(2)
    now = T0 + 15 * DAY
    expect(history.list('k').map((r) => r.id)).toEqual(['runnew'])
    expect(history.get('k', 'runmid')).toBeUndefined()
  })

  it("removes a destroyed sandbox's audit log with its history record", async () => {
    const dataDir = freshDir()
    const t = buildInjectApp(dataDir, { env: { ISORUN_EMULATOR_HISTORY_MAX: '1' } })
    const auth = { authorization: 'Bearer retention-key' }
    try {
      const ids: string[] = []
      for (let i = 0; i < 2; i++) {
        const id = (
          await t.app.inject({ method: 'POST', url: '/v1/runs', headers: auth, payload: {} })
        ).json().id
        await t.app.inject({ method: 'DELETE', url: `/v1/runs/${id}`, headers: auth })
        ids.push(id)
      }
      const [first, second] = ids
      const audit = (id?: string) =>
        t.app.inject({ method: 'GET', url: `/v1/runs/${id}/audit`, headers: auth })
      expect((await audit(first)).statusCode).toBe(404)
      expect(existsSync(join(dataDir, 'audit', `${first}.jsonl`))).toBe(false)
      expect((await audit(second)).statusCode).toBe(200)
      const history = await t.app.inject({ method: 'GET', url: '/v1/runs/history', headers: auth })
      expect(history.json().sandboxes.map((s: { id: string }) => s.id)).toEqual([second])
    } finally {
      await t.app.close()
    }
  })

  it('sweeps, after HISTORY_DAYS, the audit logs of sandboxes neither live nor in history', () => {
    const dataDir = freshDir()
    const key = loadAuditKey(dataDir, undefined)
    const log = new AuditLog(dataDir, key)
    for (const id of ['runorphanold', 'runorphannew', 'runlive', 'runkept'])
      log.append({ id, secrets: [] }, 'sandbox.created', {})
    const old = (Date.now() - 40 * DAY) / 1000
    for (const id of ['runorphanold', 'runlive', 'runkept'])
      utimesSync(join(dataDir, 'audit', `${id}.jsonl`), old, old)
    new AuditLog(dataDir, key).sweep((id) => id === 'runlive' || id === 'runkept', 30 * DAY)
    const left = ['runorphanold', 'runorphannew', 'runlive', 'runkept'].filter((id) =>
      existsSync(join(dataDir, 'audit', `${id}.jsonl`)),
    )
    expect(left).toEqual(['runorphannew', 'runlive', 'runkept'])
  })
})

describe('audit log retention: trimming the head behind a signed anchor', () => {
  const dataDir = freshDir()
  const key = loadAuditKey(dataDir, undefined)
  const sandbox = { id: 'runtrim0123456789', secrets: [] }
  const log = new AuditLog(dataDir, key, { maxEntries: 10 })
  for (let i = 0; i < 12; i++) log.append(sandbox, 'exec.start', { command: `echo ${i}` })
  const text = log.read(sandbox.id) ?? ''
  const raw = text.trim().split('\n')
  const entries = raw.map((l) => JSON.parse(l) as AuditEntry)
  const join_ = (ls: string[]) => `${ls.join('\n')}\n`

  it('keeps the newest entries, byte for byte, after an anchor, and the log verifies', () => {
    expect(entries[0]).toMatchObject({ seq: 1, event: 'audit.anchor', data: { removed_entries: 2 } })
    expect(entries.slice(1).map((e) => e.seq)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    expect(verifyAuditLog(text, key)).toEqual({ ok: true, entries: 11, firstSeq: 2 })
    expect(verifyAuditLog(text, key, { expectedHead: log.head(sandbox.id) }).ok).toBe(true)
  })

  it('catches a removed anchor, an edited anchor, and an anchor made without the key', () => {
    expect(verifyAuditLog(join_(raw.slice(1)), key).problem?.reason).toBe('expected seq 0, found 2')
    const moved = JSON.stringify({ ...entries[0], seq: 2, data: { ...entries[0]?.data, removed_entries: 3 } })
    expect(verifyAuditLog(join_([moved, ...raw.slice(2)]), key).problem?.reason).toMatch(/anchor altered/)
    expect(verifyAuditLog(text, Buffer.from('another key, 32 bytes long......')).ok).toBe(false)
  })

  it('catches deletions, edits and reordering after the anchor, and a cut at the end', () => {
    expect(verifyAuditLog(join_([raw[0], ...raw.slice(2)] as string[]), key).ok).toBe(false)
    const edited = [...raw]
    edited[4] = JSON.stringify({ ...entries[4], data: { command: 'rm -rf /' } })
    expect(verifyAuditLog(join_(edited), key).problem?.line).toBe(5)
    const swapped = [raw[0], raw[2], raw[1], ...raw.slice(3)] as string[]
    expect(verifyAuditLog(join_(swapped), key).ok).toBe(false)
    const cut = verifyAuditLog(join_(raw.slice(0, -2)), key, { expectedHead: log.head(sandbox.id) })
    expect(cut.problem?.reason).toContain('entries removed from its end')
  })

  it('continues and trims again after a restart, and verify-audit says where the log starts', () => {
    const again = new AuditLog(dataDir, key, { maxEntries: 10 })
    for (let i = 0; i < 20; i++) again.append(sandbox, 'exec.end', { exit_code: i })
    const all = again.read(sandbox.id) ?? ''
    const result = verifyAuditLog(all, key, { expectedHead: again.head(sandbox.id) })
    expect(result.ok).toBe(true)
    expect(result.firstSeq).toBeGreaterThan(2)
    expect(lines(join(dataDir, 'audit', `${sandbox.id}.jsonl`)).length).toBeLessThanOrEqual(12)
    const file = join(dataDir, 'copy.jsonl')
    writeFileSync(file, all)
    const cli = join(import.meta.dirname, '..', 'src', 'cli.ts')
    const out = execFileSync(process.execPath, [cli, 'verify-audit', file, '--data-dir', dataDir], {
      encoding: 'utf8',
    })
    expect(out).toMatch(new RegExp(`^ok: \\d+ entries, chain intact \\(from seq ${result.firstSeq}:`))
  })
})
