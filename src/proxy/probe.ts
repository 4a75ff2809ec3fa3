import { connect } from 'node:net'

/**
 * Whether something accepts TCP connections at `address:port`. A running container refuses a closed
 * port at once (RST), so the timeout only matters for a guest whose network stack is wedged.
 */
export function isListening(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port, timeout: timeoutMs })
    const done = (open: boolean) => {
      socket.destroy()
      resolve(open)
    }
    socket.once('connect', () => done(true))
    socket.once('timeout', () => done(false))
    socket.once('error', () => done(false))
  })
}
