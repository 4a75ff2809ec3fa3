import fs, {
  appendFileSync,
  mkdtempSync,
  type PathLike,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadAuditKey } from '../src/audit/audit-key.ts'
import { AuditLog } from '../src/audit/audit-log.ts'
import { verifyAuditLog } from '../src/audit/verify.ts'
import { loadIdentity } from '../src/sandboxes/identity.ts'
import { appendJsonLine, readJsonLines } from '../src/store/files.ts'
import { buildInjectApp } from './support/inject-app.ts'

const root = mkdtempSync(join(tmpdir(), 'isorun-crash-safety-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let n = 0
const freshDir = () => mkdtempSync(join(root, `d${n++}-`))
const auth = { authorization: 'Bearer crash-key' }

describe('a crash mid-append (a torn last line)', () => {
  it('does not swallow the next record appended to a JSON-lines file', () => {
    const file = join(freshDir(), 'log.jsonl')
    appendJsonLine(file, { n: 1 })
    appendFileSync(file, '{"n":2,"tor') // the process died here
    appendJsonLine(file, { n: 3 })
    appendJsonLine(file, { n: 4 })
    expect(readJsonLines(file)).toEqual([{ n: 1 }, { n: 3 }, { n: 4 }])
  })

  it('keeps a last record that was complete but for its newline', () => {
    const file = join(freshDir(), 'log.jsonl')
    appendJsonLine(file, { n: 1 })
    appendFileSync(file, '{"n":2}')
    appendJsonLine(file, { n: 3 })
    expect(readJsonLines(file)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }])
  })

  it('keeps an acknowledged destroy in history across the restart that follows', async () => {
    const dataDir = freshDir()
    const first = buildInjectApp(dataDir)
    const a = (await first.app.inject({ method: 'POST', url: '/v1/runs', headers: auth, payload: {} })).json()
    await first.app.inject({ method: 'DELETE', url: `/v1/runs/${a.id}`, headers: auth })
    await first.app.close()
    appendFileSync(join(dataDir, 'history.jsonl'), '{"owner":"x","id":"torn') // killed mid-append

    const second = buildInjectApp(dataDir)
    const b = (
      await second.app.inject({ method: 'POST', url: '/v1/runs', headers: auth, payload: {} })
    ).json()
    const destroyed = await second.app.inject({ method: 'DELETE', url: `/v1/runs/${b.id}`, headers: auth })
    expect(destroyed.statusCode).toBe(200)
    await second.app.close()

    const third = buildInjectApp(dataDir)
    const history = await third.app.inject({ method: 'GET', url: '/v1/runs/history', headers: auth })
    expect(history.json().sandboxes.map((s: { id: string }) => s.id)).toEqual([b.id, a.id])
    await third.app.close()
  })

  it('leaves an audit chain that still verifies, and continues it', () => {
    const dataDir = freshDir()
    const key = loadAuditKey(dataDir, undefined)
    const sandbox = { id: 'runtorn0123456789', secrets: [] }
    new AuditLog(dataDir, key).append(sandbox, 'sandbox.created', {})
    appendFileSync(join(dataDir, 'audit', `${sandbox.id}.jsonl`), '{"seq":1,"ts":"20')
    const again = new AuditLog(dataDir, key)
    again.append(sandbox, 'exec.start', { command: 'true' })
    again.append(sandbox, 'exec.end', { exit_code: 0 })
    const text = again.read(sandbox.id) ?? ''
    expect(verifyAuditLog(text, key)).toEqual({ ok: true, entries: 3 })
  })
})

describe('the files that identify a data dir', () => {
  it('refuses an empty audit key file with a clear error instead of an empty HMAC key', () => {
    const dataDir = freshDir()
    writeFileSync(join(dataDir, 'audit.key'), '')
    expect(() => loadAuditKey(dataDir, undefined)).toThrow(/audit\.key.*empty/)
  })

  it('refuses a corrupt audit key file', () => {
    const dataDir = freshDir()
    writeFileSync(join(dataDir, 'audit.key'), 'not hex at all\n')
    expect(() => loadAuditKey(dataDir, undefined)).toThrow(/audit\.key.*not a hex key/)
    writeFileSync(join(dataDir, 'audit.key'), 'abcd\n')
    expect(() => loadAuditKey(dataDir, undefined)).toThrow(/audit\.key holds 2 bytes, not 32/)
  })

  it('writes the audit key and the instance identity through a temp file and a rename', () => {
    const dataDir = freshDir()
    const renamed: string[] = []
    // Every module's `import { renameSync } from 'node:fs'` sees the spy once the builtin's ESM
    // bindings are synced with its CommonJS exports.
    const original = fs.renameSync
    fs.renameSync = (from: PathLike, to: PathLike) => {
      renamed.push(String(to))
      original(from, to)
    }
    syncBuiltinESMExports()
    try {
      loadIdentity(dataDir)
      loadAuditKey(dataDir, undefined)
    } finally {
      fs.renameSync = original
      syncBuiltinESMExports()
    }
    expect(renamed.map((f) => f.slice(f.lastIndexOf('/') + 1))).toEqual(
      expect.arrayContaining(['instance.json', 'audit.key']),
    )
    expect(readFileSync(join(dataDir, 'audit.key'), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/)
  })
})

describe('the durability setting', () => {
  /** The paths fsync(2) was called on while `work` ran (read from /proc/self/fd at each call). */
  async function fsyncedDuring(work: () => Promise<void>): Promise<string[]> {
    const synced: string[] = []
    const original = fs.fsyncSync
    fs.fsyncSync = (fd: number) => {
      synced.push(readlinkSync(`/proc/self/fd/${fd}`))
      original(fd)
    }
    syncBuiltinESMExports()
    try {
      await work()
    } finally {
      fs.fsyncSync = original
      syncBuiltinESMExports()
    }
    return synced
  }

  async function lifecycle(durability: string): Promise<{ dataDir: string; id: string; synced: string[] }> {
    const dataDir = realpathSync(freshDir())
    let id = ''
    const synced = await fsyncedDuring(async () => {
      const t = buildInjectApp(dataDir, { env: { ISORUN_EMULATOR_DURABILITY: durability } })
      const send = (method: string, url: string, payload?: object) =>
        t.app.inject({ method: method as 'POST', url, headers: auth, payload })
      id = (await send('POST', '/v1/runs', {})).json().id
      await send('POST', `/v1/runs/${id}/exec`, { command: 'true' })
      const snap = (await send('POST', `/v1/runs/${id}/snapshot`)).json()
      expect((await send('DELETE', `/v1/snapshots/${snap.id}`)).statusCode).toBe(200)
      await send('DELETE', `/v1/runs/${id}`)
      await t.app.close()
    })
    return { dataDir, id, synced }
  }

  it('by default (process) leaves flushing to the OS', async () => {
    expect((await lifecycle('process')).synced).toEqual([])
  })

  it('with fsync flushes every state file, log, record and key, and their directories, before answering', async () => {
    const { dataDir, id, synced } = await lifecycle('fsync')
    const rel = new Set(synced.map((p) => p.slice(dataDir.length + 1).replace(/\.\d+\.tmp$/, '')))
    for (const expected of [
      '', // the data dir itself: instance.json, audit.key, history.jsonl are its entries
      'instance.json',
      'audit.key',
      'history.jsonl',
      'sandboxes',
      `sandboxes/${id}.json`,
      'audit',
      `audit/${id}.jsonl`,
      'snapshots',
    ])
      expect(rel).toContain(expected)
    expect([...rel].some((p) => /^snapshots\/snap[a-z0-9]+\.json$/.test(p))).toBe(true)
  })
})
