import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { requestGuest, unreachable } from './guest-request.ts'
import {
  badStatusLine,
  clientResponseHeaders,
  guestRequestHeaders,
  headerBlock,
  statusLine,
} from './headers.ts'
import { publicView } from './http-proxy.ts'
import type { GuestPool } from './pool.ts'
import { rewriteLocation } from './rewrite.ts'
import type { GuestTarget } from './target.ts'

/**
 * Passes an upgrade request (a WebSocket handshake) to the guest and, when the guest switches
 * protocols, joins the two sockets byte for byte: frames, pings, extensions and subprotocols are the
 * two ends' business. A guest that answers with a plain response instead (404, a redirect) has it
 * relayed and the connection closed. Resolves once the guest answered; rejects with a 502 EmulatorError,
 * before anything was written, when it cannot be reached.
 */
export function tunnelUpgrade(
  pool: GuestPool,
  target: GuestTarget,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
): Promise<void> {
  const headers = guestRequestHeaders(req, target, { upgrade: true, identity: false })
  return new Promise<void>((resolve, reject) => {
    // A tunnel is long-lived and never reused: no keep-alive agent.
    const upstream = requestGuest(target, req.method ?? 'GET', headers, false)
    let answered = false
    let refused = false
    const abandon = () => {
      if (!answered) upstream.destroy()
    }
    client.once('close', abandon)
    /** A status line Node's client read but that must not be passed on: the client gets a 502. */
    const refuse = (guestRes: IncomingMessage, drop: () => void): boolean => {
      const bad = badStatusLine(guestRes.statusCode ?? 0, guestRes.statusMessage ?? '')
      if (!bad) return false
      refused = true
      drop()
      reject(unreachable(target, new Error(`the guest's answer: ${bad}`)))
      return true
    }

    upstream.once('upgrade', (guestRes, guest, guestHead) => {
      if (refuse(guestRes, () => guest.destroy())) return
      answered = true
      client.off('close', abandon)
      target.onConnected()
      if (client.destroyed) {
        guest.destroy()
        return resolve()
      }
      pool.trackTunnel(target.runId, client, guest)
      joinSockets(client, guest, target)
      // Header values may carry obs-text: one byte a character, as they came.
      client.write(guestStatusLine(guestRes) + headerBlock(guestRes.rawHeaders), 'latin1')
      if (guestHead.length > 0) client.write(guestHead)
      if (head.length > 0) guest.write(head)
      resolve()
    })

    upstream.once('response', (guestRes) => {
      if (refuse(guestRes, () => upstream.destroy())) return
      answered = true
      client.off('close', abandon)
      target.onConnected()
      const view = publicView(req, target)
      const headers = clientResponseHeaders(guestRes.rawHeaders, (l) => rewriteLocation(l, view))
      // No Transfer-Encoding on this connection: the body ends when the connection does.
      client.write(guestStatusLine(guestRes) + headerBlock([...headers, 'Connection', 'close']), 'latin1')
      guestRes.pipe(client)
      guestRes.once('error', () => client.destroy())
      resolve()
    })

    upstream.on('error', (err) => {
      if (refused) return
      if (answered) return client.destroy()
      reject(unreachable(target, err))
    })
    upstream.end()
  })
}

/** Bytes flow both ways until either side closes or fails; then both are closed. */
function joinSockets(client: Duplex, guest: Socket, target: GuestTarget): void {
  for (const s of [client, guest]) {
    if ('setNoDelay' in s) (s as Socket).setNoDelay(true)
    if ('setTimeout' in s) (s as Socket).setTimeout(0)
    s.on('data', target.onTraffic)
  }
  const closeBoth = () => {
    client.destroy()
    guest.destroy()
  }
  client.once('error', closeBoth)
  guest.once('error', closeBoth)
  client.once('close', closeBoth)
  guest.once('close', closeBoth)
  client.pipe(guest)
  guest.pipe(client)
}

function guestStatusLine(res: IncomingMessage): string {
  return statusLine(res.statusCode ?? 502, res.statusMessage ?? '')
}
