import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { JOURNAL_BODY_LIMIT, JOURNAL_MAX_BYTES, RequestJournal } from '../src/control/journal.ts'
import { buildInjectApp } from './support/inject-app.ts'

const root = mkdtempSync(join(tmpdir(), 'isorun-journal-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const auth = (key = 'journal-key') => ({ authorization: `Bearer ${key}` })

describe('the request journal', () => {
  it('never shows a credential value, in exec commands, file paths or url(port) paths alike', async () => {
    const t = buildInjectApp(mkdtempSync(join(root, 'mask-')))
    const secret = 's3cr3t-value-42'
    const other = 'other-token-99'
    try {
      const send = (method: string, url: string, payload?: unknown, headers = auth()) =>
        t.app.inject({ method: method as 'POST', url, headers, payload: payload as object })
      const a = (await send('POST', '/v1/runs', { credentials: { TOKEN: secret } })).json()
      const b = (await send('POST', '/v1/runs', { credentials: { OTHER: other } })).json()
      expect(
        (await send('POST', `/v1/runs/${a.id}/exec`, { command: `cat /tmp/${secret}/x; echo ${other}` }))
          .statusCode,
      ).toBe(200)
      await send('POST', `/v1/runs/${b.id}/exec`, { command: `printf '${secret}' > /tmp/${secret}.txt` })
      await t.app.inject({
        method: 'POST',
        url: `/v1/runs/${a.id}/files/upload?path=/tmp/${secret}`,
        headers: { ...auth(), 'content-type': 'application/octet-stream' },
        payload: Buffer.from(secret),
      })
      await send('GET', `/v1/runs/${a.id}/files/download?path=/tmp/${secret}`)
      await send('GET', `/v1/runs/${a.id}/files?path=/tmp/${secret}`)
      // url(port) needs no key: the path alone names the sandbox whose values are masked.
      await t.app.inject({ method: 'GET', url: `/v1/runs/${a.id}/proxy/8080/files/${secret}/index.html` })
      // A request the key check refuses is recorded masked too.
      await send('POST', `/v1/runs/${a.id}/exec`, { command: `echo ${secret}` }, { authorization: '' })

      const journal = await t.app.inject({ method: 'GET', url: '/_emulator/requests?limit=1000' })
      const text = journal.body
      const requests = journal.json().requests as { path: string; body: unknown }[]
      expect(requests.length).toBeGreaterThanOrEqual(9)
      expect(text).not.toContain(secret)
      expect(text).not.toContain(other)
      expect(requests.find((r) => r.path.includes('/proxy/'))?.path).toBe(
        `/v1/runs/${a.id}/proxy/8080/files/***/index.html`,
      )
      expect(
        requests.some((r) => (r.body as { command?: string })?.command === 'cat /tmp/***/x; echo ***'),
      ).toBe(true)
    } finally {
      await t.app.close()
    }
  })

  it('keeps only the head of a large body, and says so', async () => {
    const t = buildInjectApp(mkdtempSync(join(root, 'big-')))
    try {
      const big = { image: 'x'.repeat(2 * 1024 * 1024) }
      const res = await t.app.inject({ method: 'POST', url: '/v1/runs', headers: auth(), payload: big })
      expect(res.statusCode).toBe(400)
      const [entry] = (await t.app.inject({ method: 'GET', url: '/_emulator/requests?limit=1' })).json()
        .requests as { body: unknown; body_truncated?: boolean; body_bytes?: number }[]
      expect(entry?.body_truncated).toBe(true)
      expect(entry?.body_bytes).toBe(JSON.stringify(big).length)
      expect(typeof entry?.body).toBe('string')
      expect(String(entry?.body).length).toBeLessThanOrEqual(JOURNAL_BODY_LIMIT)
      expect(entry?.body as string).toMatch(/^\{"image":"xxx/)
    } finally {
      await t.app.close()
    }
  })

  it('holds at most its byte budget, dropping the oldest entries first', () => {
    const journal = new RequestJournal()
    const body = { command: 'y'.repeat(JOURNAL_BODY_LIMIT - 20) }
    for (let i = 0; i < 2000; i++)
      journal.record({
        at: '',
        method: 'POST',
        path: `/v1/runs/r${i}/exec`,
        key_hash: null,
        status: 400,
        duration_ms: 1,
        body,
      })
    const kept = journal.query({ limit: 1000 })
    expect(JSON.stringify(kept).length).toBeLessThanOrEqual(JOURNAL_MAX_BYTES)
    expect(kept[0]?.path).toBe('/v1/runs/r1999/exec')
    expect(kept.length).toBeGreaterThan(100)
  })
})
