import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun, type Sandbox } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { loadConfig } from '../src/config.ts'
import { type RunningServer, startServer } from '../src/server.ts'
import { type Echo, startGuest } from './support/guest.ts'
import { RawHttpClient, type RawResponse } from './support/raw-http.ts'
import { describeWithDocker, newApiKey } from './support/sdk.ts'

const echoOf = (r: RawResponse) => JSON.parse(r.body.toString('utf8')) as Echo
const sha256 = (data: string) => createHash('sha256').update(data).digest('hex')

// Each run has an emulator of its own, so the lane's counters (carried / handed off) count its requests
// only. The same bytes go through an emulator with the lane off: both paths must answer alike.
for (const fast of [true, false]) {
  describeWithDocker(
    fast
      ? "url(port)'s fast lane, byte by byte (raw HTTP/1.1 on one connection)"
      : 'the same bytes with the fast lane off (the routes carry every request)',
    () => {
      let server: RunningServer
      let dataDir: string
      let isorun: Isorun
      let s: Sandbox
      let prefix: string
      let port: number
      const apiKey = newApiKey()
      const stats = () => server.built.proxy.fastLaneStats() ?? { carried: 0, handedOff: 0 }
      /** The lane's counters moved as `expected` (with the lane off: it has none). */
      const expectLane = (
        before: { carried: number; handedOff: number },
        expected: { carried: number; handedOff: number },
      ) => {
        if (!fast) return void expect(server.built.proxy.fastLaneStats()).toBeUndefined()
        expect({
          carried: stats().carried - before.carried,
          handedOff: stats().handedOff - before.handedOff,
        }).toEqual(expected)
      }
      const get = (path: string, extra = '') =>
        `GET ${prefix}${path} HTTP/1.1\r\nHost: [::1]:${port}\r\n${extra}\r\n`

      beforeAll(async () => {
        dataDir = mkdtempSync(join(tmpdir(), 'isorun-fast-lane-test-'))
        server = await startServer(
          loadConfig({
            ISORUN_EMULATOR_PORT: '0',
            ISORUN_EMULATOR_DATA_DIR: dataDir,
            ISORUN_EMULATOR_LOG_LEVEL: 'warn',
            ISORUN_EMULATOR_POOL: '0',
            ISORUN_EMULATOR_FAST_PROXY: fast ? '1' : '0',
          }),
        )
        port = server.port
        isorun = new Isorun({ apiUrl: server.apiUrl, apiKey })
        s = await isorun.create({ image: 'node:22-slim' })
        prefix = `/v1/runs/${s.id}/proxy/8080`
        await startGuest(s, 'app.mjs', 8080, '/hello')
      })
      afterAll(async () => {
        await s?.destroy().catch(() => undefined)
        isorun?.close()
        await server?.close()
        rmSync(dataDir, { recursive: true, force: true })
      })

      it('carries keep-alive requests itself, with the same headers as the slow path', async () => {
        const before = stats()
        const c = await RawHttpClient.open(port)
        try {
          for (let i = 1; i <= 3; i++) {
            c.send(
              get(
                `/echo/${i}?q=${i}`,
                'Authorization: Bearer isorun_secret\r\nX-Forwarded-For: 10.9.8.7\r\n',
              ),
            )
            const r = await c.response()
            expect(r.status).toBe(200)
            const seen = echoOf(r)
            expect(seen.url).toBe(`/echo/${i}?q=${i}`)
            expect(seen.headers.host).toBe('localhost:8080')
            expect(seen.headers.authorization).toBeUndefined()
            expect(seen.headers['x-forwarded-prefix']).toBe(prefix)
            expect(seen.headers['x-forwarded-host']).toBe(`[::1]:${port}`)
            expect(seen.headers['x-forwarded-for']).toBe('10.9.8.7, ::1')
            // Repeated response headers pass through as separate lines (joined here by the test client).
            expect(r.headers['set-cookie']).toBe('a=1; Path=/, b=2; Path=/')
          }
        } finally {
          c.close()
        }
        expectLane(before, { carried: 3, handedOff: 0 })
        // The request journal sees them as it sees the slow path's.
        const journaled = server.built.journal.query({ path: `${prefix}/echo/3` })
        expect(journaled[0]).toMatchObject({ method: 'GET', status: 200, key_hash: expect.any(String) })
      })

      it('answers pipelined requests in order', async () => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(get('/p?n=1') + get('/p?n=2') + get('/hello') + get('/p?n=4'))
          expect(echoOf(await c.response()).url).toBe('/p?n=1')
          expect(echoOf(await c.response()).url).toBe('/p?n=2')
          expect((await c.response()).body.toString()).toBe('ok')
          expect(echoOf(await c.response()).url).toBe('/p?n=4')
        } finally {
          c.close()
        }
      })

      it('forwards bodies sent in pieces: Content-Length and chunked, then the next request', async () => {
        const c = await RawHttpClient.open(port)
        const pause = () => new Promise((r) => setTimeout(r, 30))
        try {
          c.send(`POST ${prefix}/up HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello`)
          await pause()
          c.send(' world')
          const sized = echoOf(await c.response())
          expect(sized).toMatchObject({ method: 'POST', bodyLength: 11, body: 'hello world' })

          c.send(`PUT ${prefix}/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`)
          await pause()
          c.send('6;ext=1\r\n world\r\n')
          await pause()
          c.send(`0\r\n\r\n${get('/after')}`)
          const chunked = echoOf(await c.response())
          expect(chunked).toMatchObject({ method: 'PUT', bodyLength: 11, sha256: sha256('hello world') })
          expect(chunked.headers['transfer-encoding']).toBe('chunked')
          expect(echoOf(await c.response()).url).toBe('/after')
        } finally {
          c.close()
        }
      })

      it('relays HEAD, chunked and streamed answers, and rewrites Location', async () => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(`HEAD ${prefix}/hello HTTP/1.1\r\nHost: x\r\n\r\n`)
          const head = await c.response({ head: true })
          expect(head.status).toBe(200)
          expect(head.headers['content-length']).toBe('2')
          c.send(get('/sse?n=3&interval=20'))
          const sse = await c.response()
          expect(sse.headers['transfer-encoding']).toBe('chunked')
          expect(sse.body.toString()).toBe(
            'id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n',
          )
          c.send(get('/redirect?to=/login'))
          const redirect = await c.response()
          expect(redirect.status).toBe(302)
          expect(redirect.headers.location).toBe(`${prefix}/login`)
          c.send(get('/big?mb=3'))
          expect((await c.response()).body.length).toBe(3 * 1024 * 1024)
        } finally {
          c.close()
        }
      })

      it('closes the connection after an answer when the client asked it to', async () => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(get('/hello', 'Connection: close\r\n'))
          const r = await c.response()
          expect(r.body.toString()).toBe('ok')
          expect(r.headers.connection).toBe('close')
          expect(await c.closedWithin(2000)).toBe(true)
        } finally {
          c.close()
        }
      })

      it('answers 502 to an answer framed both by length and by chunks (RFC 9112: response splitting)', async () => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(get('/te-and-length'))
          expect((await c.response()).status).toBe(502)
        } finally {
          c.close()
        }
      })

      it('answers 502 when the guest drops the connection without answering', async () => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(get('/drop'))
          const r = await c.response()
          expect(r.status).toBe(502)
          const body = JSON.parse(r.body.toString()) as { error: { code: string; message: string } }
          expect(body.error.code).toBe('bad_gateway')
          expect(body.error.message).toContain('closed the connection before answering')
        } finally {
          c.close()
        }
        // The guest is fine, and so is the next connection.
        const again = await RawHttpClient.open(port)
        again.send(get('/hello'))
        expect((await again.response()).body.toString()).toBe('ok')
        again.close()
      })

      it('sends a bodiless request again when its kept-alive guest connection turns out closed', async () => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(get('/drop-next'))
          expect((await c.response()).body.toString()).toBe('armed')
          // The guest drops the connection this arrives on; the lane retries on a new one.
          c.send(get('/hello'))
          expect((await c.response()).body.toString()).toBe('ok')
          // A request with a body is not sent twice: the client gets the 502.
          c.send(get('/drop-next'))
          expect((await c.response()).body.toString()).toBe('armed')
          c.send(`POST ${prefix}/once HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc`)
          expect((await c.response()).status).toBe(502)
        } finally {
          c.close()
        }
      })

      it('hands a connection to the routes when a request is not one it carries, bytes intact', async () => {
        const c = await RawHttpClient.open(port)
        const before = stats()
        try {
          c.send(get('/first'))
          expect(echoOf(await c.response()).url).toBe('/first')
          // An API call on the same connection (as the SDK's pooled connections do): the routes answer it.
          c.send(`GET /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\n\r\n`)
          const list = await c.response()
          expect(list.status).toBe(200)
          expect(JSON.stringify(JSON.parse(list.body.toString()))).toContain(s.id)
          // From then on the routes carry the connection, url(port) requests included.
          c.send(get('/later'))
          expect(echoOf(await c.response()).url).toBe('/later')
        } finally {
          c.close()
        }
        expectLane(before, { carried: 1, handedOff: 1 })

        // What the lane does not handle goes to the routes too: an unknown run (404), a head too big (431),
        // an upgrade, and every request while a fault is armed.
        const unknown = await RawHttpClient.open(port)
        unknown.send(`GET /v1/runs/run00000000000000000000/proxy/8080/ HTTP/1.1\r\nHost: x\r\n\r\n`)
        expect((await unknown.response()).status).toBe(404)
        unknown.close()
        const big = await RawHttpClient.open(port)
        big.send(get('/x', `X-Big: ${'a'.repeat(20_000)}\r\n`))
        expect((await big.response()).status).toBe(431)
        big.close()
        const fault = server.built.faults.add({ path: '^/v1/never$', action: 'error', status: 500 })
        try {
          const armed = stats()
          const f = await RawHttpClient.open(port)
          f.send(get('/while-armed'))
          expect(echoOf(await f.response()).url).toBe('/while-armed')
          f.close()
          expectLane(armed, { carried: 0, handedOff: 1 })
        } finally {
          server.built.faults.remove(fault.id)
        }
      })
    },
  )
}
