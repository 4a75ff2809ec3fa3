import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun, type Sandbox } from 'isorun'
import legacyPuppeteer from 'puppeteer-core-legacy'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.ts'
import { type StartedEmulator, startEmulator } from '../src/testing.ts'
import { engineEnv } from './support/engine.ts'
import { startGuest } from './support/guest.ts'
import { buildInjectApp } from './support/inject-app.ts'
import { describeWithDocker } from './support/sdk.ts'

const BROWSER_ID = 'b1c2d3e4-0000-4000-8000-000000000001'

interface ErrorBody {
  error: string
  code: string
  details?: Record<string, unknown>
}

// An emulator of its own: root discovery picks among ALL running sandboxes, so sandboxes other test
// files run at the same time (on the shared emulator) must not be candidates.
describeWithDocker(
  "DevTools discovery at the emulator's root, for clients that drop url(port)'s prefix",
  () => {
    let emu: StartedEmulator
    let isorun: Isorun
    let publicHost: string

    beforeAll(async () => {
      emu = await startEmulator({ env: engineEnv() })
      isorun = new Isorun({ apiUrl: emu.apiUrl, apiKey: emu.apiKey })
      publicHost = new URL(emu.apiUrl).host
    })
    afterAll(async () => emu?.stop())

    const browserSandbox = async (): Promise<Sandbox> => {
      const s = await isorun.create({ image: 'node:22-slim' })
      await startGuest(s, 'cdp.mjs', 9222, '/json/version')
      return s
    }
    const rootGet = (path: string) => fetch(`${emu.apiUrl}${path}`)

    it('answers 404 naming the port while no running sandbox serves it', async () => {
      const idle = await isorun.create({ image: 'node:22-slim' })
      try {
        const res = await rootGet('/json/version')
        expect(res.status).toBe(404)
        const body = (await res.json()) as ErrorBody
        expect(body.code).toBe('not_found')
        expect(body.error).toContain('no running sandbox has a server on port 9222')
        expect(body.details).toEqual({ port: 9222, sandboxes_running: 1 })
      } finally {
        await idle.destroy()
      }
    })

    it('lets puppeteer-core before 25.13 connect with browserURL: sandbox.url(9222)', async () => {
      const s = await browserSandbox()
      try {
        // This puppeteer asks http://<emulator>/json/version, without the /v1/runs/<id>/proxy/9222 prefix.
        const browser = await legacyPuppeteer.connect({ browserURL: s.url(9222), protocolTimeout: 10_000 })
        try {
          expect(await browser.version()).toBe('FakeChrome/1.0')
          expect(browser.wsEndpoint()).toBe(
            `ws://${publicHost}/v1/runs/${s.id}/proxy/9222/devtools/browser/${BROWSER_ID}`,
          )
        } finally {
          await browser.disconnect()
        }

        // The other discovery answers are rewritten the same way, and /json/new (a PUT) too.
        const list = (await (await rootGet('/json/list')).json()) as Array<Record<string, string>>
        expect(list[0]?.webSocketDebuggerUrl).toBe(
          `ws://${publicHost}/v1/runs/${s.id}/proxy/9222/devtools/page/${list[0]?.id}`,
        )
        const tab = (await (
          await fetch(`${emu.apiUrl}/json/new?about:blank`, { method: 'PUT' })
        ).json()) as Record<string, string>
        expect(tab.webSocketDebuggerUrl).toBe(
          `ws://${publicHost}/v1/runs/${s.id}/proxy/9222/devtools/page/${tab.id}`,
        )
      } finally {
        await s.destroy()
      }
    })

    it('refuses to guess between two sandboxes serving the port, and finds the one left', async () => {
      const a = await browserSandbox()
      const b = await browserSandbox()
      try {
        const res = await rootGet('/json/version')
        expect(res.status).toBe(409)
        const body = (await res.json()) as ErrorBody
        expect(body.code).toBe('conflict')
        expect(body.error).toContain('browserWSEndpoint')
        expect(body.details).toEqual({ port: 9222, sandboxes_serving: 2 })
        // The refusal names no run id: those are the sandboxes' credentials.
        expect(JSON.stringify(body)).not.toContain(a.id)
        expect(JSON.stringify(body)).not.toContain(b.id)

        await a.destroy()
        const version = (await (await rootGet('/json/version')).json()) as Record<string, string>
        expect(version.webSocketDebuggerUrl).toBe(
          `ws://${publicHost}/v1/runs/${b.id}/proxy/9222/devtools/browser/${BROWSER_ID}`,
        )
      } finally {
        await Promise.all([a.destroy().catch(() => undefined), b.destroy()])
      }
    })

    it('leaves a hibernated browser out (its ports cannot be reached)', async () => {
      const s = await browserSandbox()
      try {
        await s.hibernate()
        expect((await rootGet('/json/version')).status).toBe(404)
      } finally {
        await s.destroy()
      }
    })
  },
)

describe('root DevTools discovery settings', () => {
  it('is on for a loopback emulator by default, off beyond loopback, and as set when set', () => {
    // Beyond loopback needs an admin token (test/control-plane.test.ts).
    const on = (env: Record<string, string>) =>
      loadConfig({ ISORUN_EMULATOR_ADMIN_TOKEN: 'admin-token', ...env }).cdpDiscovery.enabled
    expect(on({})).toBe(true)
    expect(on({ ISORUN_EMULATOR_HOST: '127.0.0.1' })).toBe(true)
    expect(on({ ISORUN_EMULATOR_HOST: '::1' })).toBe(true)
    expect(on({ ISORUN_EMULATOR_HOST: '0.0.0.0' })).toBe(false)
    expect(on({ ISORUN_EMULATOR_HOST: '0.0.0.0', ISORUN_EMULATOR_CDP_DISCOVERY: 'on' })).toBe(true)
    expect(on({ ISORUN_EMULATOR_CDP_DISCOVERY: 'off' })).toBe(false)
    expect(loadConfig({ ISORUN_EMULATOR_CDP_PORT: '9333' }).cdpDiscovery.port).toBe(9333)
    expect(() => loadConfig({ ISORUN_EMULATOR_CDP_DISCOVERY: 'yes' })).toThrow(/CDP_DISCOVERY/)
  })

  it('answers 404 saying how to turn it on when it is off, and reports itself in capabilities', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'isorun-cdp-test-'))
    const { app } = buildInjectApp(dataDir, { env: { ISORUN_EMULATOR_CDP_DISCOVERY: 'off' } })
    try {
      const res = await app.inject({ method: 'GET', url: '/json/version' })
      expect(res.statusCode).toBe(404)
      expect(res.json().code).toBe('route_not_found')
      expect(res.json().error).toContain('ISORUN_EMULATOR_CDP_DISCOVERY=on')
      const caps = await app.inject({ method: 'GET', url: '/_emulator/capabilities' })
      expect(caps.json().proxy_fast_lane).toBe(true)
      expect(caps.json().cdp_root_discovery).toEqual({
        enabled: false,
        port: 9222,
        why: 'ISORUN_EMULATOR_CDP_DISCOVERY=off',
      })
    } finally {
      await app.close()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
