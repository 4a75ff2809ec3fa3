import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http'
import { isStaleSocket, requestGuest, unreachable } from './guest-request.ts'
import {
  badStatusLine,
  clientResponseHeaders,
  forwardedProto,
  guestRequestHeaders,
  type RequestLike,
} from './headers.ts'
import type { GuestPool } from './pool.ts'
import { isCdpDiscovery, type PublicView, rewriteCdpDiscovery, rewriteLocation } from './rewrite.ts'
import type { GuestTarget } from './target.ts'

const EMPTY = Buffer.alloc(0)

/** DevTools discovery answers are a few KiB; a bigger body on those paths is passed through as it is. */
const CDP_REWRITE_LIMIT = 1024 * 1024

export interface HttpExchange {
  target: GuestTarget
  req: IncomingMessage
  res: ServerResponse
  /**
   * Called once the guest has answered, before anything is written to `res`: from then on the proxy
   * owns the response (the HTTP framework must not send one).
   */
  takeOver(): void
}

/**
 * Forwards one HTTP request to the guest and streams the answer back as it arrives, both ways, with no
 * buffering (uploads, downloads, chunked responses, server-sent events). Resolves once the guest's
 * answer has started; rejects with a 502 EmulatorError, before anything was written, when the guest
 * cannot be reached, so the caller's error handling answers.
 */
export function forwardHttp(pool: GuestPool, exchange: HttpExchange): Promise<void> {
  const { target, req, res } = exchange
  const hasBody =
    req.headers['transfer-encoding'] !== undefined ||
    (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0')
  const cdp = isCdpDiscovery(req.method, target.path)
  const headers = guestRequestHeaders(req, target, { upgrade: false, identity: cdp })
  const method = req.method ?? 'GET'
  target.onTraffic()

  return new Promise<void>((resolve, reject) => {
    let upstream: ClientRequest
    let answered = false
    let refused = false
    // The client went away (or the response ended): a request still running is abandoned.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy()
    })

    const send = (retry: boolean) => {
      upstream = requestGuest(target, method, headers, pool.agent(target.runId))
      upstream.on('response', (guestRes) => {
        const bad = badStatusLine(guestRes.statusCode ?? 0, guestRes.statusMessage ?? '')
        if (bad) {
          // Refused before anything is written: the client gets the 502 from the error handler.
          refused = true
          upstream.destroy()
          return reject(unreachable(target, new Error(`the guest's answer: ${bad}`)))
        }
        answered = true
        exchange.takeOver()
        target.onConnected()
        relay(guestRes, exchange, cdp)
        resolve()
      })
      upstream.on('error', (err) => {
        if (refused) return
        if (answered) return res.destroy()
        if (retry && !hasBody && isStaleSocket(upstream, err)) return send(false)
        reject(unreachable(target, err))
      })
      if (hasBody) req.pipe(upstream)
      else upstream.end()
    }
    send(true)
  })
}

function relay(guestRes: IncomingMessage, { target, req, res }: HttpExchange, cdp: boolean): void {
  const view = publicView(req, target)
  const headers = clientResponseHeaders(guestRes.rawHeaders, (location) => rewriteLocation(location, view))
  const status = guestRes.statusCode ?? 502
  guestRes.on('error', () => res.destroy())
  guestRes.on('data', target.onTraffic)
  if (cdp && /json/i.test(guestRes.headers['content-type'] ?? '') && !guestRes.headers['content-encoding']) {
    relayCdpDiscovery(guestRes, res, status, headers, view)
    return
  }
  res.writeHead(status, guestRes.statusMessage, headers)
  // A body of unknown length is a stream (chunked, server-sent events): the client gets the headers now,
  // not with the first event. (An empty write rather than flushHeaders(), which would send the head as
  // UTF-8 and so mangle header bytes beyond ASCII; Node writes a head before a Buffer as latin1.)
  if (guestRes.headers['content-length'] === undefined) res.write(EMPTY)
  guestRes.pipe(res, { end: false })
  guestRes.once('end', () => {
    if (guestRes.rawTrailers.length > 0) res.addTrailers(pairs(guestRes.rawTrailers))
    res.end()
  })
}

/** Reads the small discovery JSON whole, points its WebSocket URLs at the proxy, sends it with its new length. */
function relayCdpDiscovery(
  guestRes: IncomingMessage,
  res: ServerResponse,
  status: number,
  headers: string[],
  view: PublicView,
): void {
  const chunks: Buffer[] = []
  let size = 0
  const onData = (chunk: Buffer) => {
    chunks.push(chunk)
    size += chunk.length
    if (size <= CDP_REWRITE_LIMIT) return
    // Not a discovery answer after all: pass it on as it is.
    guestRes.off('data', onData)
    guestRes.off('end', onEnd)
    guestRes.pause()
    res.writeHead(status, guestRes.statusMessage, headers)
    for (const c of chunks) res.write(c)
    guestRes.pipe(res)
  }
  const onEnd = () => {
    let body = Buffer.concat(chunks)
    try {
      body = Buffer.from(
        JSON.stringify(rewriteCdpDiscovery(JSON.parse(body.toString('utf8')), view), null, 2),
      )
    } catch {
      // Not JSON: as it came.
    }
    const rest = withoutHeader(headers, 'content-length')
    res.writeHead(status, guestRes.statusMessage, [...rest, 'Content-Length', String(body.length)])
    res.end(body)
  }
  guestRes.on('data', onData)
  guestRes.once('end', onEnd)
}

export function publicView(req: RequestLike, target: GuestTarget): PublicView {
  const host = req.headers.host ?? `localhost:${req.socket.localPort ?? 80}`
  return {
    origin: `${forwardedProto(req)}://${host}`,
    host,
    prefix: target.prefix,
    port: target.port,
    address: target.address,
  }
}

function withoutHeader(raw: string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== name) out.push(raw[i] as string, raw[i + 1] as string)
  }
  return out
}

function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = []
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string])
  return out
}
