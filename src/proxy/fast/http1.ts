import { METHODS } from 'node:http'

/**
 * Just enough HTTP/1.1 for the fast lane: message heads, and where a body ends. Strict on purpose: what
 * the lane passes on must mean the same to every parser after it (no request smuggling), so it accepts
 * a subset of what Node's own parser (llhttp, strict mode) accepts. A request head it does not fully
 * understand (obsolete line folding, odd framing, HTTP/1.0, Expect, upgrades, any byte out of place) is
 * `unsupported`, and the lane hands the connection to Node's HTTP server, which answers it as the routes
 * do (400 for a malformed head); a guest's answer it does not understand is a 502.
 */

/** Node's default limits on a request head: its size (--max-http-header-size) and its header lines. */
export const MAX_HEAD_BYTES = 16 * 1024
export const MAX_HEADERS = 1000
/** A chunk-size line or trailer line longer than this is refused. */
const MAX_LINE_BYTES = 4096

const TOKEN_CHARS = "[!#$%&'*+.^_`|~0-9A-Za-z-]"
const TOKEN = new RegExp(`^${TOKEN_CHARS}+$`)
/** Origin form only, and only visible ASCII in the target (no control characters, no raw UTF-8). */
const REQUEST_LINE = new RegExp(`^(${TOKEN_CHARS}+) (/[\\x21-\\x7e]*) HTTP/1\\.1$`)
/** The methods Node's parser knows (it refuses others, and lower-case ones); CONNECT is never proxied. */
const KNOWN_METHODS = new Set(METHODS.filter((m) => m !== 'CONNECT'))
/** A reason phrase is HTAB, SP, visible characters and obs-text (RFC 9112 §4). */
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/
/** A field value has no control characters but HTAB (RFC 9110 §5.5); obs-text is let through, as Node does. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
const BAD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/
const CRLFCRLF = Buffer.from('\r\n\r\n')
const CR = 13
const LF = 10

export type Parsed<T> =
  | { kind: 'incomplete' }
  | { kind: 'unsupported'; why: string }
  | { kind: 'head'; head: T }

export interface RequestHead {
  method: string
  /** The request target as sent (origin form: path and query). */
  target: string
  /** [name, value, name, value, ...] as sent. */
  rawHeaders: string[]
  host: string
  authorization: string | undefined
  /** The body's framing: none, a length, or chunked. */
  body: BodyFraming
  /** The client asked to close the connection after this exchange. */
  close: boolean
  /** Bytes of the head, blank line included. */
  size: number
}

export interface ResponseHead {
  status: number
  reason: string
  rawHeaders: string[]
  /** The Transfer-Encoding header as sent (it describes the body bytes, passed on unchanged). */
  transferEncoding: string | undefined
  /** The connection to the guest cannot carry another exchange (HTTP/1.0, `Connection: close`). */
  close: boolean
  contentLength: number | undefined
  size: number
}

export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' }

interface Lines {
  first: string
  rawHeaders: string[]
  size: number
}

/**
 * Splits a head into its first line and header pairs. `malformed` as soon as a line ends in a bare LF
 * (parsers disagree on those: request smuggling) or a header line is not `token: value` with a clean
 * value (no folding, no control characters); `too-big` beyond Node's limits.
 */
function splitHead(buf: Buffer): Lines | 'incomplete' | 'too-big' | 'malformed' {
  const end = buf.indexOf(CRLFCRLF)
  if (end < 0) {
    // A bare LF now, rather than wait for a blank line that may never come. (In a whole head, the line
    // checks below find it: no line may contain one.)
    for (let lf = buf.indexOf(LF); lf >= 0; lf = buf.indexOf(LF, lf + 1))
      if (lf === 0 || buf[lf - 1] !== CR) return 'malformed'
    return buf.length > MAX_HEAD_BYTES ? 'too-big' : 'incomplete'
  }
  if (end > MAX_HEAD_BYTES) return 'too-big'
  const lines = buf.toString('latin1', 0, end).split('\r\n')
  if (lines.length - 1 > MAX_HEADERS) return 'too-big'
  const rawHeaders: string[] = []
  for (let i = 1; i < lines.length; i++) {
    const field = headerField(lines[i] as string)
    if (!field) return 'malformed'
    rawHeaders.push(field[0], field[1])
  }
  return { first: lines[0] as string, rawHeaders, size: end + CRLFCRLF.length }
}

/** `name: value` (value without its surrounding white space), or undefined for anything else. */
function headerField(line: string): [string, string] | undefined {
  const colon = line.indexOf(':')
  if (colon <= 0) return undefined
  const name = line.slice(0, colon)
  const value = line.slice(colon + 1)
  if (!TOKEN.test(name) || BAD_VALUE.test(value)) return undefined
  return [name, value.replace(/^[ \t]+|[ \t]+$/g, '')]
}

function tokens(value: string): string[] {
  return value
    .toLowerCase()
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
}

/** `METHOD /target HTTP/1.1` (origin form), without its CRLF; undefined for anything else. */
export function parseRequestLine(line: string): { method: string; target: string } | undefined {
  const match = REQUEST_LINE.exec(line)
  if (!match) return undefined
  const [, method = '', target = ''] = match
  return KNOWN_METHODS.has(method) ? { method, target } : undefined
}

export function parseRequestHead(buf: Buffer): Parsed<RequestHead> {
  const split = splitHead(buf)
  if (split === 'incomplete') return { kind: 'incomplete' }
  if (typeof split === 'string') return { kind: 'unsupported', why: `head ${split}` }
  const line = parseRequestLine(split.first)
  if (!line) return { kind: 'unsupported', why: 'not an HTTP/1.1 origin-form request line of a known method' }
  const { method, target } = line
  let host: string | undefined
  let authorization: string | undefined
  let contentLength: string | undefined
  let transferEncoding: string | undefined
  let close = false
  const raw = split.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const value = raw[i + 1] as string
    switch ((raw[i] as string).toLowerCase()) {
      case 'host':
        if (host !== undefined) return { kind: 'unsupported', why: 'two Host headers' }
        host = value
        break
      case 'authorization':
        authorization = value
        break
      case 'content-length':
        // Even two equal ones: Node refuses them (400), so the lane must not pass them on.
        if (contentLength !== undefined) return { kind: 'unsupported', why: 'two Content-Length headers' }
        contentLength = value
        break
      case 'transfer-encoding':
        if (transferEncoding !== undefined)
          return { kind: 'unsupported', why: 'two Transfer-Encoding headers' }
        transferEncoding = value
        break
      case 'connection': {
        const t = tokens(value)
        if (t.includes('upgrade')) return { kind: 'unsupported', why: 'upgrade' }
        if (t.includes('close')) close = true
        break
      }
      case 'upgrade':
        return { kind: 'unsupported', why: 'upgrade' }
      case 'expect':
        return { kind: 'unsupported', why: 'Expect' }
    }
  }
  if (host === undefined) return { kind: 'unsupported', why: 'no Host' }
  let body: BodyFraming = { kind: 'none' }
  if (transferEncoding !== undefined) {
    if (contentLength !== undefined || transferEncoding.toLowerCase() !== 'chunked')
      return { kind: 'unsupported', why: 'request framing other than plain chunked' }
    body = { kind: 'chunked' }
  } else if (contentLength !== undefined) {
    if (!/^\d{1,15}$/.test(contentLength)) return { kind: 'unsupported', why: 'bad Content-Length' }
    const length = Number(contentLength)
    if (length > 0) body = { kind: 'length', length }
  }
  return {
    kind: 'head',
    head: { method, target, rawHeaders: raw, host, authorization, body, close, size: split.size },
  }
}

export function parseResponseHead(buf: Buffer): Parsed<ResponseHead> {
  const split = splitHead(buf)
  if (split === 'incomplete') return { kind: 'incomplete' }
  if (typeof split === 'string') return { kind: 'unsupported', why: `response head ${split}` }
  const line = STATUS_LINE.exec(split.first)
  if (!line) return { kind: 'unsupported', why: 'not an HTTP/1.x status line with a status from 100 to 999' }
  const [, minor, statusText = '', reason = ''] = line
  let close = minor === '0'
  let transferEncoding: string | undefined
  let contentLength: string | undefined
  const raw = split.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const value = raw[i + 1] as string
    switch ((raw[i] as string).toLowerCase()) {
      case 'transfer-encoding':
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`
        break
      case 'content-length':
        if (contentLength !== undefined)
          return { kind: 'unsupported', why: 'two Content-Length headers in the response' }
        contentLength = value
        break
      case 'connection': {
        const t = tokens(value)
        if (t.includes('close')) close = true
        else if (minor === '0' && t.includes('keep-alive')) close = false
        break
      }
    }
  }
  if (contentLength !== undefined && !/^\d{1,15}$/.test(contentLength))
    return { kind: 'unsupported', why: 'bad Content-Length in the response' }
  // RFC 9112 §6.3: both "ought to be handled as an error" (response splitting); Node's client agrees.
  if (contentLength !== undefined && transferEncoding !== undefined)
    return { kind: 'unsupported', why: 'both Content-Length and Transfer-Encoding in the response' }
  return {
    kind: 'head',
    head: {
      status: Number(statusText),
      reason,
      rawHeaders: raw,
      transferEncoding,
      close,
      contentLength: contentLength === undefined ? undefined : Number(contentLength),
      size: split.size,
    },
  }
}

/**
 * How the body after a response head ends (RFC 9112 §6.3): none for HEAD, 1xx, 204 and 304; chunked
 * when chunked is the last coding; a length; else the end of the connection.
 */
export function responseBody(method: string, head: ResponseHead): BodyFraming | { kind: 'until-close' } {
  if (method === 'HEAD' || head.status < 200 || head.status === 204 || head.status === 304)
    return { kind: 'none' }
  if (head.transferEncoding !== undefined) {
    return /(^|,)\s*chunked\s*$/i.test(head.transferEncoding) ? { kind: 'chunked' } : { kind: 'until-close' }
  }
  if (head.contentLength !== undefined) return { kind: 'length', length: head.contentLength }
  return { kind: 'until-close' }
}

/**
 * Follows a body's bytes as they pass, to find where it ends. `take(chunk)` says how many bytes at the
 * start of `chunk` belong to the body (the rest is the next message); `done` once it has ended; `error`
 * when chunked framing is broken.
 */
export interface BodyTracker {
  take(chunk: Buffer): number
  readonly done: boolean
  readonly error: string | undefined
}

export function bodyTracker(framing: BodyFraming | { kind: 'until-close' }): BodyTracker {
  switch (framing.kind) {
    case 'none':
      return { take: () => 0, done: true, error: undefined }
    case 'length':
      return new LengthTracker(framing.length)
    case 'chunked':
      return new ChunkedTracker()
    case 'until-close':
      return { take: (chunk) => chunk.length, done: false, error: undefined }
  }
}

class LengthTracker implements BodyTracker {
  error = undefined
  private remaining: number
  constructor(length: number) {
    this.remaining = length
  }
  get done(): boolean {
    return this.remaining === 0
  }
  take(chunk: Buffer): number {
    const n = Math.min(this.remaining, chunk.length)
    this.remaining -= n
    return n
  }
}

/**
 * A chunk size in hex, then extensions `;name` or `;name=value` (a token or a quoted string), nothing
 * else: no white space, as Node's parser.
 */
const CHUNK_SIZE_LINE = new RegExp(
  `^([0-9a-fA-F]{1,12})(?:;${TOKEN_CHARS}+(?:=(?:${TOKEN_CHARS}+|"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e]|\\\\[\\t \\x21-\\x7e])*"))?)*$`,
)

/** Chunked framing (RFC 9112 §7.1): size line, data, CRLF, ..., a zero size, trailer lines, a blank line. */
class ChunkedTracker implements BodyTracker {
  /** The part of the framing the next byte belongs to. */
  private part: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size'
  private line = ''
  private remaining = 0
  error: string | undefined

  get done(): boolean {
    return this.part === 'done'
  }

  take(chunk: Buffer): number {
    let i = 0
    while (i < chunk.length && this.part !== 'done' && this.error === undefined) {
      if (this.part === 'data') {
        const n = Math.min(this.remaining, chunk.length - i)
        i += n
        this.remaining -= n
        if (this.remaining === 0) this.part = 'data-end'
        continue
      }
      // A line: the chunk size, the CRLF after data, or a trailer line.
      const lf = chunk.indexOf(LF, i)
      const end = lf < 0 ? chunk.length : lf + 1
      this.line += chunk.toString('latin1', i, end)
      i = end
      if (this.line.length > MAX_LINE_BYTES) this.error = 'chunked framing: line too long'
      if (lf < 0) continue
      if (this.line.length < 2 || this.line.charCodeAt(this.line.length - 2) !== CR) {
        this.error = 'chunked framing: bare LF'
        continue
      }
      const text = this.line.slice(0, -2)
      this.line = ''
      this.onLine(text)
    }
    return i
  }

  private onLine(text: string): void {
    if (this.part === 'data-end') {
      if (text !== '') this.error = 'chunked framing: data longer than its size'
      this.part = 'size'
    } else if (this.part === 'size') {
      const size = CHUNK_SIZE_LINE.exec(text)?.[1]
      if (size === undefined) this.error = 'chunked framing: bad chunk size or extension'
      else {
        this.remaining = Number.parseInt(size, 16)
        this.part = this.remaining === 0 ? 'trailer' : 'data'
      }
    } else if (this.part === 'trailer') {
      if (text === '') this.part = 'done'
      else if (!headerField(text)) this.error = 'chunked framing: bad trailer line'
    }
  }
}
