import { connect, type Socket } from 'node:net'

export interface RawResponse {
  status: number
  /** Lower-cased names; repeated headers joined with ', '. */
  headers: Record<string, string>
  body: Buffer
}

/**
 * An HTTP/1.1 client by hand, for what fetch will not do: several requests in one write (pipelining),
 * bodies sent in pieces, raw heads. Reads responses one at a time, framed by Content-Length, chunked
 * encoding (decoded) or the end of the connection.
 */
export class RawHttpClient {
  private buffered = Buffer.alloc(0)
  private ended = false
  private wake: (() => void) | undefined
  readonly socket: Socket

  private constructor(socket: Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk])
      this.wake?.()
    })
    const end = () => {
      this.ended = true
      this.wake?.()
    }
    socket.on('end', end)
    socket.on('close', end)
    socket.on('error', end)
  }

  static open(port: number, host = '::1'): Promise<RawHttpClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port, noDelay: true })
      socket.once('connect', () => resolve(new RawHttpClient(socket)))
      socket.once('error', reject)
    })
  }

  send(data: string | Buffer): void {
    this.socket.write(data)
  }

  /** The next response; `head: true` when it answers a HEAD request (no body whatever the headers say). */
  async response(opts: { head?: boolean } = {}): Promise<RawResponse> {
    const headEnd = await this.until(() => {
      const i = this.buffered.indexOf('\r\n\r\n')
      return i >= 0 ? i : undefined
    })
    const lines = this.buffered.toString('latin1', 0, headEnd).split('\r\n')
    this.buffered = this.buffered.subarray(headEnd + 4)
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1])
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      const name = line.slice(0, colon).toLowerCase()
      const value = line.slice(colon + 1).trim()
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
    }
    if (opts.head || status === 204 || status === 304 || status < 200)
      return { status, headers, body: Buffer.alloc(0) }
    if (headers['transfer-encoding']?.toLowerCase().endsWith('chunked'))
      return { status, headers, body: await this.chunked() }
    if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length'])
      await this.until(() => (this.buffered.length >= length ? true : undefined))
      const body = this.buffered.subarray(0, length)
      this.buffered = this.buffered.subarray(length)
      return { status, headers, body }
    }
    await this.until(() => (this.ended ? true : undefined))
    const body = this.buffered
    this.buffered = Buffer.alloc(0)
    return { status, headers, body }
  }

  /** Resolves true once the server has closed the connection (false if it is still open after `ms`). */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!this.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    return this.ended
  }

  close(): void {
    this.socket.destroy()
  }

  private async chunked(): Promise<Buffer> {
    const parts: Buffer[] = []
    for (;;) {
      const lineEnd = await this.until(() => {
        const i = this.buffered.indexOf('\r\n')
        return i >= 0 ? i : undefined
      })
      const size = Number.parseInt(this.buffered.toString('latin1', 0, lineEnd), 16)
      this.buffered = this.buffered.subarray(lineEnd + 2)
      if (size === 0) {
        // No trailers from the test guest: the blank line ends the body.
        await this.until(() => (this.buffered.length >= 2 ? true : undefined))
        this.buffered = this.buffered.subarray(2)
        return Buffer.concat(parts)
      }
      await this.until(() => (this.buffered.length >= size + 2 ? true : undefined))
      parts.push(this.buffered.subarray(0, size))
      this.buffered = this.buffered.subarray(size + 2)
    }
  }

  /** Waits until `ready` returns a value (re-checked as bytes arrive); fails after 10 s or at the end. */
  private async until<T>(ready: () => T | undefined): Promise<T> {
    const deadline = Date.now() + 10_000
    for (;;) {
      const value = ready()
      if (value !== undefined) return value
      if (this.ended)
        throw new Error(`connection ended; had: ${this.buffered.toString('latin1').slice(0, 200)}`)
      if (Date.now() > deadline)
        throw new Error(`no answer; had: ${this.buffered.toString('latin1').slice(0, 200)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }
}
