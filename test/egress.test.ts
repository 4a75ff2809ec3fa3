import { execFileSync } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { Isorun, IsorunError, type Sandbox } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startEmulator } from '../src/testing.ts'
import { engineEnv } from './support/engine.ts'
import { EGRESS_TEST_HOSTS } from './support/global-setup.ts'
import {
  apiUrl,
  containerOf,
  describeWithDocker,
  docker,
  newApiKey,
  newClient,
  sandboxTracker,
} from './support/sdk.ts'

/**
 * Egress policies through the real SDK on the real engine. The destinations are HTTP servers this file
 * starts on 127.0.0.1; the emulator's egress proxy resolves allowed.test, denied.test, api.wild.test and
 * wild.test to that loopback (ISORUN_EMULATOR_EGRESS_HOSTS, see global-setup.ts), so nothing here
 * reaches beyond this machine. The only other address targeted is the emulator's own isolated network.
 */

/** A server on `host` answering every request with a fixed body; its port. */
async function startServerOn(host: string, body: string): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => res.end(body))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, resolve)
  })
  return { server, port: (server.address() as { port: number }).port }
}

/**
 * Fetches `url` inside the sandbox with busybox wget (which honours http_proxy). busybox's own `-T`
 * crashes on this build, hence `timeout`. Returns what it printed and its exit code.
 */
async function wget(s: Sandbox, url: string, flags = ''): Promise<{ out: string; rc: number }> {
  const r = await s.exec(`timeout 10 wget ${flags} -q -O- ${url} 2>&1`, 20)
  return { out: r.stdout + r.stderr, rc: r.exitCode }
}

/** The address of the isolated network's gateway, as the sandbox knows it (its /etc/hosts). */
async function gatewayOf(s: Sandbox): Promise<string> {
  const line = (await s.exec('grep -w isorun-egress /etc/hosts')).stdout.trim()
  const ip = line.split(/\s+/)[0] ?? ''
  expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/)
  return ip
}

async function capabilities(url = apiUrl) {
  const res = await fetch(`${url}/_emulator/capabilities`)
  return (await res.json()) as {
    egress: { enforced: boolean; host_firewall: boolean | null; network: string }
  }
}

describeWithDocker('network profiles and egress through the real SDK', () => {
  const isorun = newClient()
  const track = sandboxTracker()
  let test: { server: Server; port: number }
  const ok = 'hello from the test server'

  beforeAll(async () => {
    test = await startServerOn('127.0.0.1', ok)
  })
  afterAll(async () => {
    await new Promise((r) => test.server.close(r))
  })

  it('lists the built-in profiles through networkProfiles()', async () => {
    const profiles = await isorun.networkProfiles()
    expect(profiles.map((p) => p.name)).toEqual(expect.arrayContaining(['default', 'none', 'web-dev']))
    for (const p of profiles) {
      expect(Array.isArray(p.allow)).toBe(true)
      expect(Array.isArray(p.deny)).toBe(true)
    }
    expect(profiles.find((p) => p.name === 'none')?.deny).toEqual(['*'])
  })

  it('answers an unknown profile with a 400 naming it', async () => {
    const err = await isorun
      .create({ image: 'busybox:latest', networkProfile: 'no-such-profile' })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(IsorunError)
    expect((err as IsorunError).status).toBe(400)
    expect((err as IsorunError).message).toContain('no-such-profile')
  })

  it('lets an allow-listed name through the proxy and answers anything else with a 403 saying why', async () => {
    const s = track(
      await isorun.create({
        image: 'busybox:latest',
        network: { allow: ['allowed.test'] },
        // A credential cannot point the guest around the proxy.
        credentials: { HTTP_PROXY: 'http://elsewhere.test:1', TOKEN: 'kept' },
      }),
    )
    const env = (await s.exec('env')).stdout
    expect(env).toContain('http_proxy=http://isorun-egress:3128')
    expect(env).toContain('HTTP_PROXY=http://isorun-egress:3128')
    expect(env).toContain('HTTPS_PROXY=http://isorun-egress:3128')
    expect(env).toContain('NO_PROXY=localhost,127.0.0.1,::1')
    expect(env).toContain('TOKEN=kept')

    const allowed = await wget(s, `http://allowed.test:${test.port}/`)
    expect(allowed).toEqual({ out: ok, rc: 0 })

    const denied = await wget(s, `http://denied.test:${test.port}/`)
    expect(denied.rc).not.toBe(0)
    expect(denied.out).toContain('403')
    // The body says why (wget hides it; ask the proxy directly).
    const body = await s.exec(
      // stdin stays open a moment: busybox nc quits at its end, before an answer that takes a few ms.
      `(printf 'GET http://denied.test:${test.port}/ HTTP/1.0\\r\\n\\r\\n'; sleep 2) | timeout 10 nc isorun-egress 3128`,
    )
    expect(body.stdout).toContain('HTTP/1.1 403 Forbidden')
    expect(body.stdout).toContain(`blocked by the egress policy of sandbox ${s.id}`)
    expect(body.stdout).toContain('not in the allow list (allowed.test)')

    // HTTPS and other tunnels go through CONNECT, judged the same way.
    const tunnel = await s.exec(
      `(printf 'CONNECT allowed.test:${test.port} HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | timeout 10 nc isorun-egress 3128`,
    )
    expect(tunnel.stdout).toContain('200 Connection Established')
    expect(tunnel.stdout).toContain(ok)
    const refused = await s.exec(
      `(printf 'CONNECT denied.test:443 HTTP/1.1\\r\\n\\r\\n'; sleep 2) | timeout 10 nc isorun-egress 3128`,
    )
    expect(refused.stdout).toContain('403 Forbidden')

    // Every refusal is a network.blocked event in the sandbox's audit log.
    const audit = await s.auditLog()
    const blocked = audit.filter((e) => e.event === 'network.blocked').map((e) => e.data)
    expect(blocked).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ host: 'denied.test', port: test.port, method: 'GET' }),
        expect.objectContaining({ host: 'denied.test', port: 443, method: 'CONNECT' }),
      ]),
    )

    const caps = await capabilities()
    expect(caps.egress.enforced).toBe(true)
    expect(caps.egress.network).toMatch(/^isorun-emulator-egress-/)
  })

  it("passes a destination's answer on byte for byte, and answers 502 to one Node cannot write", async () => {
    // A destination that answers every request with the bytes it is given (latin1), then closes.
    let answer = ''
    const raw = createNetServer((socket) => socket.once('data', () => socket.end(answer, 'latin1')))
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve))
    const port = (raw.address() as { port: number }).port
    // (nc quits when its input ends: the input lasts until the answer is in.)
    const ask = (s: Sandbox) =>
      s.exec(
        `(printf 'GET http://allowed.test:${port}/ HTTP/1.0\\r\\n\\r\\n'; sleep 2) | timeout 10 nc isorun-egress 3128`,
      )
    try {
      const s = track(await isorun.create({ image: 'busybox:latest', network: { allow: ['allowed.test'] } }))
      // A header value in UTF-8, on an answer of unknown length (sent on as a stream).
      answer = 'HTTP/1.1 200 OK\r\nX-Name: caf\xc3\xa9\r\nConnection: close\r\n\r\nhi'
      expect((await ask(s)).stdout).toContain('X-Name: café')
      // A reason phrase with a control character: Node's server would throw writing it.
      answer = 'HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nhi'
      expect((await ask(s)).stdout).toContain('HTTP/1.1 502 Bad Gateway')
      // The emulator is still there.
      expect((await wget(s, `http://allowed.test:${test.port}/`)).out).toBe(ok)
    } finally {
      raw.close()
    }
  })

  it('lets deny win over allow, and matches wildcards and CIDRs on the resolved address', async () => {
    const [both, wild, cidr, denyIp] = await Promise.all([
      isorun.create({
        image: 'busybox:latest',
        network: { allow: ['allowed.test', 'denied.test'], deny: ['denied.test'] },
      }),
      isorun.create({ image: 'busybox:latest', network: { allow: ['*.wild.test'] } }),
      isorun.create({ image: 'busybox:latest', network: { allow: ['127.0.0.0/8'] } }),
      isorun.create({
        image: 'busybox:latest',
        network: { allow: ['allowed.test'], deny: ['127.0.0.1/32'] },
      }),
    ]).then((list) => track(list))
    const url = (host: string) => `http://${host}:${test.port}/`

    expect((await wget(both, url('allowed.test'))).out).toBe(ok)
    expect((await wget(both, url('denied.test'))).out).toContain('403')
    expect((await wget(wild, url('api.wild.test'))).out).toBe(ok)
    expect((await wget(wild, url('wild.test'))).out).toContain('403')
    // allowed.test resolves (on the host) to 127.0.0.1, inside 127.0.0.0/8.
    expect((await wget(cidr, url('allowed.test'))).out).toBe(ok)
    expect((await wget(denyIp, url('allowed.test'))).out).toContain('403')
  })

  it('gives profile none no way out at all: not through the proxy, not by IP, not to the host', async () => {
    const s = track(await isorun.create({ image: 'busybox:latest', networkProfile: 'none' }))
    expect((await wget(s, `http://allowed.test:${test.port}/`)).out).toContain('403')
    // Around the proxy: the test server is on the host's loopback, which is not the guest's.
    const direct = await wget(s, `http://127.0.0.1:${test.port}/`, '-Y off')
    expect(direct.rc).not.toBe(0)
    // Nor routed off the isolated network by IP: a sandbox without a policy serves on the usual network,
    // one hop away through the host if the network forwarded anything.
    const neighbour = track(await isorun.create({ image: 'busybox:latest' }))
    await neighbour.exec(
      'mkdir -p /tmp/www && echo neighbour > /tmp/www/index.html && httpd -p 8080 -h /tmp/www',
    )
    const neighbourIp = (await neighbour.exec('hostname -i')).stdout.trim().split(/\s+/)[0] ?? ''
    expect(neighbourIp).toMatch(/^\d+\.\d+\.\d+\.\d+$/)
    const routed = await wget(s, `http://${neighbourIp}:8080/`, '-Y off')
    expect(routed.out).not.toContain('neighbour')
    expect(routed.rc).not.toBe(0)
    // A server on the host's own address on the isolated network (the gateway): closed by the host
    // firewall, where there is one (root and iptables); without, capabilities say so.
    const gateway = await gatewayOf(s)
    const onGateway = await startServerOn(gateway, 'host service')
    try {
      const raw = await s.exec(
        `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc ${gateway} ${onGateway.port}`,
      )
      const caps = await capabilities()
      if (caps.egress.host_firewall) expect(raw.stdout).not.toContain('host service')
      else expect(caps.egress.host_firewall).toBe(false)
      // A no-proxy fetch of the same: the same answer.
      const viaWget = await wget(s, `http://${gateway}:${onGateway.port}/`, '-Y off')
      if (caps.egress.host_firewall) expect(viaWget.out).not.toContain('host service')
    } finally {
      await new Promise((r) => onGateway.server.close(r))
    }
    // No name resolves inside: allowed.test is the proxy's business, not the guest's.
    const dns = await s.exec('timeout 10 nslookup allowed.test >/dev/null 2>&1; echo $?')
    expect(dns.stdout.trim()).not.toBe('0')
  })

  it('leaves a sandbox without a policy exactly as before: the usual network, no proxy', async () => {
    const s = track(await isorun.create({ image: 'busybox:latest' }))
    const env = (await s.exec('env')).stdout
    expect(env).not.toMatch(/_proxy=|_PROXY=/)
    const container = await docker.getContainer((await containerOf(s.id))?.Id ?? '').inspect()
    expect(Object.keys(container.NetworkSettings.Networks)).toEqual(['isorun-emulator-sandboxes'])
    expect(container.Config.Labels['isorun-emulator.egress']).toBeUndefined()
    expect((await s.exec('echo ok')).stdout).toBe('ok\n')
  })

  it('records the policy on the container, and a fork keeps it', async () => {
    const s = track(
      await isorun.create({
        image: 'busybox:latest',
        networkProfile: 'none',
        network: { allow: ['allowed.test'] },
      }),
    )
    const container = await containerOf(s.id)
    expect(JSON.parse(container?.Labels['isorun-emulator.egress'] ?? '{}')).toEqual({
      profile: 'none',
      allow: ['allowed.test'],
      deny: ['*'],
    })
    // The container name does not carry the run id (Docker's DNS answers reverse lookups with it),
    // and the guest cannot forge packets (no CAP_NET_RAW): the proxy knows it by its source address.
    expect(container?.Names[0]).not.toContain(s.id)
    const inspected = await docker.getContainer(container?.Id ?? '').inspect()
    expect(inspected.HostConfig.CapDrop).toContain('NET_RAW')
    expect(Object.keys(inspected.NetworkSettings.Networks)).toEqual([
      expect.stringMatching(/^isorun-emulator-egress-/),
    ])

    const parent = track(
      await isorun.create({ image: 'busybox:latest', network: { allow: ['allowed.test'] } }),
    )
    const [child] = track(await parent.fork(1))
    if (!child) throw new Error('no fork child')
    expect((await wget(child, `http://allowed.test:${test.port}/`)).out).toBe(ok)
    expect((await wget(child, `http://denied.test:${test.port}/`)).out).toContain('403')
  })

  it("reaches a restricted sandbox's own ports through url(port)", async () => {
    const s = track(await isorun.create({ image: 'busybox:latest', networkProfile: 'none' }))
    await s.exec('mkdir -p /tmp/www && echo served > /tmp/www/index.html && httpd -p 8080 -h /tmp/www')
    const res = await fetch(s.url(8080, '/index.html'))
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('served\n')
  })
})

describeWithDocker('egress across an emulator restart', () => {
  it('keeps enforcing an adopted sandbox’s policy, and removes the isolated network once unused', async () => {
    const test = await startServerOn('127.0.0.1', 'still here')
    const env = {
      ...engineEnv(),
      ISORUN_EMULATOR_LOG_LEVEL: 'silent',
      ISORUN_EMULATOR_EGRESS_HOSTS: EGRESS_TEST_HOSTS,
    }
    const apiKey = newApiKey()
    let emu = await startEmulator({ env })
    let sandbox: Sandbox | undefined
    try {
      const first = new Isorun({ apiUrl: emu.apiUrl, apiKey })
      sandbox = await first.create({ image: 'busybox:latest', network: { allow: ['allowed.test'] } })
      const network = (await capabilities(emu.apiUrl)).egress.network
      await emu.close()
      // Still in use by the sandbox: the network stays for the next start.
      expect((await docker.listNetworks({ filters: { name: [network] } })).length).toBe(1)

      emu = await emu.restart({ env })
      const second = new Isorun({ apiUrl: emu.apiUrl, apiKey })
      const adopted = await second.get(sandbox.id)
      if (!adopted) throw new Error('sandbox not adopted')
      expect((await wget(adopted, `http://allowed.test:${test.port}/`)).out).toBe('still here')
      expect((await wget(adopted, `http://denied.test:${test.port}/`)).out).toContain('403')
      await adopted.destroy()
      sandbox = undefined
      await emu.close()
      const left = await docker.listNetworks({ filters: { name: [network] } })
      expect(left.filter((n) => n.Name === network)).toEqual([])
      // Its firewall chain went with it.
      if (process.getuid?.() === 0) {
        const rules = execFileSync('iptables', ['-w', '-S', 'INPUT'], { encoding: 'utf8' })
        expect(rules).not.toContain(`isr${network.slice(-16, -4)}`)
      }
    } finally {
      await emu.close()
      if (sandbox) {
        const label = `isorun-emulator.run-id=${sandbox.id}`
        for (const c of await docker.listContainers({ all: true, filters: { label: [label] } }))
          await docker.getContainer(c.Id).remove({ force: true })
      }
      await emu.stop()
      await new Promise((r) => test.server.close(r))
    }
  })
})
