import { createHash } from 'node:crypto'
import { Isorun, type Sandbox } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { RunningServer } from '../src/server.ts'
import { type StartedEmulator, startEmulator } from '../src/testing.ts'
import { engineEnv } from './support/engine.ts'
import { type Echo, startGuest } from './support/guest.ts'
import { RawHttpClient, type RawResponse } from './support/raw-http.ts'
import { describeWithDocker, newApiKey } from './support/sdk.ts'

const echoOf = (r: RawResponse) => JSON.parse(r.body.toString('utf8')) as Echo
const errorOf = (r: RawResponse) => JSON.parse(r.body.toString('utf8')) as { error: string; code: string }
/** The emulators below give a client this long to send a request head (the default is a minute). */
const HEAD_DEADLINE_MS = 2000
const sha256 = (data: string) => createHash('sha256').update(data).digest('hex')

// Each run has an emulator of its own, so the lane's counters (carried / handed off) count its requests
// only. The same bytes go through an emulator with the lane off: both paths must answer alike.
for (const fast of [true, false]) {
  describeWithDocker(
    fast
      ? "url(port)'s fast lane, byte by byte (raw HTTP/1.1 on one connection)"
      : 'the same bytes with the fast lane off (the routes carry every request)',
    () => {
      let emu: StartedEmulator
      let server: RunningServer
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
        emu = await startEmulator({
          env: {
            ...engineEnv(),
            ISORUN_EMULATOR_FAST_PROXY: fast ? '1' : '0',
            ISORUN_EMULATOR_HEADERS_TIMEOUT_MS: String(HEAD_DEADLINE_MS),
          },
        })
        server = emu.server
        port = server.port
        isorun = new Isorun({ apiUrl: server.apiUrl, apiKey })
        s = await isorun.create({ image: 'node:22-slim' })
        prefix = `/v1/runs/${s.id}/proxy/8080`
        await startGuest(s, 'app.mjs', 8080, '/hello')
      })
      afterAll(async () => {
        await s?.destroy().catch(() => undefined)
        isorun?.close()
        await emu?.stop()
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
          c.send(`POST ${prefix}/up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello`)
          await pause()
          c.send(' world')
          const sized = echoOf(await c.response())
          expect(sized).toMatchObject({ method: 'POST', bodyLength: 11, body: 'hello world' })

          c.send(
            `PUT ${prefix}/up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`,
          )
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
          c.send(`HEAD ${prefix}/hello HTTP/1.1\r\nHost: localhost\r\n\r\n`)
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
          const body = JSON.parse(r.body.toString()) as { error: string; code: string }
          expect(body.code).toBe('bad_gateway')
          expect(body.error).toContain('closed the connection before answering')
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
          c.send(`POST ${prefix}/once HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc`)
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
          c.send(`GET /v1/runs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${apiKey}\r\n\r\n`)
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
        unknown.send(`GET /v1/runs/run00000000000000000000/proxy/8080/ HTTP/1.1\r\nHost: localhost\r\n\r\n`)
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

      /**
       * Sends `bytes` on a new connection and expects the emulator itself to refuse them with `status` and
       * the error `code` (the guest's own server would answer without the emulator's error body), then
       * to close the connection. Nothing reaches the guest: the lane carries nothing.
       */
      const expectRefused = async (bytes: string, status: number, code: string) => {
        const before = stats()
        const c = await RawHttpClient.open(port)
        try {
          c.send(Buffer.from(bytes, 'latin1'))
          const r = await c.response()
          expect({ status: r.status, code: errorOf(r).code }).toEqual({ status, code })
          expect(await c.closedWithin(2000)).toBe(true)
        } finally {
          c.close()
        }
        if (fast) expect(stats().carried - before.carried).toBe(0)
      }
      const request = (line: string, headers: string[], body = '') =>
        `${line}\r\n${[`Host: [::1]:${port}`, ...headers].map((h) => `${h}\r\n`).join('')}\r\n${body}`

      it.each([
        ['a LF smuggling a header', '/x\nContent-Length:40'],
        ['a CR', '/x\ry'],
        ['a control character', '/x\x01y'],
        ['a tab', '/x\ty'],
        ['DEL', '/x\x7fy'],
        ['a byte beyond ASCII', '/x\xe9y'],
      ])('refuses a request target with %s (400), before any guest sees it', async (_what, path) => {
        await expectRefused(request(`GET ${prefix}${path} HTTP/1.1`, []), 400, 'bad_request')
      })

      it('refuses a duplicated Content-Length, even an equal one (400)', async () => {
        const line = `POST ${prefix}/echo HTTP/1.1`
        await expectRefused(
          request(line, ['Content-Length: 3', 'Content-Length: 3'], 'abc'),
          400,
          'bad_request',
        )
        await expectRefused(
          request(line, ['Content-Length: 3', 'content-length: 3'], 'abc'),
          400,
          'bad_request',
        )
      })

      it('answers a request with bare LF line ends at once (400), rather than waiting for a CRLF', async () => {
        await expectRefused(`GET ${prefix}/x HTTP/1.1\nHost: localhost\n\n`, 400, 'bad_request')
        await expectRefused(`GET ${prefix}/x HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n`, 400, 'bad_request')
        await expectRefused(`GET ${prefix}/x HTTP/1.1\r\nHost: localhost\r\n\n`, 400, 'bad_request')
        // Nor for the end of a first line that cannot be a request line.
        await expectRefused('\x00\x01\x02', 400, 'bad_request')
      })

      it.each([
        ['a control character in a value', ['X-A: a\x01b']],
        ['NUL in a value', ['X-A: a\0b']],
        ['DEL in a value', ['X-A: a\x7fb']],
        ['a separator in a name', ['X(A): b']],
        ['obsolete line folding', ['X-A: b', ' c']],
        ['white space before the colon', ['X-A : b']],
        ['a line without a colon', ['X-A']],
      ])('refuses a header line with %s (400)', async (_what, headers) => {
        await expectRefused(request(`GET ${prefix}/x HTTP/1.1`, headers), 400, 'bad_request')
      })

      it.each(['FOO', 'get'])('refuses a method Node does not know: %s (400)', async (method) => {
        await expectRefused(request(`${method} ${prefix}/x HTTP/1.1`, []), 400, 'bad_request')
      })

      it('refuses more headers than Node accepts (431), and passes on as many as it does', async () => {
        const headers = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: v`)
        await expectRefused(request(`GET ${prefix}/x HTTP/1.1`, headers(1000)), 431, 'headers_too_large')
        const c = await RawHttpClient.open(port)
        try {
          // (The guest's Node has the same limit, and the proxy adds Host and four X-Forwarded-*.)
          c.send(request(`GET ${prefix}/many HTTP/1.1`, headers(990)))
          const seen = echoOf(await c.response())
          expect(seen.headers['x-989']).toBe('v')
        } finally {
          c.close()
        }
      })

      it('answers garbage after a good request with 400, and closes', async () => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(get('/first'))
          expect(echoOf(await c.response()).url).toBe('/first')
          c.send('\x01\x02junk\r\n\r\n')
          const r = await c.response()
          expect({ status: r.status, code: errorOf(r).code }).toEqual({ status: 400, code: 'bad_request' })
          expect(await c.closedWithin(2000)).toBe(true)
        } finally {
          c.close()
        }
        // Pipelined in one write, the garbage still ends in a 400 and the connection's end (Node's server
        // may answer it before the good request's answer, which is then lost; the lane answers in order).
        const p = await RawHttpClient.open(port)
        try {
          p.send(`${get('/first')}\x01\x02junk\r\n\r\n`)
          let r = await p.response()
          if (r.status === 200) r = await p.response()
          expect({ status: r.status, code: errorOf(r).code }).toEqual({ status: 400, code: 'bad_request' })
          expect(await p.closedWithin(2000)).toBe(true)
        } finally {
          p.close()
        }
      })

      it.each([
        ['white space after a chunk size', '3 \r\nabc\r\n0\r\n\r\n'],
        ['a control character in a chunk extension', '3;a\x01=b\r\nabc\r\n0\r\n\r\n'],
        ['a bare LF after a chunk size', '3\nabc\r\n0\r\n\r\n'],
        ['chunk data longer than its size', '3\r\nabcd\r\n0\r\n\r\n'],
        ['a control character in a trailer', '0\r\nX-T: a\x01\r\n\r\n'],
        ['a trailer line without a colon', '0\r\nX-T\r\n\r\n'],
      ])('refuses a chunked request body with %s (400)', async (_what, body) => {
        const line = `POST ${prefix}/echo HTTP/1.1`
        const c = await RawHttpClient.open(port)
        try {
          c.send(Buffer.from(request(line, ['Transfer-Encoding: chunked'], body), 'latin1'))
          const r = await c.response()
          expect({ status: r.status, code: errorOf(r).code }).toEqual({ status: 400, code: 'bad_request' })
          expect(await c.closedWithin(2000)).toBe(true)
        } finally {
          c.close()
        }
      })

      it('passes bytes beyond ASCII in header values on unchanged, both ways', async () => {
        const utf8 = Buffer.from('naïve—ü', 'utf8').toString('latin1')
        const c = await RawHttpClient.open(port)
        try {
          c.send(Buffer.from(request(`GET ${prefix}/echo HTTP/1.1`, [`X-Name: ${utf8}`]), 'latin1'))
          // The guest (Node) reads header bytes as latin1, as they were sent.
          expect(echoOf(await c.response()).headers['x-name']).toBe(utf8)
        } finally {
          c.close()
        }
        // An answer without a body, whose head is all there is.
        const raw = `HTTP/1.1 204 No Content\r\nContent-Disposition: attachment; filename="${utf8}"\r\n\r\n`
        const d = await RawHttpClient.open(port)
        try {
          d.send(get(`/raw?b64=${encodeURIComponent(Buffer.from(raw, 'latin1').toString('base64'))}`))
          const r = await d.response()
          expect(r.status).toBe(204)
          expect(r.headers['content-disposition']).toBe(`attachment; filename="${utf8}"`)
        } finally {
          d.close()
        }
      })

      const rawAnswer = (raw: string) =>
        get(`/raw?b64=${encodeURIComponent(Buffer.from(raw, 'latin1').toString('base64'))}`)

      it.each([
        [
          'a control character in a header value',
          'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nhi',
        ],
        [
          'a duplicated Content-Length',
          'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi',
        ],
        ['bare LF line ends', 'HTTP/1.1 200 OK\nContent-Length: 2\n\nhi'],
        ['a control character in the reason phrase', 'HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nhi'],
        ['a status below 100', 'HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nhi'],
      ])('answers 502 to a guest whose answer has %s, and stays up', async (_what, raw) => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(rawAnswer(raw))
          const r = await c.response()
          expect({ status: r.status, code: errorOf(r).code }).toEqual({ status: 502, code: 'bad_gateway' })
        } finally {
          c.close()
        }
        const again = await RawHttpClient.open(port)
        again.send(get('/hello'))
        expect((await again.response()).body.toString()).toBe('ok')
        again.close()
      })

      it("relays a guest's answer to an upgrade byte for byte, and answers 502 to one Node cannot write", async () => {
        const upgrade = (raw: string) =>
          request(
            `GET ${prefix}/raw?b64=${encodeURIComponent(Buffer.from(raw, 'latin1').toString('base64'))} HTTP/1.1`,
            [
              'Connection: Upgrade',
              'Upgrade: websocket',
              'Sec-WebSocket-Version: 13',
              'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==',
            ],
          )
        const utf8 = Buffer.from('naïve', 'utf8').toString('latin1')
        for (const status of [
          '101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket',
          '404 Not Found',
        ]) {
          const c = await RawHttpClient.open(port)
          try {
            c.send(upgrade(`HTTP/1.1 ${status}\r\nX-Name: ${utf8}\r\n\r\n`))
            const r = await c.response({ head: true })
            expect(r.headers['x-name']).toBe(utf8)
          } finally {
            c.close()
          }
        }
        for (const line of ['101 Switching\x01 Protocols', '200 O\x01K']) {
          const c = await RawHttpClient.open(port)
          try {
            c.send(upgrade(`HTTP/1.1 ${line}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`))
            const r = await c.response()
            expect({ status: r.status, code: errorOf(r).code }).toEqual({ status: 502, code: 'bad_gateway' })
          } finally {
            c.close()
          }
        }
      })

      it("cuts the connection when a guest's chunked answer breaks its framing after the head", async () => {
        const c = await RawHttpClient.open(port)
        try {
          c.send(rawAnswer('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nhi\r\n0\r\n\r\n'))
          // The head is out; the client sees the body end early, never the bytes after the break.
          await expect(c.response()).rejects.toThrow(/connection ended/)
        } finally {
          c.close()
        }
      })

      it('answers 408 and closes when a request head does not arrive in time (slowloris)', async () => {
        const c = await RawHttpClient.open(port)
        const started = Date.now()
        c.send(`GET ${prefix}/slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: `)
        // A byte now and then keeps the connection busy but never finishes the head.
        const drip = setInterval(() => c.socket.writable && c.send('a'), 200)
        try {
          const r = await c.response()
          const took = Date.now() - started
          expect({ status: r.status, code: errorOf(r).code }).toEqual({
            status: 408,
            code: 'request_timeout',
          })
          expect(took).toBeGreaterThanOrEqual(HEAD_DEADLINE_MS - 100)
          expect(await c.closedWithin(2000)).toBe(true)
        } finally {
          clearInterval(drip)
          c.close()
        }
        // A connection that sends nothing at all gets the same answer.
        const idle = await RawHttpClient.open(port)
        try {
          const r = await idle.response()
          expect({ status: r.status, code: errorOf(r).code }).toEqual({
            status: 408,
            code: 'request_timeout',
          })
        } finally {
          idle.close()
        }
        // The next request on a kept-alive connection has its own deadline, from its first byte.
        const kept = await RawHttpClient.open(port)
        try {
          kept.send(get('/hello'))
          expect((await kept.response()).body.toString()).toBe('ok')
          await new Promise((r) => setTimeout(r, HEAD_DEADLINE_MS + 500))
          kept.send(`GET ${prefix}/slow HTTP/1.1\r\n`)
          const r = await kept.response()
          expect(r.status).toBe(408)
        } finally {
          kept.close()
        }
      })
    },
  )
}
