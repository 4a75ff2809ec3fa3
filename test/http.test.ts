import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { FakeEngine } from './support/fake-engine.ts'
import { buildInjectApp } from './support/inject-app.ts'

const dataDir = mkdtempSync(join(tmpdir(), 'isorun-http-test-'))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

function build(env: Record<string, string> = {}, engine = new FakeEngine()) {
  return buildInjectApp(dataDir, { env, engine })
}

const auth = (key = 'k1') => ({ authorization: `Bearer ${key}` })

describe('HTTP layer (app.inject, no Docker)', () => {
  let t: ReturnType<typeof build>
  beforeEach(() => {
    t = build()
  })
  afterEach(() => t.app.close())

  const create = (body: unknown, key = 'k1') =>
    t.app.inject({ method: 'POST', url: '/v1/runs', headers: auth(key), payload: body as object })

  describe('auth', () => {
    it('answers a /v1 request without a bearer token with 401 and the error shape', async () => {
      const res = await t.app.inject({ method: 'GET', url: '/v1/runs' })
      expect(res.statusCode).toBe(401)
      expect(res.json()).toEqual({
        error: 'missing API key: send Authorization: Bearer <key>',
        code: 'unauthorized',
      })
    })

    it('accepts any non-empty key when none are configured', async () => {
      const res = await t.app.inject({ method: 'GET', url: '/v1/runs', headers: auth('anything') })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({ runs: [] })
    })

    it('accepts only configured keys when --api-key is given', async () => {
      const strict = build({ ISORUN_EMULATOR_API_KEYS: 'good-1,good-2' })
      const bad = await strict.app.inject({ method: 'GET', url: '/v1/runs', headers: auth('nope') })
      expect(bad.statusCode).toBe(401)
      expect(bad.json().error).toBe('invalid API key')
      const good = await strict.app.inject({ method: 'GET', url: '/v1/runs', headers: auth('good-2') })
      expect(good.statusCode).toBe(200)
      await strict.app.close()
    })

    it('needs no auth for the emulator namespace', async () => {
      const res = await t.app.inject({ method: 'GET', url: '/_emulator/health' })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({ status: 'ok' })
    })
  })

  describe('validation', () => {
    it.each([
      [{ vcpus: 'two' }, 'body.vcpus'],
      [{ vcpus: 0 }, 'body.vcpus'],
      [{ mem_mib: 1.5 }, 'body.mem_mib'],
      [{ disk_mib: -1 }, 'body.disk_mib'],
      [{ timeout: -5 }, 'body.timeout'],
      [{ image: '' }, 'body.image'],
      [{ credentials: { 'BAD NAME': 'x' } }, 'body.credentials.BAD NAME'],
      [{ network: { allow: 'example.com' } }, 'body.network.allow'],
    ])('rejects create body %j with a 400 naming %s', async (body, field) => {
      const res = await create(body)
      expect(res.statusCode).toBe(400)
      const err = res.json()
      expect(err.code).toBe('validation_failed')
      expect(err.details.field).toBe(field)
      expect(err.error.startsWith(`${field}:`)).toBe(true)
      expect(t.engine.created).toHaveLength(0)
    })

    it('applies the SDK defaults to an empty body', async () => {
      const res = await create({})
      expect(res.statusCode).toBe(201)
      expect(res.json()).toMatchObject({
        // The image that runs for the SDK's default: the image map's stand-in.
        image: 'isorun-emulator-stand-in/node:22',
        vcpus: 1,
        mem_mib: 1024,
        disk_mib: 4096,
        timeout: 300,
      })
      expect(t.engine.created[0]?.env).toEqual({})
    })

    it('rejects malformed JSON with a 400 in the same shape', async () => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: { ...auth(), 'content-type': 'application/json' },
        payload: '{"image": ',
      })
      expect(res.statusCode).toBe(400)
      expect(res.json().code).toBe('validation_failed')
      expect(res.json().error).toMatch(/^body: invalid JSON/)
    })

    it('rejects an exec without a command and a file path that is not absolute', async () => {
      const id = (await create({ image: 'busybox:latest' })).json().id
      const exec = await t.app.inject({
        method: 'POST',
        url: `/v1/runs/${id}/exec`,
        headers: auth(),
        payload: {},
      })
      expect(exec.statusCode).toBe(400)
      expect(exec.json().details.field).toBe('body.command')
      const file = await t.app.inject({
        method: 'GET',
        url: `/v1/runs/${id}/files?path=etc`,
        headers: auth(),
      })
      expect(file.statusCode).toBe(400)
      expect(file.json().error).toBe('query.path: must be an absolute path')
      const missing = await t.app.inject({
        method: 'GET',
        url: `/v1/runs/${id}/files/download`,
        headers: auth(),
      })
      expect(missing.statusCode).toBe(400)
      expect(missing.json().details.field).toBe('query.path')
    })

    // What cannot reach the engine as it was sent is refused, never changed on the way: a NUL ends a C
    // string (exec argv, environment, paths), a lone surrogate becomes U+FFFD in UTF-8.
    it.each([
      ['an exec command with NUL', 'exec', { command: 'echo a\u0000b' }, 'body.command', /NUL/],
      [
        'an exec command with a lone surrogate',
        'exec',
        { command: 'echo \ud800' },
        'body.command',
        /Unicode/,
      ],
      [
        'a credential value with NUL',
        'create',
        { credentials: { TOKEN: 'a\u0000b' } },
        'body.credentials.TOKEN',
        /NUL/,
      ],
      [
        'a credential value with a lone surrogate',
        'create',
        { credentials: { TOKEN: '\udc00' } },
        'body.credentials.TOKEN',
        /Unicode/,
      ],
      ['a credential name with =', 'create', { credentials: { 'A=B': 'x' } }, 'body.credentials.A=B', /name/],
      ['an empty credential name', 'create', { credentials: { '': 'x' } }, 'body.credentials.', /name/],
      [
        'a credential name with NUL',
        'create',
        { credentials: { 'A\u0000': 'x' } },
        'body.credentials.A\u0000',
        /name/,
      ],
      // The engine counts whole milliseconds: 0.0001 s would have become 0, which means no limit at all.
      [
        'an exec timeout under a millisecond',
        'exec',
        { command: 'true', timeout: 0.0001 },
        'body.timeout',
        /0\.001/,
      ],
    ])('refuses %s with a 400 naming the field', async (_what, route, body, field, why) => {
      const id = (await create({ image: 'busybox:latest' })).json().id
      const before = t.engine.created.length
      const res =
        route === 'exec'
          ? await t.app.inject({ method: 'POST', url: `/v1/runs/${id}/exec`, headers: auth(), payload: body })
          : await create(body)
      expect(res.statusCode).toBe(400)
      expect(res.json()).toMatchObject({ code: 'validation_failed', details: { field } })
      expect(res.json().error).toMatch(why)
      expect(t.engine.created.length).toBe(before)
    })

    it('refuses a file path with NUL, for reading, listing and writing alike', async () => {
      const id = (await create({ image: 'busybox:latest' })).json().id
      for (const [method, route] of [
        ['GET', 'files'],
        ['GET', 'files/download'],
        ['POST', 'files/upload'],
      ] as const) {
        const res = await t.app.inject({
          method,
          url: `/v1/runs/${id}/${route}?path=/tmp/a%00b`,
          headers: { ...auth(), 'content-type': 'application/octet-stream' },
          ...(method === 'POST' ? { payload: Buffer.from('x') } : {}),
        })
        expect(res.statusCode, route).toBe(400)
        expect(res.json()).toMatchObject({ code: 'validation_failed', details: { field: 'query.path' } })
      }
      expect(t.engine.files.size).toBe(0)
    })

    it('answers an unknown network profile or an invalid rule with a 400 naming it', async () => {
      const unknown = await create({ network_profile: 'no-such-profile' })
      expect(unknown.statusCode).toBe(400)
      expect(unknown.json().details.field).toBe('body.network_profile')
      expect(unknown.json().error).toContain('no-such-profile')
      const bad = await create({ network: { allow: ['ok.example', 'https://x.example/path'] } })
      expect(bad.statusCode).toBe(400)
      expect(bad.json().details.field).toBe('body.network.allow.1')
    })

    it('refuses a policy an engine cannot isolate (409) instead of creating an unrestricted sandbox', async () => {
      const res = await create({ network_profile: 'none' })
      expect(res.statusCode).toBe(409)
      expect(res.json().code).toBe('capability_unavailable')
      expect(t.engine.created).toHaveLength(0)
      // `default` (and an empty policy) restrict nothing: an ordinary sandbox.
      expect((await create({ network_profile: 'default', network: { allow: [] } })).statusCode).toBe(201)
    })
  })

  describe('error mapping', () => {
    it('maps an unknown run to 404 and another key’s run to the same 404', async () => {
      const id = (await create({ image: 'busybox:latest' })).json().id
      const unknown = await t.app.inject({
        method: 'GET',
        url: '/v1/runs/run00000000000000000000',
        headers: auth(),
      })
      expect(unknown.statusCode).toBe(404)
      expect(unknown.json()).toEqual({
        error: 'sandbox run00000000000000000000 not found',
        code: 'not_found',
        details: { id: 'run00000000000000000000' },
      })
      const foreign = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}`, headers: auth('k2') })
      expect(foreign.statusCode).toBe(404)
    })

    it('maps an image that cannot be had to 400 image_unavailable naming it', async () => {
      const res = await create({ image: 'missing/thing:1' })
      expect(res.statusCode).toBe(400)
      expect(res.json().code).toBe('image_unavailable')
      expect(res.json().error).toContain('missing/thing:1')
    })

    it('answers an unknown route with a JSON 404', async () => {
      const res = await t.app.inject({ method: 'GET', url: '/v1/nothing-here', headers: auth() })
      expect(res.statusCode).toBe(404)
      expect(res.json().code).toBe('route_not_found')
    })

    it('reports an unreachable engine as 503 on health', async () => {
      t.engine.reachable = false
      const res = await t.app.inject({ method: 'GET', url: '/_emulator/health' })
      expect(res.statusCode).toBe(503)
      expect(res.json().code).toBe('engine_unavailable')
      expect(res.json().error).toContain('docker.sock')
    })

    it('uploads any content type as raw bytes, JSON included, and rejects oversize uploads with 413', async () => {
      const id = (await create({ image: 'busybox:latest' })).json().id
      const json = await t.app.inject({
        method: 'POST',
        url: `/v1/runs/${id}/files/upload?path=/a.json`,
        headers: { ...auth(), 'content-type': 'application/json' },
        payload: '{"not": "parsed"}',
      })
      expect(json.statusCode).toBe(204)
      const down = await t.app.inject({
        method: 'GET',
        url: `/v1/runs/${id}/files/download?path=/a.json`,
        headers: auth(),
      })
      expect(down.body).toBe('{"not": "parsed"}')
      const small = build({ ISORUN_EMULATOR_UPLOAD_LIMIT: '10' }, t.engine)
      const id2 = (
        await small.app.inject({
          method: 'POST',
          url: '/v1/runs',
          headers: auth(),
          payload: { image: 'busybox:latest' },
        })
      ).json().id
      const big = await small.app.inject({
        method: 'POST',
        url: `/v1/runs/${id2}/files/upload?path=/big`,
        headers: { ...auth(), 'content-type': 'application/octet-stream' },
        payload: Buffer.alloc(11),
      })
      expect(big.statusCode).toBe(413)
      expect(big.json().code).toBe('payload_too_large')
      await small.app.close()
    })

    it('reports fork children that failed to start beside those that did', async () => {
      const id = (await create({ image: 'busybox:latest' })).json().id
      t.engine.failRestores = new Set([1])
      const res = await t.app.inject({
        method: 'POST',
        url: `/v1/runs/${id}/fork`,
        headers: auth(),
        payload: { count: 3 },
      })
      expect(res.statusCode).toBe(201)
      const body = res.json()
      expect(body.forks).toHaveLength(2)
      expect(body.failed).toEqual([{ index: 1, code: 'engine_error', message: 'fake restore 1 failed' }])
    })

    it('fails a fork whose every child failed, naming the cause', async () => {
      const id = (await create({ image: 'busybox:latest' })).json().id
      t.engine.failRestores = new Set([0, 1])
      const res = await t.app.inject({
        method: 'POST',
        url: `/v1/runs/${id}/fork`,
        headers: auth(),
        payload: { count: 2 },
      })
      expect(res.statusCode).toBe(500)
      expect(res.json().error).toContain('every fork child failed to start')
    })

    it('answers a restore of an unknown snapshot with 404 and a fork count out of range with 400', async () => {
      const restore = await t.app.inject({
        method: 'POST',
        url: '/v1/runs/restore',
        headers: auth(),
        payload: { snapshot_id: 'snapnope' },
      })
      expect(restore.statusCode).toBe(404)
      expect(restore.json().error).toBe('snapshot snapnope not found')
      const id = (await create({ image: 'busybox:latest' })).json().id
      const fork = await t.app.inject({
        method: 'POST',
        url: `/v1/runs/${id}/fork`,
        headers: auth(),
        payload: { count: 21 },
      })
      expect(fork.statusCode).toBe(400)
      expect(fork.json().details.field).toBe('body.count')
    })

    it('lists the network profiles as a bare array', async () => {
      const res = await t.app.inject({ method: 'GET', url: '/v1/network-profiles', headers: auth() })
      expect(res.statusCode).toBe(200)
      expect(res.json().map((p: { name: string }) => p.name)).toEqual(['default', 'none', 'web-dev'])
    })
  })
})
