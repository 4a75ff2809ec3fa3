import { createServer, type Server } from 'node:http'
import { networkInterfaces } from 'node:os'
import type { Sandbox } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { containerOf, describeWithDocker, newClient, sandboxTracker } from './support/sdk.ts'

/**
 * Issue 12 item 3: what the egress proxy must not open under `*` or a deny-only policy, through the real
 * SDK on the real engine. Each probe is a raw CONNECT from the guest to the proxy (busybox nc).
 */

/**
 * One CONNECT through the sandbox's proxy, then a request in the tunnel; what came back, read until the
 * proxy closes the connection (nc's -e program writes the request, then copies the answer out). Not a
 * fixed wait: a proxy slower than that on a busy machine would look like an empty answer.
 */
async function connectVia(s: Sandbox, target: string): Promise<string> {
  const r = await s.exec(
    `timeout 15 nc isorun-egress 3128 -e sh -c "printf 'CONNECT ${target} HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n'; cat >&2" 2>&1`,
    30,
  )
  return r.stdout
}

/** A non-loopback IPv4 address of this host (the emulator's host: the proxy runs here). */
function hostAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  throw new Error('this host has no non-loopback IPv4 address')
}

describeWithDocker('the egress proxy keeps closed what the network closed (issue 12 item 3)', () => {
  const tenant = newClient()
  const neighbour = newClient()
  const track = sandboxTracker()
  let hostService: Server
  let hostPort = 0
  let host = ''
  let other: Sandbox
  let otherIp = ''

  beforeAll(async () => {
    host = hostAddress()
    hostService = createServer((_req, res) => res.end('host service'))
    await new Promise<void>((resolve) => hostService.listen(0, '0.0.0.0', resolve))
    hostPort = (hostService.address() as { port: number }).port
    other = track(await neighbour.create({ image: 'busybox:latest' }))
    await other.exec('mkdir -p /tmp/www && echo neighbour > /tmp/www/index.html && httpd -p 8080 -h /tmp/www')
    const c = await containerOf(other.id)
    otherIp = Object.values(c?.NetworkSettings.Networks ?? {}).find((n) => n?.IPAddress)?.IPAddress ?? ''
    expect(otherIp).toMatch(/^\d+\.\d+\.\d+\.\d+$/)
  })
  afterAll(async () => {
    await new Promise((r) => hostService?.close(r))
  })

  it('refuses the host, other sandboxes and private ranges under allow ["*"] and under a deny-only policy', async () => {
    const [everything, denyOnly] = track(
      await Promise.all([
        tenant.create({ image: 'busybox:latest', network: { allow: ['*'] } }),
        tenant.create({ image: 'busybox:latest', network: { deny: ['denied.test'] } }),
      ]),
    )
    const targets = [
      `${host}:${hostPort}`,
      `${otherIp}:8080`,
      '10.255.255.1:80',
      '172.16.0.1:80',
      '192.168.0.1:80',
      '100.64.0.1:80',
      '[fd00::1]:80',
      '[64:ff9b::a00:1]:80',
    ]
    for (const s of [everything, denyOnly]) {
      for (const target of targets) {
        const got = await connectVia(s, target)
        expect({ target, got: got.split('\r\n')[0] }).toEqual({ target, got: 'HTTP/1.1 403 Forbidden' })
        expect(got).not.toContain('host service')
        expect(got).not.toContain('neighbour')
      }
    }
  })

  it('opens the host to an IP rule naming it, but another sandbox to no rule at all', async () => {
    const named = track(
      await tenant.create({
        image: 'busybox:latest',
        network: { allow: [`${host}/32`, `${otherIp}/32`, '0.0.0.0/0'] },
      }),
    )
    const toHost = await connectVia(named, `${host}:${hostPort}`)
    expect(toHost).toContain('200 Connection Established')
    expect(toHost).toContain('host service')
    const toOther = await connectVia(named, `${otherIp}:8080`)
    expect(toOther.split('\r\n')[0]).toBe('HTTP/1.1 403 Forbidden')
    expect(toOther).toContain('other sandboxes')
    expect(toOther).not.toContain('neighbour')
  })
})
