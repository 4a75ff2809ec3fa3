import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { isLoopbackHost, isWildcardHost, loadConfig, SETTINGS, type Setting } from '../src/config.ts'
import { settingsMarkdown, withSettingsTable } from '../src/config-docs.ts'
import { startServer } from '../src/server.ts'
import { FakeEngine } from './support/fake-engine.ts'

const root = join(import.meta.dirname, '..')
const settings = Object.values(SETTINGS) as Setting[]

describe('the settings table', () => {
  it('is what docs/configuration.md shows (npm run docs:config rewrites it)', () => {
    const docs = readFileSync(join(root, 'docs', 'configuration.md'), 'utf8')
    expect(docs).toContain(settingsMarkdown())
    expect(withSettingsTable(docs)).toBe(docs)
    for (const s of settings) expect(docs).toContain(`\`${s.env}\``)
  })

  it('gives every setting its documented default', () => {
    const config = loadConfig({ HOME: '/home/someone' })
    expect(config).toMatchObject({
      host: 'localhost',
      port: 8731,
      dataDir: '/home/someone/.local/share/isorun-emulator',
      apiKeys: [],
      logLevel: 'info',
      pricing: { vcpuSecondCents: 0.0014, gibSecondCents: 0.00045 },
      execOutputLimit: 16 * 1024 * 1024,
      uploadLimit: 1024 * 1024 * 1024,
      pullTimeoutMs: 60_000,
      pull: { mode: 'missing', registries: ['docker.io'] },
      network: undefined,
      networkProfilesFile: undefined,
      egressPort: 3128,
      egressHosts: {},
      poolSize: 2,
      clock: 'real',
      adminToken: undefined,
      seedFile: undefined,
      initDir: undefined,
      auditKey: undefined,
      cdpDiscovery: { enabled: true, port: 9222 },
      fastProxy: true,
      criu: 'auto',
      strict: false,
    })
    expect(loadConfig({ XDG_DATA_HOME: '/xdg', HOME: '/h' }).dataDir).toBe('/xdg/isorun-emulator')
  })

  it('parses each variable, treats an empty one as unset, and names the one it refuses', () => {
    const config = loadConfig({
      ISORUN_EMULATOR_PORT: '0',
      ISORUN_EMULATOR_API_KEYS: ' a, ,b ',
      ISORUN_EMULATOR_EGRESS_HOSTS: 'Example.com=10.0.0.1',
      ISORUN_EMULATOR_FAST_PROXY: 'false',
      ISORUN_EMULATOR_STRICT: 'true',
      ISORUN_EMULATOR_PRICE_GIB_SECOND_CENTS: '1.5',
      ISORUN_EMULATOR_HOST: '',
    })
    expect(config).toMatchObject({
      port: 0,
      apiKeys: ['a', 'b'],
      egressHosts: { 'example.com': '10.0.0.1' },
      fastProxy: false,
      strict: true,
      host: 'localhost',
    })
    expect(config.pricing.gibSecondCents).toBe(1.5)
    expect(() => loadConfig({ ISORUN_EMULATOR_PORT: '65536' })).toThrow(
      /^invalid configuration: ISORUN_EMULATOR_PORT: /,
    )
    expect(() => loadConfig({ ISORUN_EMULATOR_EGRESS_HOSTS: 'nope' })).toThrow(
      'invalid configuration: ISORUN_EMULATOR_EGRESS_HOSTS: "nope" is not name=ip',
    )
    expect(() => loadConfig({ ISORUN_EMULATOR_AUDIT_KEY: 'short' })).toThrow(/AUDIT_KEY/)
  })

  it('lists every setting in --help, each flag beside its variable', () => {
    const help = execFileSync(process.execPath, [join(root, 'src', 'cli.ts'), '--help'], { encoding: 'utf8' })
    for (const s of settings) {
      expect(help).toContain(s.env)
      if (s.flag)
        expect(help).toMatch(new RegExp(`--${s.flag.name} ${s.flag.arg} [^\\n]*(\\n {27}[^\\n]*)*${s.env}`))
    }
  })
})

describe('loopback', () => {
  it('is localhost, ::1 and 127/8; the wildcards listen on every interface and are not', () => {
    for (const host of ['localhost', '::1', '[::1]', '127.0.0.1', '127.1.2.3', 'LOCALHOST']) {
      expect(isLoopbackHost(host), host).toBe(true)
    }
    for (const host of ['0.0.0.0', '::', '[::]', '192.168.1.2', 'example.com', '::ffff:10.0.0.1']) {
      expect(isLoopbackHost(host), host).toBe(false)
    }
    expect(['0.0.0.0', '::', '[::]', '0:0:0:0:0:0:0:0'].every(isWildcardHost)).toBe(true)
    expect(['::1', '127.0.0.1', '0', 'localhost'].some(isWildcardHost)).toBe(false)
    const beyond = { ISORUN_EMULATOR_HOST: '::', ISORUN_EMULATOR_ADMIN_TOKEN: 'admin-token' }
    expect(loadConfig(beyond).cdpDiscovery.enabled).toBe(false)
  })

  // The printed URL (ISORUN_API_URL) must reach the server from this machine, whatever it listens on.
  it.each(['localhost', '127.0.0.1', '::1', '0.0.0.0', '::'])(
    'the URL printed for --host %s answers',
    async (host) => {
      const dataDir = mkdtempSync(join(tmpdir(), 'isorun-config-test-'))
      const server = await startServer(
        loadConfig({
          ISORUN_EMULATOR_HOST: host,
          ISORUN_EMULATOR_PORT: '0',
          ISORUN_EMULATOR_DATA_DIR: dataDir,
          ISORUN_EMULATOR_LOG_LEVEL: 'silent',
          ISORUN_EMULATOR_POOL: '0',
          // Listening beyond loopback needs one (test/control-plane.test.ts).
          ISORUN_EMULATOR_ADMIN_TOKEN: 'admin-token',
        }),
        { engine: new FakeEngine() },
      )
      try {
        const res = await fetch(`${server.apiUrl}/_emulator/health`, { signal: AbortSignal.timeout(5000) })
        expect(res.status).toBe(200)
        // The SDK's HTTP/3 attempt stalls on an IPv4 URL; [::1] is given wherever the server is on it.
        if (host !== '127.0.0.1') expect(server.apiUrl).toMatch(/^http:\/\/\[::1\]:\d+$/)
      } finally {
        await server.close()
        rmSync(dataDir, { recursive: true, force: true })
      }
    },
  )
})
