import { STATUS_CODES } from 'node:http'
import { bearerToken } from '../net/bearer.ts'
import type { GuestTarget } from './target.ts'

/**
 * What the proxy reads of a client's request: Node's IncomingMessage has this shape, and so does what
 * the fast lane (fast/lane.ts) parses itself.
 */
export interface RequestLike {
  /** Header names and values as sent, flat: [name, value, name, value, ...]. */
  rawHeaders: string[]
  headers: { host?: string | undefined }
  socket: { remoteAddress?: string | undefined; encrypted?: boolean; localPort?: number | undefined }
}

/**
 * Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the ones a proxy
 * answers itself: never forwarded in either direction. `Expect` is answered by the emulator's own
 * server (100 Continue) before the body is read.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'transfer-encoding',
  'upgrade',
  'expect',
])

/** Set by the proxy; what a client sent under these names is replaced (X-Forwarded-For is appended to). */
const SET_BY_PROXY = new Set([
  'host',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-prefix',
])

export interface ForwardOptions {
  /** Keep `Connection: Upgrade` and `Upgrade` (a WebSocket handshake). */
  upgrade: boolean
  /** Ask the guest for an uncompressed body (the proxy rewrites it). */
  identity: boolean
}

/**
 * The request headers the guest sees, as a flat raw list (case and repeats kept): hop-by-hop headers
 * and the emulator's bearer key dropped, `Host: localhost:<port>` (Chrome's DevTools refuses any other
 * Host), and X-Forwarded-* saying where the request really came from.
 */
export function guestRequestHeaders(req: RequestLike, target: GuestTarget, opts: ForwardOptions): string[] {
  const raw = req.rawHeaders
  const dropped = connectionTokens(raw)
  const out: string[] = []
  let forwardedFor = ''
  let upgrade: string | undefined
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    const lower = name.toLowerCase()
    if (lower === 'upgrade') upgrade = value
    if (HOP_BY_HOP.has(lower) || dropped?.has(lower)) continue
    if (SET_BY_PROXY.has(lower)) {
      if (lower === 'x-forwarded-for') forwardedFor += `${value}, `
      continue
    }
    // The run id in the URL is the credential; an API key sent along is the emulator's, not the guest's.
    if (lower === 'authorization' && bearerToken(value) !== undefined) continue
    if (opts.identity && lower === 'accept-encoding') continue
    out.push(name, value)
  }
  const host = req.headers.host ?? ''
  out.push(
    'Host',
    `localhost:${target.port}`,
    'X-Forwarded-For',
    forwardedFor + (req.socket.remoteAddress ?? ''),
    'X-Forwarded-Proto',
    forwardedProto(req),
    'X-Forwarded-Host',
    host,
    'X-Forwarded-Prefix',
    target.prefix,
  )
  if (opts.upgrade && upgrade !== undefined) out.push('Connection', 'Upgrade', 'Upgrade', upgrade)
  return out
}

/** The guest's response headers for the client, hop-by-hop ones dropped, `Location` passed through `location`. */
export function clientResponseHeaders(raw: string[], location: (value: string) => string): string[] {
  const dropped = connectionTokens(raw)
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || dropped?.has(lower)) continue
    const value = raw[i + 1] as string
    out.push(name, lower === 'location' ? location(value) : value)
  }
  return out
}

/** Raw header pairs as the lines of a message head, blank line included. */
export function headerBlock(raw: string[]): string {
  let block = ''
  for (let i = 0; i + 1 < raw.length; i += 2) block += `${raw[i]}: ${raw[i + 1]}\r\n`
  return `${block}\r\n`
}

/**
 * Why a guest's status line cannot be passed on, or undefined. Node's client reads a status below 100
 * and control characters in the reason phrase, which Node's server then refuses to write (it throws).
 */
export function badStatusLine(status: number, reason: string): string | undefined {
  if (!(status >= 100 && status <= 999)) return `status ${status} is not in [100, 999]`
  if (/[^\t\x20-\x7e\x80-\xff]/.test(reason)) return 'a control character in the reason phrase'
  return undefined
}

/** A response's first line; the reason phrase is Node's for the status unless given. */
export function statusLine(status: number, reason = STATUS_CODES[status] ?? ''): string {
  return `HTTP/1.1 ${status} ${reason}\r\n`
}

/**
 * A whole response written straight to a socket that ends after it (an answer given outside Node's
 * HTTP server: upgrades, the fast lane, the egress proxy's tunnels): `headers` plus its length and
 * `Connection: close`.
 */
export function closingResponse(status: number, headers: string[], body: string): string {
  const framing = ['Content-Length', String(Buffer.byteLength(body)), 'Connection', 'close']
  return statusLine(status) + headerBlock([...headers, ...framing]) + body
}

export function forwardedProto(req: RequestLike): 'http' | 'https' {
  return req.socket.encrypted ? 'https' : 'http'
}

/** Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionTokens(raw: string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== 'connection') continue
    for (const t of (raw[i + 1] as string).split(',')) {
      const token = t.trim().toLowerCase()
      if (token && token !== 'close' && token !== 'keep-alive' && token !== 'upgrade') {
        tokens ??= new Set()
        tokens.add(token)
      }
    }
  }
  return tokens
}
