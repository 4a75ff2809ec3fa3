import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, request, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Sandbox } from 'isorun'
import puppeteer from 'puppeteer-core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { App } from '../src/app.ts'
import { bearerToken } from '../src/net/bearer.ts'
import { isProxyUrl, parseProxyUrl, proxyPrefix } from '../src/proxy/proxy-url.ts'
import { rewriteCdpDiscovery, rewriteLocation } from '../src/proxy/rewrite.ts'
import type { Clock } from '../src/sandboxes/clock.ts'
import type { SandboxEvent } from '../src/sandboxes/events.ts'
import { hashApiKey } from '../src/sandboxes/ids.ts'
import { FakeEngine } from './support/fake-engine.ts'
import { type Echo, startGuest } from './support/guest.ts'
import { buildInjectApp } from './support/inject-app.ts'
import { apiUrl, describeWithDocker, newApiKey, newClient, sandboxTracker, waitFor } from './support/sdk.ts'

/** Resolves with the next message (or rejects on error/close). */
function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    ws.addEventListener('message', (e) => resolve(String(e.data)), { once: true })
    ws.addEventListener('error', () => reject(new Error('websocket error')), { once: true })
    ws.addEventListener('close', (e) => reject(new Error(`websocket closed (${e.code})`)), { once: true })
  })
}

function openWebSocket(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url)
  return new Promise((resolve, reject) => {
    ws.addEventListener('open', () => resolve(ws), { once: true })
    ws.addEventListener('error', () => reject(new Error(`websocket to ${url} failed`)), { once: true })
  })
}

const toWs = (url: string) => url.replace(/^http/, 'ws')

const echoOf = async (res: Response | Promise<Response>) => (await (await res).json()) as Echo

type CdpTarget = Record<string, string>
const cdpOf = async <T extends CdpTarget | CdpTarget[]>(res: Response | Promise<Response>) =>
  (await (await res).json()) as T

describeWithDocker('url(port) through the real SDK', () => {
  const key = newApiKey()
  const isorun = newClient(key)
  const track = sandboxTracker()
  const publicHost = new URL(apiUrl).host
  let s: Sandbox
  let prefix: string

  beforeAll(async () => {
    s = track(await isorun.create({ image: 'node:22-slim' }))
    prefix = `/v1/runs/${s.id}/proxy/8080`
    await startGuest(s, 'app.mjs', 8080, '/hello')
    await startGuest(s, 'cdp.mjs', 9222, '/json/version')
  })

  it('forwards GET with path and query exactly, to a guest reached without any API key', async () => {
    const res = await fetch(s.url(8080, '/echo/a%20b/?x=1&y=two&x=3'))
    expect(res.status).toBe(200)
    const seen = await echoOf(res)
    expect(seen.method).toBe('GET')
    expect(seen.url).toBe('/echo/a%20b/?x=1&y=two&x=3')
    // Repeated response headers survive.
    expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/'])
  })

  it('maps the bare prefix to the guest root, with or without a slash', async () => {
    expect((await echoOf(fetch(s.url(8080)))).url).toBe('/')
    expect((await echoOf(fetch(`${apiUrl}${prefix}`))).url).toBe('/')
    expect((await echoOf(fetch(`${apiUrl}${prefix}?q=1`))).url).toBe('/?q=1')
  })

  it('forwards request bodies of any content type, as sent, for every method', async () => {
    const json = await fetch(s.url(8080, '/echo'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hello: 'world' }),
    })
    const seen = await echoOf(json)
    expect(seen).toMatchObject({ method: 'POST', body: '{"hello":"world"}' })
    expect(seen.headers['content-type']).toBe('application/json')

    const bytes = randomBytes(8 * 1024 * 1024 + 3)
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      const res = await fetch(s.url(8080, '/upload'), { method, body: bytes })
      const out = await echoOf(res)
      expect(out).toMatchObject({ method, bodyLength: bytes.length })
      expect(out.sha256).toBe(createHash('sha256').update(bytes).digest('hex'))
    }

    // A chunked upload (no Content-Length), with a content type Fastify would otherwise refuse to parse.
    const chunks = [Buffer.from('part one, '), Buffer.from('part two')]
    const stream = new ReadableStream({
      start(controller) {
        for (const c of chunks) controller.enqueue(c)
        controller.close()
      },
    })
    const chunked = await fetch(s.url(8080, '/chunked'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-weird' },
      body: stream,
      duplex: 'half',
    } as RequestInit)
    expect(await echoOf(chunked)).toMatchObject({ body: 'part one, part two', bodyLength: 18 })

    const head = await fetch(s.url(8080, '/hello'), { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe('2')
  })

  it('streams a large download without buffering it (the bytes before a pause arrive before it)', async () => {
    const mb = 64
    const started = performance.now()
    const res = await fetch(s.url(8080, `/big?mb=${mb}&pause=1000`))
    expect(res.status).toBe(200)
    let received = 0
    let halfAt = 0
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      received += value.length
      if (!halfAt && received >= (mb / 2) * 1024 * 1024) halfAt = performance.now()
    }
    const endAt = performance.now()
    expect(received).toBe(mb * 1024 * 1024)
    // The guest pauses 1 s after the first half: a buffering proxy would deliver both halves at the end.
    expect(endAt - halfAt).toBeGreaterThan(700)
    expect(halfAt - started).toBeLessThan(endAt - started - 700)
  })

  it('delivers server-sent events as they are written', async () => {
    const started = performance.now()
    const res = await fetch(s.url(8080, '/sse?n=3&interval=500'))
    expect(res.headers.get('content-type')).toBe('text/event-stream')
    const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader()
    const arrivals: [number, string][] = []
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      arrivals.push([performance.now() - started, value])
    }
    const text = arrivals.map(([, v]) => v).join('')
    expect(text).toBe('id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n')
    const first = arrivals[0]?.[0] ?? 0
    const last = arrivals.at(-1)?.[0] ?? 0
    // Three events 500 ms apart: the first arrives about a second before the last. A buffering proxy
    // delivers them together (0 ms apart); a busy machine delays single arrivals by a few hundred ms.
    expect(last - first).toBeGreaterThan(500)
  })

  it('passes WebSocket upgrades through both ways, on both loopback addresses', async () => {
    const ws = await openWebSocket(toWs(s.url(8080, '/ws')))
    ws.send('hello')
    expect(await nextMessage(ws)).toBe('echo: hello')
    const big = 'z'.repeat(70_000)
    ws.send(big)
    expect(await nextMessage(ws)).toBe(`echo: ${big}`)
    ws.close()

    // 127.0.0.1 connections reach the same server through src/server.ts's second listener.
    const port = new URL(apiUrl).port
    const v4 = await openWebSocket(`ws://127.0.0.1:${port}${prefix}/ws`)
    v4.send('over IPv4')
    expect(await nextMessage(v4)).toBe('echo: over IPv4')
    v4.close()
  })

  it('answers a WebSocket to a closed port or an unknown run with an HTTP error', async () => {
    await expect(openWebSocket(toWs(s.url(4999, '/ws')))).rejects.toThrow(/failed/)
    const raw = await rawUpgrade(`${apiUrl}/v1/runs/run00000000000000000000/proxy/8080/ws`)
    expect(raw).toMatch(/^HTTP\/1.1 404 /)
    expect(raw).toContain('"code":"not_found"')
    const closed = await rawUpgrade(s.url(4999, '/ws'))
    expect(closed).toMatch(/^HTTP\/1.1 502 /)
    expect(closed).toContain('"code":"bad_gateway"')
  })

  it('rewrites Chrome DevTools discovery so its WebSocket URLs lead through the proxy', async () => {
    const cdpPrefix = `/v1/runs/${s.id}/proxy/9222`
    const version = await cdpOf<CdpTarget>(fetch(s.url(9222, '/json/version')))
    const wsUrl = `ws://${publicHost}${cdpPrefix}/devtools/browser/b1c2d3e4-0000-4000-8000-000000000001`
    expect(version.webSocketDebuggerUrl).toBe(wsUrl)
    expect(version.Browser).toBe('FakeChrome/1.0')

    for (const path of ['/json/list', '/json']) {
      const [page] = await cdpOf<CdpTarget[]>(fetch(s.url(9222, path)))
      expect(page?.webSocketDebuggerUrl).toBe(
        `ws://${publicHost}${cdpPrefix}/devtools/page/PAGE0000000000000000000000000001`,
      )
      expect(page?.devtoolsFrontendUrl).toBe(
        `${cdpPrefix}/devtools/inspector.html?ws=${publicHost}${cdpPrefix}/devtools/page/PAGE0000000000000000000000000001`,
      )
    }

    // The rewritten URL works: the fake browser (which, like Chrome, insists on a localhost Host) echoes
    // plain text with the path it arrived on, and answers CDP commands.
    const ws = await openWebSocket(version.webSocketDebuggerUrl ?? '')
    ws.send('hello')
    expect(await nextMessage(ws)).toBe('cdp /devtools/browser/b1c2d3e4-0000-4000-8000-000000000001: hello')
    ws.send('{"id":1,"method":"Browser.getVersion"}')
    expect(JSON.parse(await nextMessage(ws))).toMatchObject({ id: 1, result: { product: 'FakeChrome/1.0' } })
    ws.close()
  })

  it('lets puppeteer.connect({ browserURL: sandbox.url(9222) }) drive the browser in the sandbox', async () => {
    // puppeteer-core >= 25.13 fetches <browserURL>/json/version, so the prefix is kept and the rewritten
    // webSocketDebuggerUrl leads back through the proxy.
    const browser = await puppeteer.connect({ browserURL: s.url(9222), protocolTimeout: 10_000 })
    try {
      expect(await browser.version()).toBe('FakeChrome/1.0')
      expect(browser.wsEndpoint()).toBe(
        `ws://${publicHost}/v1/runs/${s.id}/proxy/9222/devtools/browser/b1c2d3e4-0000-4000-8000-000000000001`,
      )
    } finally {
      await browser.disconnect()
    }
  })

  it('answers a closed port with a fast 502 naming the port', async () => {
    const started = performance.now()
    const res = await fetch(s.url(4999, '/anything'))
    const elapsed = performance.now() - started
    expect(res.status).toBe(502)
    const body = (await res.json()) as { error: string; code: string; details: unknown }
    expect(body.code).toBe('bad_gateway')
    expect(body.error).toContain('4999')
    expect(body.details).toMatchObject({ port: 4999, id: s.id })
    expect(elapsed).toBeLessThan(1000)
  })

  it('answers an unknown run with a 404 in the standard error shape', async () => {
    const res = await fetch(`${apiUrl}/v1/runs/run00000000000000000000/proxy/8080/`)
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({
      error: 'sandbox run00000000000000000000 not found',
      code: 'not_found',
      details: { id: 'run00000000000000000000' },
    })
  })

  it('accepts the API key as a bearer header but never forwards it to the guest', async () => {
    const res = await fetch(s.url(8080, '/echo'), {
      headers: { authorization: `Bearer ${key}`, 'x-custom': 'kept' },
    })
    expect(res.status).toBe(200)
    const { headers } = await echoOf(res)
    expect(headers.authorization).toBeUndefined()
    expect(headers['x-custom']).toBe('kept')
    // Other schemes are the guest's own business.
    const basic = await fetch(s.url(8080, '/echo'), { headers: { authorization: 'Basic dTpw' } })
    expect((await echoOf(basic)).headers.authorization).toBe('Basic dTpw')
  })

  it('tells the guest where the request came from (Host localhost:<port>, X-Forwarded-*)', async () => {
    // fetch may not set Connection; node:http may.
    const { headers } = JSON.parse(
      await httpGet(s.url(8080, '/echo'), { connection: 'keep-alive, x-hop', 'x-hop': 'dropped' }),
    ) as Echo
    expect(headers.host).toBe('localhost:8080')
    expect(headers['x-forwarded-host']).toBe(publicHost)
    expect(headers['x-forwarded-proto']).toBe('http')
    expect(headers['x-forwarded-prefix']).toBe(prefix)
    expect(headers['x-forwarded-for']).toMatch(/^(::1|127\.0\.0\.1|::ffff:127\.0\.0\.1)$/)
    expect(headers['x-hop']).toBeUndefined()
  })

  it('rewrites redirects the guest makes for itself to stay under the proxy', async () => {
    const location = async (to: string) => {
      const res = await fetch(s.url(8080, `/redirect?to=${encodeURIComponent(to)}`), { redirect: 'manual' })
      expect(res.status).toBe(302)
      return res.headers.get('location')
    }
    const origin = new URL(apiUrl).origin
    expect(await location('/login?next=%2F')).toBe(`${prefix}/login?next=%2F`)
    expect(await location('http://localhost:8080/x?y=1#z')).toBe(`${origin}${prefix}/x?y=1#z`)
    expect(await location('http://127.0.0.1:8080/')).toBe(`${origin}${prefix}/`)
    expect(await location(`http://${publicHost}/dashboard`)).toBe(`${origin}${prefix}/dashboard`)
    // Already under the prefix, relative, or elsewhere: untouched.
    expect(await location(`${prefix}/ok`)).toBe(`${prefix}/ok`)
    expect(await location('next')).toBe('next')
    expect(await location('https://example.com/x')).toBe('https://example.com/x')
    // And a browser-style client following it lands on the guest again.
    const followed = await fetch(s.url(8080, `/redirect?to=${encodeURIComponent('/echo/landed')}`))
    expect((await echoOf(followed)).url).toBe('/echo/landed')
  })

  it('closes open WebSockets when the sandbox is destroyed, and then answers 404', async () => {
    const other = track(await isorun.create({ image: 'node:22-slim' }))
    await startGuest(other, 'app.mjs', 8080, '/hello')
    const ws = await openWebSocket(toWs(other.url(8080, '/ws')))
    const closed = new Promise<void>((resolve) =>
      ws.addEventListener('close', () => resolve(), { once: true }),
    )
    await other.destroy()
    await closed
    expect((await fetch(other.url(8080, '/hello'))).status).toBe(404)
  })
})

function httpGet(url: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () => resolve(body))
    })
    req.on('error', reject)
    req.end()
  })
}

/** A clock the test moves by hand; due timers run synchronously in advance(). */
class ManualClock implements Clock {
  private t = 1_000_000
  private timers: { at: number; fn: () => void; done: boolean }[] = []

  now(): number {
    return this.t
  }

  schedule(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, fn, done: false }
    this.timers.push(timer)
    return () => {
      timer.done = true
    }
  }

  advance(ms: number): void {
    this.t += ms
    for (const timer of [...this.timers]) {
      if (timer.done || timer.at > this.t) continue
      timer.done = true
      timer.fn()
    }
  }
}

/** Sends a WebSocket handshake by hand and returns the raw answer (WebSocket clients hide error bodies). */
async function rawUpgrade(url: string): Promise<string> {
  const { connect } = await import('node:net')
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) })
    let answer = ''
    socket.on('data', (d) => {
      answer += d.toString()
    })
    socket.on('end', () => resolve(answer))
    socket.on('error', reject)
    socket.write(
      `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    )
  })
}

describe('url(port) in the HTTP layer (app.inject, no Docker)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-proxy-test-'))
  let t: App
  let guest: Server
  let guestPort: number

  beforeAll(async () => {
    // The fake engine's guests live on 127.0.0.1: a local server stands in for one.
    guest = createServer((req, res) => {
      if (req.url === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
        res.write('body')
        res.addTrailers({ 'x-checksum': 'abc123' })
        return void res.end()
      }
      if (req.url === '/ct') {
        let body = ''
        req.setEncoding('utf8')
        req.on('data', (d: string) => {
          body += d
        })
        req.on('end', () => res.end(JSON.stringify({ ct: req.headers['content-type'] ?? null, body })))
        return
      }
      res.writeHead(req.url === '/moved' ? 302 : 200, {
        location: '/elsewhere',
        'content-type': 'text/plain',
      })
      res.end(`${req.method} ${req.url} host=${req.headers.host}`)
    })
    await new Promise<void>((resolve) => guest.listen(0, '127.0.0.1', resolve))
    guestPort = (guest.address() as { port: number }).port
  })
  afterAll(async () => {
    await new Promise<void>((resolve) => guest.close(() => resolve()))
    rmSync(dataDir, { recursive: true, force: true })
  })

  beforeEach(() => {
    t = buildInjectApp(dataDir)
  })
  afterEach(() => t.app.close())

  const createRun = async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: { authorization: 'Bearer k1' },
      payload: {},
    })
    return res.json().id as string
  }

  it.each(['0', '65536', 'http', '-1', '8080.5'])('answers port %s with 400', async (port) => {
    const id = await createRun()
    const res = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}/proxy/${port}/` })
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ code: 'validation_failed', details: { field: 'params.port' } })
  })

  it('answers an unknown run with 404 and needs no API key', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/runs/runnope/proxy/8080/x', payload: 'hi' })
    expect(res.statusCode).toBe(404)
    expect(res.json()).toEqual({
      error: 'sandbox runnope not found',
      code: 'not_found',
      details: { id: 'runnope' },
    })
  })

  it('answers a sandbox that is not running with 409', async () => {
    const id = await createRun()
    const sandbox = t.sandboxes.registry.get(hashApiKey('k1'), id)
    sandbox.status = 'destroying'
    const res = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}/proxy/${guestPort}/` })
    expect(res.statusCode).toBe(409)
    expect(res.json().code).toBe('conflict')
    expect(res.json().error).toContain('not running')
    sandbox.status = 'running'
  })

  it('counts proxy traffic as activity: it keeps the sandbox from its idle timeout', async () => {
    const clock = new ManualClock()
    const engine = new FakeEngine()
    const app = buildInjectApp(dataDir, { engine, clock })
    try {
      const created = await app.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: { authorization: 'Bearer k1' },
        payload: { timeout: 10 },
      })
      const id = created.json().id as string
      clock.advance(8_000)
      const res = await app.app.inject({ method: 'GET', url: `/v1/runs/${id}/proxy/${guestPort}/` })
      expect(res.statusCode).toBe(200)
      clock.advance(8_000) // 16 s after create, 8 s after the request: still alive
      await new Promise((r) => setTimeout(r, 50))
      expect(engine.removed).toEqual([])
      clock.advance(3_000) // 11 s after the request: idle
      await waitFor(async () => (engine.removed.length > 0 ? true : undefined), 2_000, 10)
      expect(engine.removed).toEqual([`fake-${id}`])
    } finally {
      await app.app.close()
    }
  })

  it('proxies to the guest, rewrites Location, and announces proxy.opened once per port', async () => {
    const id = await createRun()
    const events: SandboxEvent[] = []
    t.sandboxes.events.on((e) => {
      if (e.event === 'proxy.opened') events.push(e)
    })
    const first = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}/proxy/${guestPort}/a?b=1` })
    expect(first.statusCode).toBe(200)
    expect(first.body).toBe(`GET /a?b=1 host=localhost:${guestPort}`)
    const moved = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}/proxy/${guestPort}/moved` })
    expect(moved.headers.location).toBe(`/v1/runs/${id}/proxy/${guestPort}/elsewhere`)
    expect(events.map((e) => e.data)).toEqual([{ port: guestPort }])
  })

  it('forwards response trailers (over a real socket)', async () => {
    const id = await createRun()
    await t.app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = t.app.server.address() as { port: number }
    const { body, trailers } = await new Promise<{ body: string; trailers: Record<string, unknown> }>(
      (resolve, reject) => {
        const url = `http://127.0.0.1:${port}/v1/runs/${id}/proxy/${guestPort}/trailers`
        request(url, { agent: false }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (d: string) => {
            body += d
          })
          res.on('end', () => resolve({ body, trailers: res.trailers }))
        })
          .on('error', reject)
          .end()
      },
    )
    expect(body).toBe('body')
    expect(trailers).toEqual({ 'x-checksum': 'abc123' })
  })

  it('leaves Content-Type to the guest, even a malformed or missing one', async () => {
    const id = await createRun()
    for (const ct of ['foo', '', 'application/json', undefined]) {
      const res = await t.app.inject({
        method: 'POST',
        url: `/v1/runs/${id}/proxy/${guestPort}/ct`,
        headers: ct === undefined ? {} : { 'content-type': ct },
        payload: 'not json',
      })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({ ct: ct ?? null, body: 'not json' })
    }
  })

  it('forwards any method Node parses, WebDAV included', async () => {
    const id = await createRun()
    for (const method of ['PROPFIND', 'MKCOL', 'OPTIONS', 'QUERY'] as const) {
      const res = await t.app.inject({
        method,
        url: `/v1/runs/${id}/proxy/${guestPort}/dav`,
        headers: { 'content-type': 'application/xml' },
        payload: '<propfind/>',
      })
      expect(res.statusCode).toBe(200)
      expect(res.body).toBe(`${method} /dav host=localhost:${guestPort}`)
    }
  })
})

describe('url(port) rewriting rules', () => {
  const view = {
    origin: 'http://[::1]:8731',
    host: '[::1]:8731',
    prefix: '/v1/runs/r1/proxy/3000',
    port: 3000,
    address: '172.17.0.5',
  }

  it.each([
    ['/login', '/v1/runs/r1/proxy/3000/login'],
    ['/v1/runs/r1/proxy/3000/x', '/v1/runs/r1/proxy/3000/x'],
    ['http://localhost:3000/a?b#c', 'http://[::1]:8731/v1/runs/r1/proxy/3000/a?b#c'],
    ['http://172.17.0.5:3000/', 'http://[::1]:8731/v1/runs/r1/proxy/3000/'],
    ['http://[::1]:3000/p', 'http://[::1]:8731/v1/runs/r1/proxy/3000/p'],
    ['//localhost:3000/p', 'http://[::1]:8731/v1/runs/r1/proxy/3000/p'],
    ['http://[::1]:8731/p', 'http://[::1]:8731/v1/runs/r1/proxy/3000/p'],
    ['http://[::1]:8731/v1/runs/r1/proxy/3000/p', 'http://[::1]:8731/v1/runs/r1/proxy/3000/p'],
    ['http://localhost:4000/p', 'http://localhost:4000/p'],
    ['https://example.com/', 'https://example.com/'],
    ['relative/path', 'relative/path'],
  ])('Location %s -> %s', (from, to) => {
    expect(rewriteLocation(from, view)).toBe(to)
  })

  it('points CDP discovery URLs at the proxy and leaves other fields alone', () => {
    const out = rewriteCdpDiscovery(
      [
        {
          id: 'P',
          url: 'http://localhost:3000/',
          webSocketDebuggerUrl: 'ws://localhost:3000/devtools/page/P',
          devtoolsFrontendUrl:
            'https://chrome-devtools-frontend.appspot.com/serve_rev/@abc/inspector.html?ws=localhost:3000/devtools/page/P',
        },
      ],
      view,
    )
    expect(out).toEqual([
      {
        id: 'P',
        url: 'http://localhost:3000/',
        webSocketDebuggerUrl: 'ws://[::1]:8731/v1/runs/r1/proxy/3000/devtools/page/P',
        devtoolsFrontendUrl:
          'https://chrome-devtools-frontend.appspot.com/serve_rev/@abc/inspector.html?ws=[::1]:8731/v1/runs/r1/proxy/3000/devtools/page/P',
      },
    ])
  })
})

describe("url(port)'s URL grammar", () => {
  it('splits the prefix, run, port and the guest path as sent', () => {
    expect(parseProxyUrl('/v1/runs/run1/proxy/8080/a/b?c=%20d#e')).toEqual({
      prefix: '/v1/runs/run1/proxy/8080',
      runId: 'run1',
      portText: '8080',
      port: 8080,
      path: '/a/b?c=%20d#e',
    })
    expect(parseProxyUrl('/v1/runs/run1/proxy/8080')?.path).toBe('/')
    expect(parseProxyUrl('/v1/runs/run1/proxy/8080?x')?.path).toBe('/?x')
    expect(proxyPrefix('run1', 8080)).toBe('/v1/runs/run1/proxy/8080')
  })

  it.each(['0', '65536', 'http', '-1', '8080.5', '080800', ''])('has no port for %j', (port) => {
    expect(parseProxyUrl(`/v1/runs/run1/proxy/${port}/`)?.port).toBeUndefined()
  })

  it.each(['/v1/runs/run1/exec', '/v1/runs//proxy/8080/', '/v1/runs/run1/proxy', '/x/v1/runs/r/proxy/1/'])(
    'is not a url(port) URL: %s',
    (url) => {
      expect(parseProxyUrl(url)).toBeUndefined()
      expect(isProxyUrl(url)).toBe(false)
    },
  )
})

describe('the bearer token of an Authorization header', () => {
  it.each([
    ['Bearer k1', 'k1'],
    ['bearer k1', 'k1'],
    ['  Bearer \t k1  ', 'k1'],
    ['Bearer', undefined],
    ['Bearer   ', undefined],
    ['Basic azE6', undefined],
    ['Bearerk1', undefined],
    ['', undefined],
    [undefined, undefined],
  ])('%j -> %j', (header, token) => {
    expect(bearerToken(header)).toBe(token)
  })
})
