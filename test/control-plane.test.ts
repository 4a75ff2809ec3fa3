import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.ts'
import { type RunningServer, startServer } from '../src/server.ts'
import { FakeEngine } from './support/fake-engine.ts'
import { buildInjectApp } from './support/inject-app.ts'
import { RawHttpClient } from './support/raw-http.ts'

/**
 * Issue 12 item 4: the control plane (`/_emulator/*`) answers only the person running the emulator.
 * Real sockets on the fake engine (no Docker): the rules are the HTTP layer's.
 */

const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'isorun-control-plane-test-'))
  dirs.push(dir)
  return dir
}

async function start(env: Record<string, string> = {}): Promise<RunningServer> {
  return startServer(
    loadConfig({
      ISORUN_EMULATOR_PORT: '0',
      ISORUN_EMULATOR_DATA_DIR: tempDir(),
      ISORUN_EMULATOR_LOG_LEVEL: 'silent',
      ISORUN_EMULATOR_POOL: '0',
      ...env,
    }),
    { engine: new FakeEngine() },
  )
}

/**
 * One request with a Host header of our choosing (fetch will not send a foreign one): `request` is the
 * request line and any other header lines, `\n`-separated.
 */
async function withHost(
  port: number,
  host: string,
  request: string,
  body = '',
): Promise<{ status: number; body: string; headers: Record<string, string> }> {
  const client = await RawHttpClient.open(port)
  try {
    const [line, ...headers] = request.split('\n')
    const length = body ? [`Content-Length: ${body.length}`] : []
    const head = [line, `Host: ${host}`, ...headers, ...length, 'Connection: close'].join('\r\n')
    client.send(`${head}\r\n\r\n${body}`)
    const res = await client.response()
    return { status: res.status, body: res.body.toString('utf8'), headers: res.headers }
  } finally {
    client.close()
  }
}

describe('listening beyond loopback', () => {
  it('is refused without an admin token, naming the settings to change', () => {
    for (const host of ['0.0.0.0', '::', '[::]', '192.168.1.2', 'example.com']) {
      expect(() => loadConfig({ ISORUN_EMULATOR_HOST: host }), host).toThrow(
        /ISORUN_EMULATOR_HOST=.*beyond loopback.*ISORUN_EMULATOR_ADMIN_TOKEN/,
      )
    }
    for (const host of ['localhost', '::1', '[::1]', '127.0.0.1']) {
      expect(loadConfig({ ISORUN_EMULATOR_HOST: host }).host, host).toBe(host)
    }
    expect(loadConfig({ ISORUN_EMULATOR_HOST: '0.0.0.0', ISORUN_EMULATOR_ADMIN_TOKEN: 't0ken' }).host).toBe(
      '0.0.0.0',
    )
  })
})

describe('the control plane refuses peers beyond loopback unless an admin token is set', () => {
  const dataDir = tempDir()
  it('answers a loopback peer, refuses another one (403), and takes the token from anyone', async () => {
    const open = buildInjectApp(dataDir)
    try {
      const near = await open.app.inject({ url: '/_emulator/requests', remoteAddress: '127.0.0.1' })
      expect(near.statusCode).toBe(200)
      const mapped = await open.app.inject({ url: '/_emulator/requests', remoteAddress: '::ffff:127.0.0.1' })
      expect(mapped.statusCode).toBe(200)
      for (const remoteAddress of ['192.0.2.7', '172.17.0.2', '::ffff:10.0.0.1', 'fd00::2']) {
        const far = await open.app.inject({ url: '/_emulator/requests', remoteAddress })
        expect(far.statusCode, remoteAddress).toBe(403)
        expect(far.json().error).toMatchObject({ code: 'forbidden' })
        expect(far.json().error.message).toContain('ISORUN_EMULATOR_ADMIN_TOKEN')
        const reset = await open.app.inject({
          method: 'POST',
          url: '/_emulator/reset',
          remoteAddress,
          payload: {},
        })
        expect(reset.statusCode, remoteAddress).toBe(403)
      }
      // Public reads stay public.
      expect(
        (await open.app.inject({ url: '/_emulator/health', remoteAddress: '192.0.2.7' })).statusCode,
      ).toBe(200)
    } finally {
      await open.app.close()
    }
    const guarded = buildInjectApp(dataDir, { env: { ISORUN_EMULATOR_ADMIN_TOKEN: 'admin-secret' } })
    try {
      const far = { url: '/_emulator/requests', remoteAddress: '192.0.2.7' }
      expect((await guarded.app.inject(far)).statusCode).toBe(401)
      const withToken = await guarded.app.inject({
        ...far,
        headers: { authorization: 'Bearer admin-secret' },
      })
      expect(withToken.statusCode).toBe(200)
    } finally {
      await guarded.app.close()
    }
  })
})

describe('control-plane mutations (CSRF)', () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await start()
  })
  afterAll(() => server?.close())

  const call = (
    method: string,
    path: string,
    init: { headers?: Record<string, string>; body?: string } = {},
  ) => fetch(`${server.apiUrl}${path}`, { method, ...init })

  it('need a JSON content type: a bodiless or text/plain POST (what any web page can send) is 415', async () => {
    const unsafe: Record<string, string>[] = [
      {},
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/x-www-form-urlencoded' },
    ]
    for (const headers of unsafe) {
      const res = await call('POST', '/_emulator/reset', { headers, body: '{}' })
      expect(res.status, JSON.stringify(headers)).toBe(415)
      const { error } = (await res.json()) as { error: { code: string; message: string } }
      expect(error.code).toBe('unsupported_media_type')
      expect(error.message).toContain('application/json')
    }
    expect((await call('POST', '/_emulator/reset')).status).toBe(415)
    expect((await call('DELETE', '/_emulator/faults')).status).toBe(415)
    expect((await call('POST', '/_emulator/clock/advance', { body: 'seconds=1' })).status).toBe(415)
    const json = { 'content-type': 'application/json' }
    expect((await call('POST', '/_emulator/reset', { headers: json })).status).toBe(200)
    expect((await call('DELETE', '/_emulator/faults', { headers: json })).status).toBe(200)
    expect(
      (
        await call('POST', '/_emulator/reset', {
          headers: { 'content-type': 'Application/JSON; charset=utf-8' },
          body: '{}',
        })
      ).status,
    ).toBe(200)
  })

  it('refuse a foreign Origin (403) and accept the emulator’s own', async () => {
    const own = new URL(server.apiUrl).origin
    for (const origin of ['http://evil.example', 'null', 'http://127.0.0.1:1', 'https://[::1]']) {
      const res = await call('POST', '/_emulator/reset', {
        headers: { 'content-type': 'application/json', origin },
        body: '{}',
      })
      expect(res.status, origin).toBe(403)
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain('Origin')
    }
    const ok = await call('POST', '/_emulator/reset', {
      headers: { 'content-type': 'application/json', origin: own },
      body: '{}',
    })
    expect(ok.status).toBe(200)
  })
})

describe('the Host header (DNS rebinding)', () => {
  let server: RunningServer
  let named: RunningServer
  beforeAll(async () => {
    server = await start()
    named = await start({ ISORUN_EMULATOR_ALLOWED_HOSTS: 'emulator.internal, Other.Example' })
  })
  afterAll(async () => {
    await server?.close()
    await named?.close()
  })

  it('must be one of the emulator’s own names: a foreign one is 403 on every route', async () => {
    const requests = [
      'GET /_emulator/health HTTP/1.1',
      'GET /_emulator/requests HTTP/1.1',
      'POST /_emulator/reset HTTP/1.1\nContent-Type: application/json',
      'GET /v1/runs HTTP/1.1\nAuthorization: Bearer some-key',
      // Root DevTools discovery hands out a run id: a rebinding page must not get one.
      'GET /json/version HTTP/1.1',
      // url(port), through the fast lane and as an upgrade.
      'GET /v1/runs/run_nonexistent/proxy/8080/ HTTP/1.1',
      'GET /v1/runs/run_nonexistent/proxy/8080/ws HTTP/1.1\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ]
    for (const request of requests) {
      for (const host of [
        'evil.example',
        `evil.example:${server.port}`,
        'localhost.evil.example',
        '127.0.0.1.nip.io',
      ]) {
        const res = await withHost(server.port, host, request, request.startsWith('POST') ? '{}' : '')
        expect({ request, host, status: res.status }).toEqual({ request, host, status: 403 })
        expect(res.body).toContain('forbidden')
        expect(res.body).toContain('ISORUN_EMULATOR_ALLOWED_HOSTS')
      }
    }
  })

  it('accepts loopback names, any IP address and any port (a published one in a container)', async () => {
    for (const host of [
      'localhost',
      `localhost:${server.port}`,
      'LOCALHOST:1',
      '127.0.0.1:9',
      '[::1]',
      `[::1]:${server.port}`,
      '10.1.2.3:8731',
      '[fd00::5]:80',
      'localhost.',
    ]) {
      const res = await withHost(server.port, host, 'GET /_emulator/health HTTP/1.1')
      expect({ host, status: res.status }).toEqual({ host, status: 200 })
    }
  })

  it('accepts the names ISORUN_EMULATOR_ALLOWED_HOSTS adds', async () => {
    for (const host of ['emulator.internal:8731', 'other.example']) {
      expect((await withHost(named.port, host, 'GET /_emulator/health HTTP/1.1')).status, host).toBe(200)
    }
    expect((await withHost(named.port, 'evil.example', 'GET /_emulator/health HTTP/1.1')).status).toBe(403)
  })
})
