import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildInjectApp } from './support/inject-app.ts'

const root = mkdtempSync(join(tmpdir(), 'isorun-file-modes-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const auth = { authorization: 'Bearer modes-key' }

const mode = (path: string) => statSync(path).mode & 0o777

/** Every directory and file under `dir`, with its mode. */
function modes(dir: string): Record<string, number> {
  const out: Record<string, number> = { '.': mode(dir) }
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name
      out[r] = mode(join(dir, r))
      if (e.isDirectory()) walk(r)
    }
  }
  walk('')
  return out
}

describe('file modes of the data dir', () => {
  it('creates the data dir 0700 and every state file, log and key 0600', async () => {
    const old = process.umask(0o022)
    const dataDir = join(root, 'fresh')
    try {
      const t = buildInjectApp(dataDir)
      const run = async (method: string, url: string, payload?: object) =>
        t.app.inject({ method: method as 'POST', url, headers: auth, payload })
      const a = (await run('POST', '/v1/runs', { credentials: { TOKEN: 'tok-123456' } })).json()
      await run('POST', `/v1/runs/${a.id}/exec`, { command: 'true' })
      await run('POST', `/v1/runs/${a.id}/snapshot`)
      const b = (await run('POST', '/v1/runs', {})).json()
      await run('DELETE', `/v1/runs/${b.id}`)
      await t.app.close()
    } finally {
      process.umask(old)
    }
    const found = modes(dataDir)
    expect(Object.keys(found)).toEqual(
      expect.arrayContaining([
        'history.jsonl',
        'audit.key',
        'instance.json',
        'audit',
        'sandboxes',
        'snapshots',
      ]),
    )
    for (const [path, m] of Object.entries(found)) {
      const isDir = statSync(join(dataDir, path)).isDirectory()
      expect({ path, mode: m.toString(8) }).toEqual({ path, mode: isDir ? '700' : '600' })
    }
  })

  it('tightens the files of a data dir an older version left readable by others', async () => {
    const dataDir = join(root, 'old')
    mkdirSync(join(dataDir, 'audit'), { recursive: true })
    mkdirSync(join(dataDir, 'sandboxes'))
    mkdirSync(join(dataDir, 'snapshots', 'snapabc', 'checkpoint'), { recursive: true })
    const files = {
      'history.jsonl': '',
      'audit.key': `${'ab'.repeat(32)}\n`,
      'instance.json': '{"instanceId":"0123456789abcdef"}\n',
      'audit/run0123.jsonl': '',
      'sandboxes/run0123.json': '{}\n',
      'snapshots/snapabc.json': '{}\n',
      'snapshots/snapabc/checkpoint/pages-1.img': 'memory',
    }
    for (const [rel, text] of Object.entries(files)) writeFileSync(join(dataDir, rel), text, { mode: 0o644 })
    for (const d of [
      '.',
      'audit',
      'sandboxes',
      'snapshots',
      'snapshots/snapabc',
      'snapshots/snapabc/checkpoint',
    ])
      chmodSync(join(dataDir, d), 0o755)
    // Not the emulator's: left as they are.
    writeFileSync(join(dataDir, 'notes.txt'), 'mine', { mode: 0o644 })

    const t = buildInjectApp(dataDir)
    await t.app.close()
    expect(mode(dataDir).toString(8)).toBe('700')
    for (const d of ['audit', 'sandboxes', 'snapshots', 'snapshots/snapabc', 'snapshots/snapabc/checkpoint'])
      expect({ d, mode: mode(join(dataDir, d)).toString(8) }).toEqual({ d, mode: '700' })
    for (const f of Object.keys(files))
      expect({ f, mode: mode(join(dataDir, f)).toString(8) }).toEqual({ f, mode: '600' })
    expect(mode(join(dataDir, 'notes.txt')).toString(8)).toBe('644')
  })
})
