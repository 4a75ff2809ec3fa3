import { request } from 'node:http'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { GuestPool } from '../src/proxy/pool.ts'

/**
 * A guest that takes its time to close: it answers any request with `ok` on a kept-alive connection, and
 * closes its side of a connection only `lagMs` after the proxy closed its own (a busy machine, a guest
 * process descheduled). CRIU refuses to checkpoint a process that still holds such a connection.
 */
async function slowClosingGuest(lagMs: number): Promise<{ server: Server; port: number; open: Set<Socket> }> {
  const open = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    open.add(socket)
    socket.on('close', () => open.delete(socket))
    socket.on('error', () => {})
    socket.on('data', () =>
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok'),
    )
    socket.on('end', () => setTimeout(() => socket.end(), lagMs))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as { port: number }).port, open }
}

function get(pool: GuestPool, runId: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: pool.agent(runId) }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => {
        body += d.toString()
      })
      res.on('end', () => resolve(body))
    })
    req.on('error', reject)
    req.end()
  })
}

describe("the proxy's connections into a sandbox", () => {
  const servers: Server[] = []
  afterEach(() => {
    for (const s of servers.splice(0)) s.close()
  })

  it('closeConnections resolves only once the guest has closed its side too (bounded)', async () => {
    const guest = await slowClosingGuest(300)
    servers.push(guest.server)
    const pool = new GuestPool()
    // A kept-alive agent connection and a tunnel (as a WebSocket's guest side is tracked).
    expect(await get(pool, 'run1', guest.port)).toBe('ok')
    const tunnel = connect({ host: '127.0.0.1', port: guest.port })
    await new Promise((r) => tunnel.once('connect', r))
    pool.trackTunnel('run1', tunnel)
    await new Promise((r) => setTimeout(r, 50))
    expect(guest.open.size).toBe(2)

    const started = performance.now()
    await pool.closeConnections('run1')
    // The guest has let go of every connection (its FIN came back): a checkpoint now finds none there.
    expect([...guest.open].filter((s) => !s.writableEnded)).toHaveLength(0)
    expect(performance.now() - started).toBeGreaterThan(250)
  })

  it('does not wait forever for a guest that never closes', async () => {
    const guest = await slowClosingGuest(60_000)
    servers.push(guest.server)
    const pool = new GuestPool()
    expect(await get(pool, 'run2', guest.port)).toBe('ok')
    const started = performance.now()
    await pool.closeConnections('run2')
    expect(performance.now() - started).toBeLessThan(3_000)
    for (const s of guest.open) s.destroy()
  })
})
