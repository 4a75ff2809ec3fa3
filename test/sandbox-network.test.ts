import type { Sandbox } from 'isorun'
import { beforeAll, expect, it } from 'vitest'
import { containerOf, describeWithDocker, newClient, sandboxTracker } from './support/sdk.ts'

/** Exit status busybox `timeout` gives when it has to kill the command (SIGTERM: 128 + 15). */
const KILLED_BY_TIMEOUT = 143

/** A sandbox's IP address on its network, from the engine. */
async function ipOf(s: Sandbox): Promise<string> {
  const c = await containerOf(s.id)
  const ip = Object.values(c?.NetworkSettings.Networks ?? {}).find((n) => n?.IPAddress)?.IPAddress ?? ''
  expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/)
  return ip
}

/** An HTTP request from inside `s` with busybox nc, bounded by `timeout`: what came back and the status. */
async function fetchFrom(s: Sandbox, ip: string, port: number): Promise<{ out: string; rc: number }> {
  const r = await s.exec(
    `(printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | timeout 5 nc ${ip} ${port}; echo "rc=$?"`,
    20,
  )
  const m = /rc=(\d+)\s*$/.exec(r.stdout)
  return { out: r.stdout.replace(/rc=\d+\s*$/, ''), rc: Number(m?.[1] ?? -1) }
}

describeWithDocker("sandboxes cannot reach each other's ports (issue 12 item 2)", () => {
  const alice = newClient()
  const bob = newClient()
  const track = sandboxTracker()
  let server: Sandbox
  let serverIp = ''

  beforeAll(async () => {
    server = track(await bob.create({ image: 'busybox:latest' }))
    await server.exec('mkdir -p /tmp/www && echo bob-only > /tmp/www/index.html && httpd -p 8080 -h /tmp/www')
    serverIp = await ipOf(server)
  })

  it("another key's sandbox gets no connection to a sandbox's server, while its owner reaches it through url(port)", async () => {
    const intruder = track(await alice.create({ image: 'busybox:latest' }))
    const tried = await fetchFrom(intruder, serverIp, 8080)
    // The client hangs until `timeout` kills it: no answer, not a refusal, not a crash.
    expect(tried).toEqual({ out: '', rc: KILLED_BY_TIMEOUT })
    // The server is up: its own sandbox reaches it, and so does url(port) from the host.
    expect((await fetchFrom(server, '127.0.0.1', 8080)).out).toContain('bob-only')
    const viaUrl = await fetch(server.url(8080, '/index.html'))
    expect(viaUrl.status).toBe(200)
    expect(await viaUrl.text()).toBe('bob-only\n')
  })

  it('holds for the same key too, for restored sandboxes, and both ways', async () => {
    const sibling = track(await bob.create({ image: 'busybox:latest' }))
    await sibling.exec('mkdir -p /tmp/www && echo sibling > /tmp/www/index.html && httpd -p 8081 -h /tmp/www')
    expect((await fetchFrom(sibling, serverIp, 8080)).rc).toBe(KILLED_BY_TIMEOUT)
    expect((await fetchFrom(server, await ipOf(sibling), 8081)).rc).toBe(KILLED_BY_TIMEOUT)
    const snap = await sibling.snapshot()
    const restored = track(await bob.restore(snap.id))
    expect((await fetchFrom(restored, serverIp, 8080)).rc).toBe(KILLED_BY_TIMEOUT)
    await bob.deleteSnapshot(snap.id)
  })

  it("puts every sandbox without a policy on the emulator's own network", async () => {
    const a = track(await alice.create({ image: 'busybox:latest' }))
    const [ca, cs] = [await containerOf(a.id), await containerOf(server.id)]
    // The networks the container is attached to (Podman's listing has no HostConfig.NetworkMode).
    const networks = (c: typeof ca) => Object.keys(c?.NetworkSettings.Networks ?? {})
    expect(networks(ca)).toEqual(networks(cs))
    expect(networks(ca)).toEqual(['isorun-emulator-sandboxes'])
  })
})
