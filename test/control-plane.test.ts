import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
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
        expect(far.json()).toMatchObject({ code: 'forbidden' })
        expect(far.json().error).toContain('ISORUN_EMULATOR_ADMIN_TOKEN')
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
  ) => fetch(`${server.adminUrl}${path}`, { method, ...init })

  it('need a JSON content type: a bodiless or text/plain POST (what any web page can send) is 415', async () => {
    const unsafe: Record<string, string>[] = [
      {},
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/x-www-form-urlencoded' },
    ]
    for (const headers of unsafe) {
      const res = await call('POST', '/_emulator/reset', { headers, body: '{}' })
      expect(res.status, JSON.stringify(headers)).toBe(415)
      const body = (await res.json()) as { error: string; code: string }
      expect(body.code).toBe('unsupported_media_type')
      expect(body.error).toContain('application/json')
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
    const own = new URL(server.adminUrl).origin
    for (const origin of ['http://evil.example', 'null', 'http://127.0.0.1:1', 'https://[::1]']) {
      const res = await call('POST', '/_emulator/reset', {
        headers: { 'content-type': 'application/json', origin },
        body: '{}',
      })
      expect(res.status, origin).toBe(403)
      expect(((await res.json()) as { error: string }).error).toContain('Origin')
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

describe('two origins: the API’s (with url(port)) and the dashboard’s (with the control plane)', () => {
  let server: RunningServer
  let slow: RunningServer
  let guarded: RunningServer
  let guest: HttpServer
  let guestPort = 0
  const key = 'origins-test-key'
  const tenant = createHash('sha256').update(key).digest('hex')
  let runId = ''

  beforeAll(async () => {
    // The fake engine's sandboxes are at 127.0.0.1: this server is every sandbox's guest port.
    guest = createHttpServer((_req, res) => res.end('guest page'))
    await new Promise<void>((resolve) => guest.listen(0, '127.0.0.1', resolve))
    guestPort = (guest.address() as AddressInfo).port
    server = await start()
    slow = await start({ ISORUN_EMULATOR_FAST_PROXY: '0' })
    guarded = await start({ ISORUN_EMULATOR_ADMIN_TOKEN: 'admin-secret' })
    const created = await fetch(`${server.apiUrl}/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ timeout: 300 }),
    })
    runId = ((await created.json()) as { id: string }).id
  })
  afterAll(async () => {
    await server?.close()
    await slow?.close()
    await guarded?.close()
    guest?.close()
  })

  // The error body as text: its code and message are in it whatever its shape.
  const bodyOf = (res: Response) => res.text()

  it('listen on two ports of the same host, the dashboard’s the API’s + 1 by default', () => {
    expect(new URL(server.adminUrl).hostname).toBe(new URL(server.apiUrl).hostname)
    expect(server.adminPort).not.toBe(server.port)
    expect(loadConfig({}).adminPort).toBe(8732)
    expect(loadConfig({ ISORUN_EMULATOR_PORT: '9000' }).adminPort).toBe(9001)
    expect(loadConfig({ ISORUN_EMULATOR_PORT: '0' }).adminPort).toBe(0)
    expect(() => loadConfig({ ISORUN_EMULATOR_PORT: '9000', ISORUN_EMULATOR_ADMIN_PORT: '9000' })).toThrow(
      /ISORUN_EMULATOR_ADMIN_PORT=9000 is the API's port/,
    )
  })

  it('the API’s origin serves /v1 and url(port), not the dashboard nor the control plane (404 naming where)', async () => {
    const page = await fetch(`${server.apiUrl}/v1/runs/${runId}/proxy/${guestPort}/`)
    expect(await page.text()).toBe('guest page')
    const json = { 'content-type': 'application/json' }
    for (const [method, path] of [
      ['GET', '/_emulator/ui'],
      ['GET', '/_emulator/requests'],
      ['GET', '/_emulator/tenants'],
      ['GET', '/_emulator/faults'],
      ['POST', '/_emulator/reset'],
      ['POST', '/_emulator/clock/advance'],
      ['GET', '/_emulator/%75i'],
    ] as const) {
      const res = await fetch(`${server.apiUrl}${path}`, {
        method,
        headers: json,
        body: method === 'POST' ? '{}' : undefined,
      })
      expect({ path, status: res.status }).toEqual({ path, status: 404 })
      const body = await bodyOf(res)
      expect(body).toContain('route_not_found')
      expect(body).toContain(server.adminUrl)
    }
    // The reset above did nothing.
    expect(
      (await fetch(`${server.apiUrl}/v1/runs/${runId}`, { headers: { authorization: `Bearer ${key}` } }))
        .status,
    ).toBe(200)
    for (const path of ['/_emulator/health', '/_emulator/capabilities', '/_emulator/openapi.json']) {
      expect((await fetch(`${server.apiUrl}${path}`)).status, path).toBe(200)
    }
  })

  it('the dashboard’s origin serves the dashboard, the control plane and /v1, never a url(port) page', async () => {
    expect((await fetch(`${server.adminUrl}/_emulator/ui`)).status).toBe(200)
    expect((await fetch(`${server.adminUrl}/_emulator/requests`)).status).toBe(200)
    const runs = await fetch(`${server.adminUrl}/v1/runs`, { headers: { authorization: `Bearer ${key}` } })
    expect(((await runs.json()) as { runs: { id: string }[] }).runs.map((r) => r.id)).toEqual([runId])
    // url(port) through the fast lane, through the routes (fast lane off, or a spelling it leaves to
    // them), as an upgrade, and root DevTools discovery.
    for (const s of [server, slow]) {
      for (const path of [
        `/v1/runs/${runId}/proxy/${guestPort}/`,
        `/v1/runs/${runId}/proxy/${guestPort}`,
        `/v1/runs/${runId}/%70roxy/${guestPort}/`,
        '/json/version',
      ]) {
        const res = await fetch(`${s.adminUrl}${path}`)
        const text = await res.text()
        expect({ path, status: res.status }).toEqual({ path, status: 404 })
        expect(text).not.toContain('guest page')
      }
    }
    const upgrade = await withHost(
      server.adminPort,
      'localhost',
      `GET /v1/runs/${runId}/proxy/${guestPort}/ws HTTP/1.1\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==`,
    )
    expect(upgrade.status).toBe(404)
    expect(upgrade.body).toContain("the API's origin")
    // And the Host rule holds there too.
    expect((await withHost(server.adminPort, 'evil.example', 'GET /_emulator/ui HTTP/1.1')).status).toBe(403)
  })

  it('root DevTools discovery (which names a run id) answers DevTools clients, never a web page', async () => {
    // Discovery at the root looks for the one running sandbox with a server on the DevTools port.
    const cdp = await start({
      ISORUN_EMULATOR_CDP_DISCOVERY: 'on',
      ISORUN_EMULATOR_CDP_PORT: String(guestPort),
    })
    try {
      await fetch(`${cdp.apiUrl}/v1/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: '{}',
      })
      const ask = (headers: Record<string, string>) => fetch(`${cdp.apiUrl}/json/version`, { headers })
      // puppeteer and Node's fetch send neither header; a person's own navigation says `none`.
      for (const headers of [{}, { 'sec-fetch-site': 'none' }] as Record<string, string>[]) {
        const res = await ask(headers)
        expect({ headers, status: res.status }).toEqual({ headers, status: 200 })
        expect(await res.text()).toBe('guest page')
      }
      // What browsers send with a page's requests: the page a guest serves on this origin included.
      for (const headers of [
        { 'sec-fetch-site': 'same-origin' },
        { 'sec-fetch-site': 'cross-site' },
        { origin: new URL(cdp.apiUrl).origin },
        { origin: 'http://evil.example' },
      ] as Record<string, string>[]) {
        const res = await ask(headers)
        expect({ headers, status: res.status }).toEqual({ headers, status: 403 })
        const text = await res.text()
        expect(text).not.toContain('guest page')
        expect(text).toContain('web pages')
      }
    } finally {
      await cdp.close()
    }
  })

  it('lists every tenant to the person running the emulator, who may view one without its key', async () => {
    const listed = (await (await fetch(`${server.adminUrl}/_emulator/tenants`)).json()) as {
      tenants: {
        tenant: string
        sandboxes: { id: string; idle_deadline_at: string | null; network: unknown }[]
      }[]
    }
    const mine = listed.tenants.find((t) => t.tenant === tenant)
    expect(mine?.sandboxes.map((s) => s.id)).toEqual([runId])
    expect(mine?.sandboxes[0]?.idle_deadline_at).toMatch(/^\d{4}-\d\d-\d\dT/)
    expect(mine?.sandboxes[0]?.network).toBeNull()
    const asTenant = await fetch(`${server.adminUrl}/v1/runs`, {
      headers: { 'x-isorun-emulator-tenant': tenant },
    })
    expect(((await asTenant.json()) as { runs: { id: string }[] }).runs.map((r) => r.id)).toEqual([runId])
    const bad = await fetch(`${server.adminUrl}/v1/runs`, { headers: { 'x-isorun-emulator-tenant': 'nope' } })
    expect(bad.status).toBe(400)
    // Not on the API's origin (url(port) pages are there), and not where an admin token is the proof.
    const onApi = await fetch(`${server.apiUrl}/v1/runs`, { headers: { 'x-isorun-emulator-tenant': tenant } })
    expect(onApi.status).toBe(401)
    expect(await bodyOf(onApi)).toContain('x-isorun-emulator-tenant')
    const withToken = await fetch(`${guarded.adminUrl}/v1/runs`, {
      headers: { 'x-isorun-emulator-tenant': tenant },
    })
    expect(withToken.status).toBe(401)
    expect((await fetch(`${guarded.adminUrl}/_emulator/tenants`)).status).toBe(401)
  })
})
