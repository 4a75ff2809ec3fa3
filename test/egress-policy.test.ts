import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compilePolicy, decide, GuardedAddresses, parseRule } from '../src/egress/policy.ts'
import { NetworkProfiles } from '../src/egress/profiles.ts'
import { type BlockedRequest, EgressProxy } from '../src/egress/proxy.ts'
import { hostResolver, parseHostMap } from '../src/egress/resolver.ts'
import type { EgressPolicy } from '../src/sandboxes/egress-enforcer.ts'
import type { Sandbox } from '../src/sandboxes/sandbox.ts'

/** Every name resolves through this table; a name not in it fails, and each lookup is counted. */
function fakeDns(table: Record<string, string[]>) {
  const asked: string[] = []
  return {
    asked,
    resolve: async (host: string) => {
      asked.push(host)
      const found = table[host]
      if (!found) throw new Error(`ENOTFOUND ${host}`)
      return found
    },
  }
}

const DNS = {
  'registry.npmjs.org': ['104.16.0.1'],
  'api.github.com': ['140.82.112.6'],
  'github.com': ['140.82.112.3'],
  'evil.example': ['203.0.113.66'],
  'internal.example': ['10.1.2.3'],
  localhost: ['127.0.0.1', '::1'],
  'metadata.example': ['169.254.169.254'],
  'v6.example': ['2001:db8::7'],
}

/** This test's own "host": its interface addresses, as the guard would read them. */
const HOST_ADDRESSES = ['127.0.0.1', '::1', '198.51.100.7', '2001:db8:1::7']

async function judge(
  policy: Partial<EgressPolicy>,
  host: string,
  guarded = new GuardedAddresses(() => HOST_ADDRESSES),
  pinned: string[] = [],
) {
  const dns = fakeDns({ ...DNS, 'pinned.test': ['127.0.0.1'], 'own.example': ['198.51.100.7'] })
  const decision = await decide(compilePolicy({ allow: [], deny: [], ...policy }), host, {
    resolve: dns.resolve,
    guarded,
    pinned: (h) => pinned.includes(h),
  })
  return { ...decision, asked: dns.asked }
}

describe('egress policy matcher', () => {
  it('accepts hostnames, *.wildcards, *, IPs and CIDRs, and rejects anything else naming the problem', () => {
    for (const ok of [
      'example.com',
      'EXAMPLE.com.',
      '*.github.com',
      '*',
      '10.0.0.1',
      '10.0.0.0/8',
      '::1',
      'fd00::/8',
      '[::1]',
    ])
      expect(() => parseRule(ok)).not.toThrow()
    for (const bad of [
      'https://x.com',
      'x.com:443',
      'x.com/path',
      'user@x.com',
      'a b',
      '10.0.0.0/33',
      '::/129',
      '*x.com',
      'x.*.com',
      '',
    ])
      expect(() => parseRule(bad), bad).toThrow(/not a|CIDR/)
  })

  it('allows exactly what an allow list names and refuses the rest, without resolving refused names', async () => {
    const policy = { allow: ['registry.npmjs.org'] }
    expect(await judge(policy, 'registry.npmjs.org')).toMatchObject({ allowed: true, address: '104.16.0.1' })
    const other = await judge(policy, 'evil.example')
    expect(other).toMatchObject({ allowed: false })
    expect(other.allowed ? '' : other.reason).toContain('not in the allow list (registry.npmjs.org)')
    expect(other.asked).toEqual([])
    expect(await judge(policy, 'REGISTRY.npmjs.org.')).toMatchObject({ allowed: true })
  })

  it('matches *.domain on subdomains at any depth, not on the domain itself', async () => {
    const policy = { allow: ['*.github.com'] }
    expect(await judge(policy, 'api.github.com')).toMatchObject({ allowed: true })
    expect(await judge(policy, 'github.com')).toMatchObject({ allowed: false })
    expect(await judge({ allow: ['*.example'] }, 'evil.example')).toMatchObject({ allowed: true })
    expect(await judge({ allow: ['*.example'] }, 'notexample')).toMatchObject({ allowed: false })
  })

  it('lets deny win over allow, by name, by wildcard and by the resolved address', async () => {
    expect(await judge({ allow: ['github.com'], deny: ['github.com'] }, 'github.com')).toMatchObject({
      allowed: false,
      reason: 'denied by rule "github.com"',
    })
    expect(await judge({ allow: ['*'], deny: ['*.github.com'] }, 'api.github.com')).toMatchObject({
      allowed: false,
    })
    const byIp = await judge({ allow: ['internal.example'], deny: ['10.0.0.0/8'] }, 'internal.example')
    expect(byIp).toMatchObject({ allowed: false })
    expect(byIp.allowed ? '' : byIp.reason).toContain(
      'internal.example (10.1.2.3) is denied by rule "10.0.0.0/8"',
    )
    // A denied name is refused before any lookup.
    expect((await judge({ deny: ['evil.example'] }, 'evil.example')).asked).toEqual([])
  })

  it('applies IP and CIDR rules to IP literals and to the addresses names resolve to', async () => {
    expect(await judge({ allow: ['140.82.112.0/20'] }, 'github.com')).toMatchObject({ allowed: true })
    expect(await judge({ allow: ['140.82.112.0/20'] }, '140.82.113.9')).toMatchObject({ allowed: true })
    expect(await judge({ allow: ['140.82.112.0/20'] }, '140.82.128.1')).toMatchObject({ allowed: false })
    expect(await judge({ deny: ['203.0.113.66'] }, 'evil.example')).toMatchObject({ allowed: false })
    expect(await judge({ deny: ['203.0.113.0/24'] }, 'github.com')).toMatchObject({ allowed: true })
    expect(await judge({ allow: ['2001:db8::/32'] }, 'v6.example')).toMatchObject({ allowed: true })
    expect(await judge({ allow: ['2001:db8::/32'] }, '[2001:db8::1]')).toMatchObject({ allowed: true })
    expect(await judge({ deny: ['10.0.0.0/8'] }, '::ffff:10.9.9.9')).toMatchObject({ allowed: false })
  })

  it('denies everything with deny ["*"], and allows everything but the guarded ranges with allow ["*"]', async () => {
    expect(await judge({ deny: ['*'] }, 'github.com')).toMatchObject({ allowed: false })
    expect(await judge({ deny: ['*'] }, '140.82.112.3')).toMatchObject({ allowed: false })
    expect(await judge({ allow: ['*'] }, '140.82.112.3')).toMatchObject({ allowed: true })
  })

  it('opens loopback, link-local, private ranges and the host only to an IP or CIDR rule containing them', async () => {
    const guarded = new GuardedAddresses(() => HOST_ADDRESSES)
    for (const [policy, host] of [
      [{ deny: ['evil.example'] }, 'localhost'],
      [{ allow: ['*'] }, '127.0.0.1'],
      [{ deny: ['evil.example'] }, 'metadata.example'],
      [{ deny: ['x.example'] }, '[::1]'],
      [{ allow: ['*'] }, 'internal.example'],
      [{ allow: ['*'] }, '172.16.5.5'],
      [{ allow: ['*'] }, '192.168.1.1'],
      [{ allow: ['*'] }, '100.64.0.1'],
      [{ allow: ['*'] }, '100.127.255.254'],
      [{ allow: ['*'] }, '[fd12::1]'],
      [{ allow: ['*'] }, '[64:ff9b::a00:1]'],
      [{ allow: ['*'] }, '198.51.100.7'],
      [{ allow: ['*'] }, '[2001:db8:1::7]'],
      [{ deny: ['nothing.example'] }, 'own.example'],
      // A name rule is not enough: what a name resolves to is not the tenant's to vouch for.
      [{ allow: ['localhost'] }, 'localhost'],
      [{ allow: ['internal.example'] }, 'internal.example'],
      [{ allow: ['*.example'] }, 'own.example'],
    ] as [Partial<EgressPolicy>, string][]) {
      const d = await judge(policy, host, guarded)
      expect(d.allowed, `${JSON.stringify(policy)} ${host}`).toBe(false)
      expect(d.allowed ? '' : d.reason).toContain('only an IP or CIDR rule containing it can allow')
    }
    expect(await judge({ allow: ['127.0.0.0/8'] }, 'localhost', guarded)).toMatchObject({
      allowed: true,
      address: '127.0.0.1',
    })
    expect(await judge({ allow: ['10.0.0.0/8'] }, 'internal.example', guarded)).toMatchObject({
      allowed: true,
    })
    expect(await judge({ allow: ['198.51.100.7'] }, '198.51.100.7', guarded)).toMatchObject({ allowed: true })
    expect(await judge({ allow: ['100.64.0.0/10'] }, '100.64.0.1', guarded)).toMatchObject({ allowed: true })
    // Public addresses stay open to "*".
    expect(await judge({ allow: ['*'] }, '100.128.0.1', guarded)).toMatchObject({ allowed: true })
    expect(await judge({ allow: ['*'] }, '172.32.0.1', guarded)).toMatchObject({ allowed: true })
  })

  it('trusts a name the operator pinned (ISORUN_EMULATOR_EGRESS_HOSTS) as far as the policy lets it through', async () => {
    expect(await judge({ allow: ['pinned.test'] }, 'pinned.test', undefined, ['pinned.test'])).toMatchObject({
      allowed: true,
      address: '127.0.0.1',
    })
    expect(await judge({ allow: ['pinned.test'] }, 'pinned.test')).toMatchObject({ allowed: false })
    expect(await judge({ deny: ['pinned.test'] }, 'pinned.test', undefined, ['pinned.test'])).toMatchObject({
      allowed: false,
    })
  })

  it('never opens a network sandboxes are on, whatever the rule', async () => {
    const guarded = new GuardedAddresses(() => HOST_ADDRESSES)
    guarded.addSandboxNetwork('172.30.0.0/16')
    guarded.addSandboxNetwork('203.0.113.0/24')
    for (const [policy, host] of [
      [{ allow: ['*'] }, '172.30.0.1'],
      [{ allow: ['172.30.0.5'] }, '172.30.0.5'],
      [{ allow: ['0.0.0.0/0'] }, '172.30.9.9'],
      [{ allow: ['evil.example'] }, 'evil.example'],
    ] as [Partial<EgressPolicy>, string][]) {
      const d = await judge(policy, host, guarded, ['evil.example'])
      expect(d.allowed, `${JSON.stringify(policy)} ${host}`).toBe(false)
      expect(d.allowed ? '' : d.reason).toContain('other sandboxes are never reachable')
    }
  })

  it('rejects a name it cannot resolve (the proxy answers 502, not 403)', async () => {
    await expect(judge({ allow: ['*'] }, 'nowhere.example')).rejects.toThrow(/ENOTFOUND/)
  })
})

describe('network profiles', () => {
  const dir = mkdtempSync(join(tmpdir(), 'isorun-profiles-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('has the built-ins: default (unrestricted), none (deny *), web-dev (an allow list)', () => {
    const list = new NetworkProfiles().list()
    expect(list.map((p) => p.name)).toEqual(['default', 'none', 'web-dev'])
    expect(list[0]).toMatchObject({ allow: [], deny: [] })
    expect(list[1]).toMatchObject({ allow: [], deny: ['*'] })
    expect(list[2]?.allow).toContain('registry.npmjs.org')
  })

  it('turns a create into a policy: none without rules, a profile, explicit rules, or both joined', () => {
    const p = new NetworkProfiles()
    expect(p.policyFor({})).toBeUndefined()
    expect(p.policyFor({ network_profile: 'default' })).toBeUndefined()
    expect(p.policyFor({ network: { allow: [], deny: [] } })).toBeUndefined()
    expect(p.policyFor({ network_profile: 'none' })).toEqual({ profile: 'none', allow: [], deny: ['*'] })
    expect(p.policyFor({ network: { allow: ['A.example'], deny: ['b.example'] } })).toEqual({
      allow: ['a.example'],
      deny: ['b.example'],
    })
    const joined = p.policyFor({ network_profile: 'web-dev', network: { allow: ['api.example'] } })
    expect(joined?.allow).toContain('registry.npmjs.org')
    expect(joined?.allow).toContain('api.example')
    expect(() => p.policyFor({ network_profile: 'nope' })).toThrow(/unknown network profile "nope"/)
  })

  it('merges a profiles file over the built-ins by name; a profile file can restrict the default', () => {
    const file = join(dir, 'profiles.json')
    writeFileSync(
      file,
      JSON.stringify([
        { name: 'web-dev', allow: ['registry.npmjs.org'] },
        { name: 'ci', description: 'CI only', allow: ['*.internal.example', '10.0.0.0/8'], deny: [] },
        { name: 'default', allow: [], deny: ['169.254.169.254'] },
      ]),
    )
    const p = NetworkProfiles.load(file)
    expect(p.list().map((x) => x.name)).toEqual(['default', 'none', 'web-dev', 'ci'])
    expect(p.list().find((x) => x.name === 'web-dev')?.allow).toEqual(['registry.npmjs.org'])
    expect(p.policyFor({})).toEqual({ profile: 'default', allow: [], deny: ['169.254.169.254'] })
  })

  it('refuses an unreadable or invalid profiles file, naming the file and the problem', () => {
    const bad = join(dir, 'bad.json')
    writeFileSync(bad, JSON.stringify([{ name: 'x', allow: ['http://nope'] }]))
    expect(() => NetworkProfiles.load(bad)).toThrow(/bad\.json: profile x: allow\[0\]/)
    writeFileSync(bad, '{not json')
    expect(() => NetworkProfiles.load(bad)).toThrow(/bad\.json/)
    expect(() => NetworkProfiles.load(join(dir, 'missing.json'))).toThrow(/missing\.json/)
  })
})

describe('egress resolver', () => {
  it('pins the names of ISORUN_EMULATOR_EGRESS_HOSTS and never asks DNS for them', async () => {
    const map = parseHostMap(' allowed.test=127.0.0.1, Denied.TEST=::1 ')
    expect(map).toEqual({ 'allowed.test': '127.0.0.1', 'denied.test': '::1' })
    const r = hostResolver(map)
    expect(await r.resolve('ALLOWED.test.')).toEqual(['127.0.0.1'])
    expect(await r.resolve('denied.test')).toEqual(['::1'])
    expect(() => parseHostMap('x=not-an-ip')).toThrow(/name=ip/)
  })
})

describe('egress proxy (in process, on loopback)', () => {
  let target: Server
  let targetPort: number
  let proxy: EgressProxy
  const blocked: BlockedRequest[] = []
  const sandbox = {
    id: 'run0123456789abcdef0123',
    status: 'running',
    egress: { profile: 'test', allow: ['allowed.test', 'down.test'], deny: ['denied.test'] },
  } as unknown as Sandbox
  let known = true

  beforeAll(async () => {
    target = createServer((req, res) => {
      let body = ''
      req.on('data', (c) => {
        body += c
      })
      req.on('end', () =>
        res.end(`target saw ${req.method} ${req.url} host=${req.headers.host} body=${body}`),
      )
    })
    // A WebSocket-style upgrade: the handshake answered, then an echo.
    target.on('upgrade', (req, socket, head) => {
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade}\r\nConnection: Upgrade\r\n\r\n`,
      )
      const echo = (c: Buffer) => socket.end(`target saw ${req.url} then ${c}`)
      if (head.length > 0) echo(head)
      else socket.once('data', echo)
    })
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r))
    targetPort = (target.address() as { port: number }).port
    proxy = new EgressProxy({
      identify: async (address) => (known && address === '127.0.0.1' ? sandbox : undefined),
      resolver: hostResolver({
        'allowed.test': '127.0.0.1',
        'denied.test': '127.0.0.1',
        'down.test': '127.0.0.1',
      }),
      guarded: new GuardedAddresses(),
      onBlocked: (_s, b) => blocked.push(b),
      logger: { info() {}, warn() {}, error() {}, debug() {} },
    })
    await proxy.listen('127.0.0.1', 0)
  })
  afterAll(async () => {
    await proxy.close()
    target.closeAllConnections()
    await new Promise((r) => target.close(r))
  })

  /** One raw exchange with the proxy; resolves with everything it sent back. */
  function raw(text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(proxy.port, '127.0.0.1')
      let got = ''
      socket.on('data', (c) => {
        got += c
        // A tunnel stays open: stop once the tunnelled answer is in.
        if (/target saw/.test(got)) socket.end()
      })
      socket.on('end', () => resolve(got))
      socket.on('error', reject)
      socket.write(text)
    })
  }

  it('forwards an allowed absolute-form request, body and Host included', async () => {
    const res = await raw(
      `POST http://allowed.test:${targetPort}/x?y=1 HTTP/1.1\r\nHost: allowed.test:${targetPort}\r\nContent-Length: 2\r\nProxy-Connection: keep-alive\r\nConnection: close\r\n\r\nhi`,
    )
    expect(res).toMatch(/^HTTP\/1\.1 200/)
    expect(res).toContain(`target saw POST /x?y=1 host=allowed.test:${targetPort} body=hi`)
  })

  it('answers a denied request with 403, a body saying why, and a network.blocked report', async () => {
    const res = await raw(
      `GET http://denied.test:${targetPort}/ HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n`,
    )
    expect(res).toMatch(/^HTTP\/1\.1 403/)
    expect(res).toContain(
      'blocked by the egress policy of sandbox run0123456789abcdef0123 (network profile test)',
    )
    expect(res).toContain('denied by rule "denied.test"')
    expect(blocked.at(-1)).toEqual({
      host: 'denied.test',
      port: targetPort,
      method: 'GET',
      reason: 'denied by rule "denied.test"',
    })
  })

  it('tunnels an allowed CONNECT and refuses a denied one with 403', async () => {
    const ok = await raw(
      `CONNECT allowed.test:${targetPort} HTTP/1.1\r\nHost: allowed.test:${targetPort}\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n`,
    )
    expect(ok).toMatch(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/)
    expect(ok).toContain('target saw GET /tunnelled')
    const no = await raw(`CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n`)
    expect(no).toMatch(/^HTTP\/1\.1 403/)
    expect(blocked.at(-1)).toMatchObject({ host: 'denied.test', port: 443, method: 'CONNECT' })
    const other = await raw(`CONNECT elsewhere.test:443 HTTP/1.1\r\n\r\n`)
    expect(other).toContain('not in the allow list')
  })

  it('passes an allowed upgrade (WebSocket over plain HTTP) through as origin-form, and judges it first', async () => {
    const up = await raw(
      `GET http://allowed.test:${targetPort}/ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nping`,
    )
    expect(up).toMatch(/^HTTP\/1\.1 101/)
    expect(up).toContain('target saw /ws then ping')
    const no = await raw(
      `GET http://denied.test:${targetPort}/ws HTTP/1.1\r\nHost: denied.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
    )
    expect(no).toMatch(/^HTTP\/1\.1 403/)
  })

  it('answers an allowed destination that does not answer with 502, and a non-proxy request with 400', async () => {
    const closed = await new Promise<number>((r) => {
      const s = createServer()
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port
        s.close(() => r(p))
      })
    })
    const down = await raw(
      `GET http://down.test:${closed}/ HTTP/1.1\r\nHost: down.test\r\nConnection: close\r\n\r\n`,
    )
    expect(down).toMatch(/^HTTP\/1\.1 502/)
    expect(down).toContain('connection refused')
    const plain = await raw('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    expect(plain).toMatch(/^HTTP\/1\.1 400/)
  })

  it('closeConnections resolves only once the guest has closed its side of each connection (findings 2)', async () => {
    // A guest that closes its side only 300 ms after the proxy closed its own (a busy machine): CRIU
    // refuses a checkpoint while the guest still holds the connection.
    const guest = connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true })
    guest.on('error', () => {})
    guest.on('end', () => setTimeout(() => guest.end(), 300))
    let got = ''
    await new Promise<void>((resolve) => {
      guest.on('data', (c) => {
        got += c
        if (got.includes('\r\n\r\n')) resolve()
      })
      guest.write(`CONNECT allowed.test:${targetPort} HTTP/1.1\r\nHost: allowed.test:${targetPort}\r\n\r\n`)
    })
    expect(got).toMatch(/^HTTP\/1\.1 200 Connection Established/)
    const started = performance.now()
    await proxy.closeConnections(sandbox.id)
    expect(guest.writableEnded).toBe(true)
    expect(performance.now() - started).toBeGreaterThan(250)
    guest.destroy()
  })

  it('refuses a source that is not a sandbox with a policy', async () => {
    known = false
    try {
      const res = await raw(
        `GET http://allowed.test:${targetPort}/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
      )
      expect(res).toMatch(/^HTTP\/1\.1 403/)
      expect(res).toContain('127.0.0.1 is not a running sandbox with an egress policy')
    } finally {
      known = true
    }
  })
})
