import { connect, type Socket } from 'node:net'
import { type EmulatorError, Errors } from '../../errors.ts'
import { limitConnectTime } from '../../net/connect-timeout.ts'
import { unreachable } from '../guest-request.ts'
import {
  clientResponseHeaders,
  guestRequestHeaders,
  headerBlock,
  type RequestLike,
  statusLine,
} from '../headers.ts'
import { publicView } from '../http-proxy.ts'
import type { GuestPool } from '../pool.ts'
import { isProxyUrl } from '../proxy-url.ts'
import { rewriteLocation } from '../rewrite.ts'
import type { GuestTarget } from '../target.ts'
import type { FastLaneHooks } from './hooks.ts'
import {
  type BodyTracker,
  bodyTracker,
  parseRequestHead,
  parseRequestLine,
  parseResponseHead,
  type RequestHead,
  responseBody,
} from './http1.ts'

/** As Fastify's keepAliveTimeout: an idle client connection is closed after this. */
const CLIENT_IDLE_MS = 72_000
/** As the slow path's keep-alive agent (pool.ts): closed before a typical guest server closes it. */
const GUEST_IDLE_MS = 4000
const EMPTY = Buffer.alloc(0)

/** What a connection needs from the lane that carries it (fast/lane.ts). */
export interface LaneContext {
  readonly pool: GuestPool
  readonly hooks: FastLaneHooks
  /** One more exchange carried. */
  carried(): void
  /** Gives the client connection to Node's HTTP server, `pending` (bytes read, not handled) first. */
  handOff(socket: Socket, pending: Buffer): void
  /** The connection is gone: the lane forgets it. */
  forget(): void
}

/** What may begin a request line before its CRLF arrives: anything else is refused without waiting. */
const REQUEST_LINE_START = /^[\x20-\x7e]*\r?$/

interface Guest {
  socket: Socket
  runId: string
  port: number
  /** Closes the connection after `keepMs` without an exchange; refreshed after each. */
  idle: NodeJS.Timeout
  /** GUEST_IDLE_MS, or less when the guest says it closes idle connections sooner (`Keep-Alive: timeout=N`). */
  keepMs: number
  /** Must not carry another exchange (the guest said close, or broke framing). */
  spent: boolean
}

interface Exchange {
  head: RequestHead
  target: GuestTarget
  /** The head as the guest gets it, kept to resend once on a fresh connection. */
  guestHead: string
  request: BodyTracker
  /** The response head, while it arrives. */
  responseHead: Buffer
  response: BodyTracker | undefined
  status: number
  /** The answer's end is the connection's end. */
  closeAfter: boolean
  /** The answer has neither a length nor chunks: it ends when the guest closes. */
  untilClose: boolean
  /** Sent on a reused connection: if that turns out closed before any answer, one retry. */
  retry: boolean
  started: number
}

/**
 * One client connection the fast lane carries: requests one at a time (pipelined ones wait their turn),
 * each relayed to a connection into the guest that is kept while it leads to the same sandbox port.
 */
export class LaneConnection {
  /** Reading a request head, finding its guest, relaying one exchange, or done with. */
  private phase: 'head' | 'routing' | 'exchange' | 'gone' = 'head'
  private pending: Buffer = EMPTY
  private guest: Guest | undefined
  private exchange: Exchange | undefined
  private clientEnded = false
  /**
   * When the head being read began (the connection's opening for its first request, else its first
   * byte); undefined while no head is being read. The lane answers 408 past the server's headersTimeout.
   */
  private headSince: number | undefined
  private readonly client: Socket
  private readonly lane: LaneContext
  private readonly onData = (chunk: Buffer) => this.onClientData(chunk)
  private readonly onEnd = () => this.onClientEnd()
  private readonly onGone = () => this.destroy()
  // Idle between requests: closed. In the middle of one (a quiet stream): left alone.
  private readonly onTimeout = () => this.phase === 'head' && this.destroy()

  constructor(client: Socket, lane: LaneContext) {
    this.client = client
    this.lane = lane
  }

  start(): void {
    this.headSince = performance.now()
    this.client.on('data', this.onData)
    this.client.on('end', this.onEnd)
    for (const event of ['close', 'error']) this.client.on(event, this.onGone)
    this.client.on('timeout', this.onTimeout)
    this.client.setTimeout(CLIENT_IDLE_MS)
    // Heads and bodies are written as they come; Nagle would hold the small ones back.
    this.client.setNoDelay(true)
  }

  destroy(): void {
    if (this.phase === 'gone') return
    this.phase = 'gone'
    this.headSince = undefined
    this.lane.forget()
    this.client.destroy()
    this.dropGuest()
  }

  // --- the client's side -----------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    if (this.phase === 'exchange' && this.exchange && !this.exchange.request.done) {
      this.exchange.target.onTraffic()
      this.forwardRequestBody(chunk)
      return
    }
    if (this.pending.length === 0) {
      this.pending = chunk
      if (this.phase === 'head') this.headSince ??= performance.now()
    } else this.pending = Buffer.concat([this.pending, chunk])
    if (this.phase === 'head') this.readHead()
    // While routing or answering, the next request waits (read no further until this one is done).
    else this.client.pause()
  }

  private onClientEnd(): void {
    this.clientEnded = true
    if (this.phase === 'head' && this.pending.length === 0) this.destroy()
  }

  private readHead(): void {
    // Only url(port) requests are the lane's; anything else is for the HTTP framework.
    // Node's server answers what is malformed (400, as on the routes) or too big (431).
    const firstLineEnd = this.pending.indexOf('\r\n')
    if (firstLineEnd >= 0) {
      const line = parseRequestLine(this.pending.toString('latin1', 0, firstLineEnd))
      if (!line || !isProxyUrl(line.target)) return void this.handOff()
    } else if (
      !REQUEST_LINE_START.test(this.pending.toString('latin1', 0, Math.min(this.pending.length, 8192)))
    )
      return void this.handOff()
    const parsed = parseRequestHead(this.pending)
    if (parsed.kind === 'incomplete') return
    if (parsed.kind === 'unsupported' || !this.lane.hooks.enabled()) return void this.handOff()
    const head = parsed.head
    this.phase = 'routing'
    this.headSince = undefined
    this.client.pause()
    this.lane.hooks.route(head.method, head.target, head.host, this.client).then(
      (target) => {
        if (this.phase !== 'routing') return
        if (!target) return void this.handOff()
        this.withGuest(
          target,
          (reused) => this.begin(head, target, reused),
          // Not connected, nothing consumed: the slow path tries again and answers (502 and why).
          () => this.handOff(),
        )
      },
      () => this.phase === 'routing' && this.handOff(),
    )
  }

  private handOff(): void {
    if (this.phase === 'gone') return
    this.phase = 'gone'
    this.headSince = undefined
    this.client.off('data', this.onData)
    this.client.off('end', this.onEnd)
    for (const event of ['close', 'error']) this.client.off(event, this.onGone)
    this.client.off('timeout', this.onTimeout)
    this.client.setTimeout(0)
    this.dropGuest()
    const pending = this.pending
    this.pending = EMPTY
    this.lane.handOff(this.client, pending)
  }

  /** Answers 408 and closes if a request head has been arriving for `ms` or more (slowloris). */
  expireHead(now: number, ms: number): void {
    if (this.phase === 'head' && this.headSince !== undefined && now - this.headSince >= ms)
      this.refuse(Errors.headTimeout(ms))
  }

  /** A request body whose framing broke: 400 if no answer has begun, else the connection just ends. */
  private refuseBody(ex: Exchange, why: string): void {
    // The guest has part of a body that will never end: that connection is done for.
    this.dropGuest()
    if (ex.response) return void this.destroy()
    this.refuse(Errors.badRequest(why))
  }

  /** Answers `e` and closes the connection, reading nothing more from the client. */
  private refuse(e: EmulatorError): void {
    this.phase = 'gone'
    this.headSince = undefined
    this.exchange = undefined
    this.lane.forget()
    this.dropGuest()
    this.client.off('data', this.onData)
    this.client.end(this.lane.hooks.errorResponse(e))
    this.client.once('finish', () => this.client.destroy())
  }

  // --- one exchange ----------------------------------------------------------------------------

  private begin(head: RequestHead, target: GuestTarget, reused: boolean): void {
    const view = this.requestView(head)
    const headers = guestRequestHeaders(view, target, { upgrade: false, identity: false })
    // The body goes on as it came, so its framing header goes with it.
    if (head.body.kind === 'chunked') headers.push('Transfer-Encoding', 'chunked')
    const guestHead = `${head.method} ${target.path} HTTP/1.1\r\n${headerBlock(headers)}`
    this.exchange = {
      head,
      target,
      guestHead,
      request: bodyTracker(head.body),
      responseHead: EMPTY,
      response: undefined,
      status: 0,
      closeAfter: head.close,
      untilClose: false,
      retry: reused && head.body.kind === 'none',
      started: performance.now(),
    }
    this.phase = 'exchange'
    this.lane.carried()
    target.onTraffic()
    // Header values may carry obs-text: one byte a character, as they came (and as Node writes heads).
    this.guest?.socket.write(guestHead, 'latin1')
    const rest = this.pending.subarray(head.size)
    this.pending = EMPTY
    if (rest.length > 0) this.forwardRequestBody(rest)
    if (!this.exchange?.request.done) this.client.resume()
  }

  private forwardRequestBody(chunk: Buffer): void {
    const ex = this.exchange
    if (!ex) return
    const n = ex.request.take(chunk)
    if (ex.request.error) return void this.refuseBody(ex, ex.request.error)
    if (n > 0 && this.guest && !this.guest.socket.destroyed) {
      if (!this.guest.socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        this.client.pause()
        this.guest.socket.once('drain', () => {
          if (this.exchange === ex && !ex.request.done) this.client.resume()
        })
      }
    }
    if (n < chunk.length) this.pending = Buffer.concat([this.pending, chunk.subarray(n)])
    if (ex.request.done) {
      this.client.pause()
      if (ex.response?.done) this.finish()
    }
  }

  private onGuestData(guest: Guest, chunk: Buffer): void {
    const ex = this.exchange
    if (guest !== this.guest || !ex) {
      // Bytes nobody asked for: this connection cannot be trusted with another exchange.
      guest.socket.destroy()
      return
    }
    ex.target.onTraffic()
    if (!ex.response) {
      ex.responseHead = ex.responseHead.length === 0 ? chunk : Buffer.concat([ex.responseHead, chunk])
      this.readResponseHead(ex)
      return
    }
    this.relayResponseBody(ex, chunk)
  }

  private readResponseHead(ex: Exchange): void {
    for (;;) {
      const parsed = parseResponseHead(ex.responseHead)
      if (parsed.kind === 'incomplete') return
      if (parsed.kind === 'unsupported')
        return void this.guestFailed(ex, new Error(`the guest's answer: ${parsed.why}`))
      const head = parsed.head
      const rest = ex.responseHead.subarray(head.size)
      ex.responseHead = EMPTY
      const view = publicView(this.requestView(ex.head), ex.target)
      const headers = clientResponseHeaders(head.rawHeaders, (l) => rewriteLocation(l, view))
      if (head.status === 101)
        return void this.guestFailed(ex, new Error('the guest switched protocols unasked'))
      if (head.status < 200) {
        // 103 Early Hints and the like: passed on, then the real answer.
        this.client.write(statusLine(head.status, head.reason) + headerBlock(headers), 'latin1')
        ex.responseHead = rest
        if (rest.length === 0) return
        continue
      }
      const framing = responseBody(ex.head.method, head)
      if (head.transferEncoding !== undefined) headers.push('Transfer-Encoding', head.transferEncoding)
      if (this.guest) this.guest.keepMs = keepAliveMs(head.rawHeaders, this.guest.keepMs)
      if (this.guest && (head.close || this.guest.keepMs <= 0)) this.guest.spent = true
      if (framing.kind === 'until-close') {
        ex.untilClose = true
        ex.closeAfter = true
      }
      if (ex.closeAfter || this.clientEnded) headers.push('Connection', 'close')
      ex.response = bodyTracker(framing)
      ex.status = head.status
      ex.target.onConnected()
      // The head and what came with it of the body in one write: one packet for a small answer.
      this.relayResponseBody(ex, rest, statusLine(head.status, head.reason) + headerBlock(headers))
      return
    }
  }

  /** Passes on the bytes of `chunk` that belong to the answer's body, after `head` when given. */
  private relayResponseBody(ex: Exchange, chunk: Buffer, head?: string): void {
    const response = ex.response
    const guest = this.guest
    if (!response || !guest) return
    const n = response.take(chunk)
    if (response.error) return void this.destroy()
    if (n < chunk.length) guest.spent = true
    const body = n === chunk.length ? chunk : chunk.subarray(0, n)
    const out =
      head === undefined
        ? body
        : n === 0
          ? Buffer.from(head, 'latin1')
          : Buffer.concat([Buffer.from(head, 'latin1'), body])
    if (out.length > 0 && !this.client.write(out)) {
      guest.socket.pause()
      this.client.once('drain', () => guest.socket.resume())
    }
    if (response.done) this.responseDone(ex)
  }

  private responseDone(ex: Exchange): void {
    this.completed(ex, ex.status)
    if (ex.request.done) this.finish()
    // else: the guest answered before the body ended; the rest of the body still goes to it.
  }

  /** Request sent and answer relayed: the connection waits for the next request, or ends. */
  private finish(): void {
    const ex = this.exchange
    if (!ex) return
    this.exchange = undefined
    const guest = this.guest
    if (guest) {
      if (guest.spent || guest.socket.destroyed) this.dropGuest()
      else if (guest.keepMs === GUEST_IDLE_MS) guest.idle.refresh()
      else {
        clearTimeout(guest.idle)
        guest.idle = setTimeout(
          () => guest === this.guest && !this.exchange && this.dropGuest(),
          guest.keepMs,
        ).unref()
      }
    }
    if (ex.closeAfter || this.clientEnded) {
      this.phase = 'gone'
      this.lane.forget()
      this.client.end()
      this.dropGuest()
      return
    }
    this.phase = 'head'
    this.client.resume()
    if (this.pending.length > 0) {
      this.headSince = performance.now()
      this.readHead()
    }
  }

  // --- the guest's side ------------------------------------------------------------------------

  /**
   * Calls `ready` with a connection to the target's port: the idle one if it leads there, else a new
   * one; `failed` when none can be made.
   */
  private withGuest(
    target: GuestTarget,
    ready: (reused: boolean) => void,
    failed: (err: Error) => void,
  ): void {
    const current = this.guest
    if (current && current.runId === target.runId && current.port === target.port && !current.spent) {
      return void ready(true)
    }
    this.dropGuest()
    const socket = connect({ host: target.address, port: target.port, noDelay: true })
    const idle = setTimeout(() => {
      if (guest === this.guest && !this.exchange) this.dropGuest()
    }, GUEST_IDLE_MS).unref()
    const guest: Guest = {
      socket,
      runId: target.runId,
      port: target.port,
      idle,
      keepMs: GUEST_IDLE_MS,
      spent: false,
    }
    limitConnectTime(socket)
    const onError = (err: Error) => {
      if (this.phase === 'routing') failed(err)
    }
    socket.once('error', onError)
    socket.once('connect', () => {
      socket.off('error', onError)
      if (this.phase !== 'routing') return void socket.destroy()
      this.guest = guest
      this.lane.pool.trackTunnel(target.runId, socket)
      socket.on('data', (chunk: Buffer) => this.onGuestData(guest, chunk))
      socket.on('error', () => socket.destroy())
      socket.on('close', () => this.onGuestClose(guest))
      ready(false)
    })
  }

  private onGuestClose(guest: Guest): void {
    clearTimeout(guest.idle)
    if (guest !== this.guest) return
    this.guest = undefined
    const ex = this.exchange
    if (!ex || this.phase !== 'exchange') return
    if (ex.response && !ex.response.done && ex.untilClose) {
      // The answer's end was the guest closing.
      this.responseDone(ex)
      if (!ex.request.done) this.destroy()
      return
    }
    if (ex.response?.done) {
      // Answered; the request body had not ended: nothing more can be sent.
      if (!ex.request.done) this.destroy()
      return
    }
    this.guestFailed(
      ex,
      Object.assign(new Error('the guest closed the connection before answering'), { code: 'ECONNRESET' }),
    )
  }

  private guestFailed(ex: Exchange, err: Error): void {
    // Part of an answer is out: the client can only see the connection end.
    if (ex.response) return void this.destroy()
    if (ex.retry) {
      // A kept-alive connection the guest had just closed: the request had no body, so it can go again.
      ex.retry = false
      ex.responseHead = EMPTY
      this.dropGuest()
      this.phase = 'routing'
      this.withGuest(
        ex.target,
        () => {
          this.phase = 'exchange'
          this.guest?.socket.write(ex.guestHead, 'latin1')
        },
        (again) => this.answerFailure(ex, again),
      )
      return
    }
    this.answerFailure(ex, err)
  }

  /** The guest failed before answering: the client gets the slow path's 502, and the connection ends. */
  private answerFailure(ex: Exchange, err: Error): void {
    const e = unreachable(ex.target, err)
    this.completed(ex, e.status)
    this.refuse(e)
  }

  private completed(ex: Exchange, status: number): void {
    this.lane.hooks.completed({
      method: ex.head.method,
      target: ex.head.target,
      authorization: ex.head.authorization,
      status,
      ms: performance.now() - ex.started,
    })
  }

  private dropGuest(): void {
    const guest = this.guest
    if (!guest) return
    this.guest = undefined
    clearTimeout(guest.idle)
    guest.socket.destroy()
  }

  private requestView(head: RequestHead): RequestLike {
    return {
      rawHeaders: head.rawHeaders,
      headers: { host: head.host },
      socket: { remoteAddress: this.client.remoteAddress, localPort: this.client.localPort },
    }
  }
}

/**
 * How long the guest keeps an idle connection, less a second of margin (as Node's HTTP agent does): a
 * request must not arrive just as the guest closes. `current` when the answer does not say.
 */
export function keepAliveMs(raw: string[], current: number): number {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== 'keep-alive') continue
    const seconds = /(?:^|,)\s*timeout=(\d+)/i.exec(raw[i + 1] as string)?.[1]
    if (seconds !== undefined) return Math.min(GUEST_IDLE_MS, Number(seconds) * 1000 - 1000)
  }
  return current
}
