import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { buildInjectApp } from './support/inject-app.ts'

const dataDir = mkdtempSync(join(tmpdir(), 'isorun-uploads-'))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))
const auth = { authorization: 'Bearer uploads-key' }

/** A body without a length (sent chunked), in pieces; counts what was read of it. */
function pieces(n: number, size: number) {
  const read = { bytes: 0 }
  const stream = Readable.from(
    (function* () {
      for (let i = 0; i < n; i++) {
        read.bytes += size
        yield Buffer.alloc(size, 97 + (i % 26))
      }
    })(),
  )
  return { stream, read }
}

describe('files/upload bodies', () => {
  let t: ReturnType<typeof buildInjectApp>
  beforeEach(() => {
    t = buildInjectApp(dataDir, { env: { ISORUN_EMULATOR_UPLOAD_LIMIT: String(1024 * 1024) } })
  })
  afterEach(() => t.app.close())

  const newRun = async () =>
    (await t.app.inject({ method: 'POST', url: '/v1/runs', headers: auth, payload: {} })).json().id as string
  const upload = (id: string, payload: Readable, key = auth) =>
    t.app.inject({
      method: 'POST',
      url: `/v1/runs/${id}/files/upload?path=/data/f.bin`,
      headers: { ...key, 'content-type': 'application/octet-stream' },
      payload,
    })
  const spooled = () => (existsSync(join(dataDir, 'uploads')) ? readdirSync(join(dataDir, 'uploads')) : [])

  it('takes a chunked upload whole, through a spool file that is gone afterwards', async () => {
    const id = await newRun()
    const { stream } = pieces(10, 64 * 1024)
    const res = await upload(id, stream)
    expect(res.statusCode).toBe(204)
    const stored = t.engine.files.get(`fake-${id}:/data/f.bin`)
    expect(stored?.length).toBe(640 * 1024)
    expect(stored?.subarray(64 * 1024 * 9, 64 * 1024 * 9 + 3).toString()).toBe('jjj')
    expect(spooled()).toEqual([])
  })

  it('refuses a chunked upload past the limit with 413 and keeps none of it', async () => {
    const id = await newRun()
    const res = await upload(id, pieces(40, 64 * 1024).stream)
    expect(res.statusCode).toBe(413)
    expect(res.json().code).toBe('payload_too_large')
    expect(t.engine.files.has(`fake-${id}:/data/f.bin`)).toBe(false)
    expect(spooled()).toEqual([])
  })

  it('answers 404 for another key’s run or an unknown one before reading the body', async () => {
    const id = await newRun()
    for (const [run, key] of [
      [id, { authorization: 'Bearer someone-else' }],
      ['runnosuchrun0000000000', auth],
    ] as const) {
      const { stream, read } = pieces(1000, 64 * 1024)
      const res = await upload(run, stream, key)
      expect(res.statusCode).toBe(404)
      expect(res.json().code).toBe('not_found')
      expect(read.bytes).toBeLessThan(1024 * 1024)
    }
  })

  it('answers an exec to an unknown run with 404 whatever its body', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/runs/runnosuchrun0000000000/exec',
      headers: auth,
      payload: { command: 'x'.repeat(1024 * 1024) },
    })
    expect(res.statusCode).toBe(404)
  })
})
