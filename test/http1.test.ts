import { describe, expect, it } from 'vitest'
import { keepAliveMs } from '../src/proxy/fast/connection.ts'
import {
  bodyTracker,
  MAX_HEAD_BYTES,
  MAX_HEADERS,
  parseRequestHead,
  parseRequestLine,
  parseResponseHead,
  type RequestHead,
  type ResponseHead,
  responseBody,
} from '../src/proxy/fast/http1.ts'

// The fast lane's HTTP/1.1 parsers, on their own. What they do not fully understand is `unsupported`:
// the lane then hands the bytes to Node's HTTP server (or, for a guest's answer, fails it with a 502),
// so a head the lane passes on must never mean something else to another parser (request smuggling).

const buf = (text: string) => Buffer.from(text, 'latin1')
const request = (lines: string[], rest = '') => parseRequestHead(buf(`${lines.join('\r\n')}\r\n\r\n${rest}`))
const requestHead = (lines: string[]): RequestHead => {
  const parsed = request(lines)
  if (parsed.kind !== 'head') throw new Error(`expected a head, got ${JSON.stringify(parsed)}`)
  return parsed.head
}
const GET = 'GET /v1/runs/r/proxy/8080/x?q=1 HTTP/1.1'
const HOST = 'Host: [::1]:8731'

describe('request heads the fast lane reads', () => {
  it('reads an ordinary head: the target as sent, headers in order and case, the OWS around values dropped', () => {
    const head = requestHead([GET, HOST, 'X-Multi:  a, b \t', 'x-multi: c', 'Authorization: Bearer k'])
    expect(head).toMatchObject({
      method: 'GET',
      target: '/v1/runs/r/proxy/8080/x?q=1',
      host: '[::1]:8731',
      authorization: 'Bearer k',
      body: { kind: 'none' },
      close: false,
    })
    expect(head.rawHeaders).toEqual([
      'Host',
      '[::1]:8731',
      'X-Multi',
      'a, b',
      'x-multi',
      'c',
      'Authorization',
      'Bearer k',
    ])
  })

  it('counts the head to its blank line, whatever follows', () => {
    const text = `${GET}\r\n${HOST}\r\n\r\n`
    const parsed = parseRequestHead(buf(`${text}POST /next HTTP/1.1\r\n`))
    expect(parsed.kind === 'head' && parsed.head.size).toBe(text.length)
  })

  it('waits for the blank line', () => {
    expect(parseRequestHead(buf(`${GET}\r\n${HOST}\r\n`)).kind).toBe('incomplete')
    expect(parseRequestHead(buf('GET /v1/runs/r/pro')).kind).toBe('incomplete')
  })

  it('frames a body by Content-Length or plain chunked, and none for a zero length', () => {
    expect(requestHead([GET, HOST, 'Content-Length: 11']).body).toEqual({ kind: 'length', length: 11 })
    expect(requestHead([GET, HOST, 'Content-Length: 0']).body).toEqual({ kind: 'none' })
    expect(requestHead([GET, HOST, 'Transfer-Encoding: Chunked']).body).toEqual({ kind: 'chunked' })
  })

  it('sees `Connection: close` among other tokens', () => {
    expect(requestHead([GET, HOST, 'Connection: keep-alive, Close']).close).toBe(true)
    expect(requestHead([GET, HOST, 'Connection: keep-alive']).close).toBe(false)
  })

  it.each([
    ['Content-Length with Transfer-Encoding', ['Content-Length: 5', 'Transfer-Encoding: chunked']],
    ['Transfer-Encoding with Content-Length after it', ['Transfer-Encoding: chunked', 'Content-Length: 0']],
    ['a coding other than chunked', ['Transfer-Encoding: gzip']],
    ['chunked then another coding', ['Transfer-Encoding: chunked, gzip']],
    ['another coding then chunked', ['Transfer-Encoding: gzip, chunked']],
    ['two Transfer-Encoding headers', ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked']],
    ['two different Content-Lengths', ['Content-Length: 3', 'Content-Length: 4']],
    ['two equal Content-Lengths (Node refuses them)', ['Content-Length: 3', 'content-length: 3']],
    ['a Content-Length list', ['Content-Length: 3, 3']],
    ['a signed Content-Length', ['Content-Length: +3']],
    ['a negative Content-Length', ['Content-Length: -1']],
    ['a hexadecimal Content-Length', ['Content-Length: 0x3']],
    ['a Content-Length beyond 15 digits', ['Content-Length: 1234567890123456']],
    ['an empty Content-Length', ['Content-Length:']],
  ])('leaves body framing it does not fully trust to Node: %s', (_why, headers) => {
    expect(request([GET, HOST, ...headers]).kind).toBe('unsupported')
  })

  it.each([
    ['obsolete line folding (SP)', ['X-A: b', ' c']],
    ['obsolete line folding (HTAB)', ['X-A: b', '\tc']],
    ['folding of the first header line', [' Host: a']],
    ['white space before the colon', ['X-A : b']],
    ['a separator in the name', ['X(A): b']],
    ['a non-ASCII name', ['X-\xe9: b']],
    ['an empty name', [': b']],
    ['no colon', ['XA']],
    ['NUL in a value', ['X-A: b\0c']],
    ['a control character in a value', ['X-A: b\x01c']],
    ['an escape in a value', ['X-A: \x1b[31m']],
    ['DEL in a value', ['X-A: b\x7fc']],
    ['a bare CR in a line', ['X-A: b\rX-B: c']],
    ['a bare LF in a line', ['X-A: b\nX-B: c']],
  ])('leaves a malformed header line to Node: %s', (_why, headers) => {
    expect(request([GET, HOST, ...headers]).kind).toBe('unsupported')
  })

  it.each([
    ['HTTP/1.0', 'GET /v1/runs/r/proxy/1/ HTTP/1.0'],
    ['HTTP/2.0', 'GET /v1/runs/r/proxy/1/ HTTP/2.0'],
    ['absolute form', 'GET http://a/v1/runs/r/proxy/1/ HTTP/1.1'],
    ['asterisk form', 'OPTIONS * HTTP/1.1'],
    ['two spaces', 'GET  /v1/runs/r/proxy/1/ HTTP/1.1'],
    ['a space in the target', 'GET /v1/runs/r/proxy/1/a b HTTP/1.1'],
    ['a separator in the method', 'G(ET /v1/runs/r/proxy/1/ HTTP/1.1'],
    ['CONNECT', 'CONNECT /v1/runs/r/proxy/1/ HTTP/1.1'],
    ['a method Node does not know', 'FOO /v1/runs/r/proxy/1/ HTTP/1.1'],
    ['a lower-case method', 'get /v1/runs/r/proxy/1/ HTTP/1.1'],
    ['a LF in the target', 'GET /v1/runs/r/proxy/1/x\nContent-Length:40 HTTP/1.1'],
    ['a CR in the target', 'GET /v1/runs/r/proxy/1/x\ry HTTP/1.1'],
    ['a control character in the target', 'GET /v1/runs/r/proxy/1/x\x01y HTTP/1.1'],
    ['a tab in the target', 'GET /v1/runs/r/proxy/1/x\ty HTTP/1.1'],
    ['DEL in the target', 'GET /v1/runs/r/proxy/1/x\x7fy HTTP/1.1'],
    ['a byte beyond ASCII in the target', 'GET /v1/runs/r/proxy/1/caf\xe9 HTTP/1.1'],
  ])('leaves a request line other than `TOKEN /target HTTP/1.1` to Node: %s', (_why, line) => {
    expect(request([line, HOST]).kind).toBe('unsupported')
  })

  it.each([
    ['an upgrade', [HOST, 'Connection: Upgrade', 'Upgrade: websocket']],
    ['an Upgrade header alone', [HOST, 'Upgrade: h2c']],
    ['Expect', [HOST, 'Expect: 100-continue']],
    ['no Host', ['X-A: b']],
    ['two Hosts', [HOST, 'Host: b']],
  ])('leaves what Node answers itself to Node: %s', (_why, headers) => {
    expect(request([GET, ...headers]).kind).toBe('unsupported')
  })

  it('leaves a head longer than Node accepts to Node (it answers 431)', () => {
    const big = `X-Big: ${'a'.repeat(MAX_HEAD_BYTES)}`
    expect(request([GET, HOST, big]).kind).toBe('unsupported')
    // Without its end in sight either.
    expect(parseRequestHead(buf(`${GET}\r\n${big}`)).kind).toBe('unsupported')
    const lines = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: v`)
    expect(request([GET, HOST, ...lines(MAX_HEADERS - 1)]).kind).toBe('head')
    expect(request([GET, HOST, ...lines(MAX_HEADERS)]).kind).toBe('unsupported')
  })

  it('refuses a bare LF at once, without waiting for a blank line that may never come', () => {
    expect(parseRequestHead(buf('GET /v1/runs/r/proxy/1/ HTTP/1.1\nHost: a\n\n')).kind).toBe('unsupported')
    expect(parseRequestHead(buf('GET /v1/runs/r/proxy/1/ HTTP/1.1\n')).kind).toBe('unsupported')
    expect(parseRequestHead(buf(`${GET}\r\n${HOST}\r\n\n`)).kind).toBe('unsupported')
    expect(parseRequestHead(buf(`${GET}\r\n${HOST}\r\nX-A: b\n`)).kind).toBe('unsupported')
    // A LF in the body after the head is the body's business.
    expect(request([GET, HOST, 'Content-Length: 2'], '\n\n').kind).toBe('head')
  })

  it('passes obs-text (bytes beyond ASCII) in values, as Node does', () => {
    expect(requestHead([GET, HOST, 'X-Name: caf\xc3\xa9']).rawHeaders[3]).toBe('caf\xc3\xa9')
  })

  it('reads a request line', () => {
    expect(parseRequestLine('PROPFIND /a?b HTTP/1.1')).toEqual({ method: 'PROPFIND', target: '/a?b' })
    expect(parseRequestLine('GET /a HTTP/1.1\r')).toBeUndefined()
  })
})

describe("a guest's response heads, as the fast lane reads them", () => {
  const response = (lines: string[]) => parseResponseHead(buf(`${lines.join('\r\n')}\r\n\r\n`))
  const responseHead = (lines: string[]): ResponseHead => {
    const parsed = response(lines)
    if (parsed.kind !== 'head') throw new Error(`expected a head, got ${JSON.stringify(parsed)}`)
    return parsed.head
  }

  it('reads status, reason, length and whether the connection can carry another exchange', () => {
    expect(responseHead(['HTTP/1.1 404 Not Found', 'Content-Length: 3'])).toMatchObject({
      status: 404,
      reason: 'Not Found',
      contentLength: 3,
      transferEncoding: undefined,
      close: false,
    })
    expect(responseHead(['HTTP/1.1 200']).reason).toBe('')
    expect(responseHead(['HTTP/1.1 200 OK', 'Connection: close']).close).toBe(true)
    expect(responseHead(['HTTP/1.0 200 OK']).close).toBe(true)
    expect(responseHead(['HTTP/1.0 200 OK', 'Connection: keep-alive']).close).toBe(false)
  })

  it('joins repeated Transfer-Encoding headers, as one list', () => {
    expect(
      responseHead(['HTTP/1.1 200 OK', 'Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'])
        .transferEncoding,
    ).toBe('gzip, chunked')
  })

  it.each([
    [
      'Content-Length with Transfer-Encoding (response splitting)',
      ['Content-Length: 9', 'Transfer-Encoding: chunked'],
    ],
    ['two different Content-Lengths', ['Content-Length: 1', 'Content-Length: 2']],
    ['a bad Content-Length', ['Content-Length: 1e3']],
    ['obsolete line folding', ['X-A: b', ' c']],
    ['a bad header name', ['X A: b']],
    ['two equal Content-Lengths', ['Content-Length: 1', 'Content-Length: 1']],
    ['a control character in a value', ['X-A: a\x01b']],
  ])('refuses an answer it cannot frame safely: %s', (_why, headers) => {
    expect(response(['HTTP/1.1 200 OK', ...headers]).kind).toBe('unsupported')
  })

  it.each([
    'HTTP/2 200 OK',
    'HTTP/1.1 2000 OK',
    'ICY 200 OK',
    'HTTP/1.1  200 OK',
    'HTTP/1.1 099 Low',
    'HTTP/1.1 200 O\x01K',
    'HTTP/1.1 200 O\x7fK',
  ])('refuses the status line %j', (line) => {
    expect(response([line]).kind).toBe('unsupported')
  })

  it('says where the body ends (RFC 9112 §6.3)', () => {
    const head = (lines: string[]) => responseHead(['HTTP/1.1 200 OK', ...lines])
    expect(responseBody('HEAD', head(['Content-Length: 5']))).toEqual({ kind: 'none' })
    for (const status of ['204 No Content', '304 Not Modified', '103 Early Hints'])
      expect(responseBody('GET', responseHead([`HTTP/1.1 ${status}`, 'Content-Length: 5']))).toEqual({
        kind: 'none',
      })
    expect(responseBody('GET', head(['Transfer-Encoding: gzip, chunked']))).toEqual({ kind: 'chunked' })
    expect(responseBody('GET', head(['Transfer-Encoding: chunked, gzip']))).toEqual({ kind: 'until-close' })
    expect(responseBody('GET', head(['Content-Length: 5']))).toEqual({ kind: 'length', length: 5 })
    expect(responseBody('GET', head([]))).toEqual({ kind: 'until-close' })
  })
})

describe('body framing the fast lane follows', () => {
  const feed = (framing: Parameters<typeof bodyTracker>[0], text: string, pieceSize: number) => {
    const tracker = bodyTracker(framing)
    const data = Buffer.from(text, 'latin1')
    let taken = 0
    for (let i = 0; i < data.length && !tracker.done && !tracker.error; i += pieceSize) {
      const piece = data.subarray(i, Math.min(i + pieceSize, data.length))
      const n = tracker.take(piece)
      taken += n
      if (n < piece.length) break
    }
    return { taken, done: tracker.done, error: tracker.error }
  }

  it('finds the end of a chunked body whatever the pieces, extensions and trailers', () => {
    const body = '5\r\nhello\r\n6;name=v\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n'
    for (const size of [1, 2, 3, 7, body.length]) {
      expect(feed({ kind: 'chunked' }, `${body}GET / HTTP/1.1\r\n`, size)).toEqual({
        taken: body.length,
        done: true,
        error: undefined,
      })
    }
    expect(feed({ kind: 'chunked' }, '5\r\nhello\r\n', 4)).toMatchObject({ done: false, error: undefined })
  })

  it('accepts the chunk extensions Node does: a name, a token or a quoted string as its value', () => {
    for (const ext of [';a', ';a=b', ';a="b c"', ';a="b\\"c"', ';a=1;b;c="x"']) {
      expect(feed({ kind: 'chunked' }, `3${ext}\r\nabc\r\n0\r\n\r\n`, 5)).toMatchObject({
        done: true,
        error: undefined,
      })
    }
  })

  it.each([
    ['white space after the size', '3 \r\nabc\r\n0\r\n\r\n'],
    ['white space before an extension', '3 ;a=b\r\nabc\r\n0\r\n\r\n'],
    ['a control character in an extension', '3;a\x01=b\r\nabc\r\n0\r\n\r\n'],
    ['a separator in an extension name', '3;a@=b\r\nabc\r\n0\r\n\r\n'],
    ['an unterminated quoted extension', '3;a="b\r\nabc\r\n0\r\n\r\n'],
    ['a control character in a trailer', '0\r\nX-T: a\x01\r\n\r\n'],
    ['a trailer line without a colon', '0\r\nX-T\r\n\r\n'],
    ['a folded trailer line', '0\r\nX-T: a\r\n b\r\n\r\n'],
    ['a bare LF after a trailer', '0\r\nX-T: a\n\r\n'],
  ])('refuses chunked framing with %s', (_why, body) => {
    expect(feed({ kind: 'chunked' }, body, 4).error).toMatch(/chunked framing/)
  })

  it('refuses broken chunked framing', () => {
    expect(feed({ kind: 'chunked' }, 'zz\r\n', 10).error).toMatch(/bad chunk size/)
    expect(feed({ kind: 'chunked' }, '2\r\nabc\r\n', 10).error).toMatch(/longer than its size/)
    expect(feed({ kind: 'chunked' }, '2\nab\r\n', 10).error).toMatch(/bare LF/)
    expect(feed({ kind: 'chunked' }, `${'0'.repeat(5000)}\r\n`, 100).error).toMatch(/line too long/)
  })

  it("keeps a guest connection no longer than the guest's Keep-Alive timeout allows, less a second", () => {
    expect(keepAliveMs(['Keep-Alive', 'timeout=5'], 4000)).toBe(4000)
    expect(keepAliveMs(['keep-alive', 'max=10, timeout=2'], 4000)).toBe(1000)
    expect(keepAliveMs(['Keep-Alive', 'timeout=1'], 4000)).toBe(0)
    expect(keepAliveMs(['Content-Type', 'text/plain'], 4000)).toBe(4000)
  })

  it('counts a length, and takes nothing for no body', () => {
    expect(feed({ kind: 'length', length: 4 }, 'abcdef', 3)).toEqual({
      taken: 4,
      done: true,
      error: undefined,
    })
    expect(feed({ kind: 'none' }, 'abc', 3)).toEqual({ taken: 0, done: true, error: undefined })
  })
})
