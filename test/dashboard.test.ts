import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun } from 'isorun'
import { type BrowserContext, chromium, type Locator, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEmulator } from '../src/testing.ts'
import { engineEnv } from './support/engine.ts'
import { adminUrl, apiUrl, describeWithDocker, newApiKey, newClient, sandboxTracker } from './support/sdk.ts'

/**
 * The dashboard at /_emulator/ui, in a real (headless) Chromium: the page is driven as a person would,
 * and every effect is checked through the real SDK too.
 */
const CHROMIUM = process.env.ISORUN_CHROMIUM || '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
]
const SCREENSHOT = '/tmp/dashboard.png'

const chromiumSkipReason = existsSync(CHROMIUM)
  ? ''
  : `no Chromium at ${CHROMIUM} (scripts/provision.sh installs Debian's chromium; or set ISORUN_CHROMIUM)`

/** Docker and Chromium both needed; without Chromium, skip with the reason, except in CI (fail). */
function describeWithBrowser(name: string, fn: () => void) {
  if (!chromiumSkipReason) return describeWithDocker(name, fn)
  if (process.env.ISORUN_REQUIRE_DOCKER === '1') {
    return describe(name, () => {
      it('needs Chromium', () => {
        throw new Error(chromiumSkipReason)
      })
    })
  }
  console.warn(`\n[isorun-emulator tests] SKIPPING the dashboard test: ${chromiumSkipReason}\n`)
  return describe.skip(`${name} [skipped: ${chromiumSkipReason}]`, fn)
}

/**
 * The browser uses the IPv4 loopback (the emulator listens on both); the SDK keeps the fast [::1] URL.
 * The dashboard is on its own origin (its own port); url(port) pages are on the API's.
 */
const adminBase = adminUrl.replace('[::1]', '127.0.0.1')
const apiBase = apiUrl.replace('[::1]', '127.0.0.1')
const KEY_STORAGE = 'isorun-emulator.dashboard.api-key'
const tenantOf = (key: string) => createHash('sha256').update(key).digest('hex')

describeWithBrowser('the dashboard (/_emulator/ui) in a real browser', () => {
  const key = newApiKey()
  const isorun = newClient(key)
  const track = sandboxTracker()
  let userDataDir = ''
  let context: BrowserContext
  let page: Page
  const problems: string[] = []
  const snapshotIds: string[] = []

  beforeAll(async () => {
    // A fresh profile every run (made here, not at collection, so a skipped run leaves nothing behind).
    userDataDir = mkdtempSync(join(tmpdir(), 'isorun-dashboard-chromium-'))
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 900 },
    })
    page = context.pages()[0] ?? (await context.newPage())
    // A CSP violation, a script error or a failed request shows up here.
    page.on('console', (m) => {
      // Chromium fails requests in flight with ERR_NETWORK_CHANGED when the host's network interfaces
      // change, which Docker does for every container any test starts or removes: the browser's
      // reaction to its environment, not the page's. The page must carry on (its next poll is checked).
      if (m.type() === 'error' && /net::ERR_NETWORK_CHANGED/.test(m.text())) return
      if (m.type() === 'error') problems.push(`console: ${m.text()}`)
    })
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
  })

  afterAll(async () => {
    await context?.close()
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true })
    for (const id of snapshotIds) await isorun.deleteSnapshot(id).catch(() => undefined)
    // The client stays open: the tracker's afterAll (run after this one) destroys through it.
  })

  const row = (id: string): Locator => page.locator(`#sandboxes tbody[data-id="${id}"]`)
  const waitStatus = (id: string, status: string) =>
    page.locator(`#sandboxes tbody[data-id="${id}"][data-status="${status}"]`).waitFor({ timeout: 30_000 })

  it('is one self-contained page with a strict Content-Security-Policy', async () => {
    const res = await fetch(`${adminBase}/_emulator/ui`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8')
    const csp = res.headers.get('content-security-policy') ?? ''
    expect(csp).toContain("default-src 'none'")
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/)
    expect(csp).toContain("connect-src 'self'")
    const html = await res.text()
    // Nothing is loaded from anywhere else, and nothing is rendered as HTML.
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\/(?!www\.w3\.org)/)
    expect(html).not.toContain('innerHTML')
    expect((await fetch(`${adminBase}/_emulator/ui/`)).status).toBe(200)
  })

  it('lists the key’s sandboxes; hibernate, resume, snapshot, destroy and audit logs work from the page', async () => {
    const a = track(await isorun.create({ image: 'busybox:latest', memMiB: 256 }))
    const b = track(await isorun.create({ image: 'busybox:latest' }))
    // Audit data the page must show as text, not markup.
    await a.exec('echo "<b id=injected>bold</b><img src=x onerror=window.pwned=1>"')
    const other = newClient() // another key: its sandboxes must not appear
    const foreign = await other.create({ image: 'busybox:latest' })

    await page.goto(`${adminBase}/_emulator/ui`)
    await page.fill('#key', key)
    await page.click('#use-key')
    await row(a.id).waitFor({ timeout: 10_000 })
    await row(b.id).waitFor({ timeout: 10_000 })
    expect(await row(foreign.id).count()).toBe(0)
    await foreign.destroy()
    other.close()
    expect(await row(a.id).locator('.status').textContent()).toBe('running')
    expect(await row(a.id).locator('td').nth(2).textContent()).toBe('busybox:latest')
    expect(await row(a.id).locator('td').nth(3).textContent()).toBe('1 / 256 MiB')
    expect(await row(b.id).locator('td').nth(3).textContent()).toBe('1 / 1 GiB')
    expect(await page.locator('#sandbox-count').textContent()).toBe('2')

    // The key is kept in this tab's sessionStorage (never localStorage): a reload shows the same
    // sandboxes without typing it again.
    expect(await page.evaluate((k) => sessionStorage.getItem(k), KEY_STORAGE)).toBe(key)
    expect(await page.evaluate(() => localStorage.length)).toBe(0)
    await page.reload()
    await row(a.id).waitFor({ timeout: 10_000 })
    expect(await page.inputValue('#key')).toBe(key)

    // Live: a sandbox made through the SDK appears within a poll or two.
    const c = track(await isorun.create({ image: 'busybox:latest' }))
    await row(c.id).waitFor({ timeout: 5_000 })

    // Hibernate, then resume, from the page.
    await row(a.id).locator('button.hibernate').click()
    await waitStatus(a.id, 'hibernated')
    expect(await row(a.id).locator('.status').textContent()).toBe('hibernated')
    expect((await a.info()).status).toBe('hibernated')
    expect(await row(a.id).locator('button.snapshot').isDisabled()).toBe(true)
    expect(await row(a.id).locator('input.port').isDisabled()).toBe(true)
    await row(a.id).locator('button.resume').click()
    await waitStatus(a.id, 'running')
    expect((await a.info()).status).toBe('running')
    expect((await a.exec('echo back')).stdout).toBe('back\n')

    // Snapshot: it appears in the snapshots list, as the SDK sees it too.
    await row(a.id).locator('button.snapshot').click()
    const snapRow = page.locator(`#snapshots tr[data-run="${a.id}"]`)
    await snapRow.waitFor({ timeout: 30_000 })
    const snapId = (await snapRow.getAttribute('data-id')) ?? ''
    snapshotIds.push(snapId)
    expect((await isorun.listSnapshots()).map((s) => s.id)).toContain(snapId)

    // url(port): the link the builder makes is the SDK's own url(port), on the API's origin.
    await row(a.id).locator('input.port').fill('8080')
    expect(await row(a.id).locator('a.proxy-link').getAttribute('href')).toBe(
      `${apiBase}/v1/runs/${a.id}/proxy/8080/`,
    )
    expect(a.url(8080, '/').replace('[::1]', '127.0.0.1')).toBe(`${apiBase}/v1/runs/${a.id}/proxy/8080/`)

    // The audit log, expanded: every action so far, API data shown as text.
    await row(a.id).locator('button.audit-toggle').click()
    const auditEvents = row(a.id).locator('tr.audit-row td.event')
    await expect
      .poll(async () => auditEvents.allTextContents(), { timeout: 10_000 })
      .toEqual(
        expect.arrayContaining([
          'sandbox.created',
          'exec.start',
          'exec.end',
          'sandbox.hibernated',
          'sandbox.resumed',
          'snapshot.created',
        ]),
      )
    const auditData = (await row(a.id).locator('tr.audit-row td.data').allTextContents()).join('\n')
    expect(auditData).toContain('<b id=injected>bold</b>')
    expect(await page.locator('#injected').count()).toBe(0)
    expect(await page.locator('img[src=x]').count()).toBe(0)
    expect(await page.evaluate(() => (globalThis as { pwned?: number }).pwned)).toBeUndefined()

    // Destroy (after the confirmation dialog): gone from the list, into the history.
    page.once('dialog', (d) => void d.accept())
    await row(b.id).locator('button.destroy').click()
    await page.locator(`#history tbody[data-id="${b.id}"]`).waitFor({ timeout: 30_000 })
    await row(b.id).waitFor({ state: 'detached', timeout: 5_000 })
    expect(await isorun.get(b.id)).toBeNull()
    expect((await isorun.history()).map((h) => h.id)).toContain(b.id)
    // A dismissed confirmation destroys nothing.
    page.once('dialog', (d) => void d.dismiss())
    await row(c.id).locator('button.destroy').click()
    await page.waitForTimeout(1_500)
    expect((await c.info()).status).toBe('running')

    // The audit log outlives the sandbox: open it from the history row.
    const historyRow = page.locator(`#history tbody[data-id="${b.id}"]`)
    await historyRow.locator('button.audit-toggle').click()
    await expect
      .poll(async () => historyRow.locator('tr.audit-row td.event').allTextContents(), { timeout: 10_000 })
      .toContain('sandbox.destroyed')

    // The usage panel agrees with the SDK's count.
    await expect.poll(async () => page.locator('#u-history').textContent(), { timeout: 5_000 }).toBe('1')

    await page.waitForTimeout(1_200) // one more poll, so the screenshot shows a settled page
    await page.mouse.wheel(0, -100_000)
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    expect(problems).toEqual([])

    // Forget: the key leaves the tab; on loopback the page goes back to the tenants it lists.
    await page.click('#forget-key')
    expect(await page.evaluate((k) => sessionStorage.getItem(k), KEY_STORAGE)).toBeNull()
    expect(await page.inputValue('#key')).toBe('')
    await expect.poll(async () => page.locator('#tenant').isVisible(), { timeout: 5_000 }).toBe(true)
  }, 120_000)

  it('shows what the API answers: a refused action, a refused key', async () => {
    const s = track(await isorun.create({ image: 'busybox:latest' }))
    await page.fill('#key', key)
    await page.click('#use-key')
    await row(s.id).waitFor({ timeout: 10_000 })
    const errorsBefore = problems.length

    // An action the API refuses: its code and message in a toast (as text), the sandbox unchanged.
    await page.route(`**/v1/runs/${s.id}/hibernate`, (route) =>
      route.fulfill({
        status: 409,
        contentType: 'application/json',
        body: JSON.stringify({ error: '<i id=toast-markup>busy</i>', code: 'conflict' }),
      }),
    )
    await row(s.id).locator('button.hibernate').click()
    const toast = page.locator('#toast div.error')
    await toast.first().waitFor({ timeout: 5_000 })
    expect(await toast.first().textContent()).toBe(
      `hibernate ${s.id} failed: conflict: <i id=toast-markup>busy</i>`,
    )
    expect(await page.locator('#toast-markup').count()).toBe(0)
    await page.unroute(`**/v1/runs/${s.id}/hibernate`)
    expect((await s.info()).status).toBe('running')

    // A refused key: the page says so instead of showing stale data as live.
    await page.route('**/v1/runs', (route) =>
      route.fulfill({
        status: 401,
        contentType: 'application/json',
        body: JSON.stringify({ error: 'invalid API key', code: 'unauthorized' }),
      }),
    )
    await expect
      .poll(async () => page.locator('#conn').textContent(), { timeout: 5_000 })
      .toBe('this API key is refused: invalid API key')
    await page.unroute('**/v1/runs')
    await expect.poll(async () => page.locator('#conn').textContent(), { timeout: 5_000 }).toMatch(/^live/)
    // The only console errors are the browser's own reports of the two refused requests.
    expect(problems.slice(errorsBefore).every((p) => /status of (409|401)/.test(p))).toBe(true)
  })
  it('keeps its key from pages a guest serves through url(port): no key, no runs, no journal, no reset', async () => {
    // The dashboard holds the key, as a developer's would.
    await page.goto(`${adminBase}/_emulator/ui`)
    await page.fill('#key', key)
    await page.click('#use-key')
    const target = track(await isorun.create({ image: 'busybox:latest' }))
    await row(target.id).waitFor({ timeout: 10_000 })

    // A hostile page, served by a guest through url(port) and opened in the same browser.
    const guest = track(await newClient().create({ image: 'busybox:latest' }))
    const adminPort = new URL(adminUrl).port
    await guest.writeFile('/w/index.html', attackPage(adminPort, tenantOf(key)))
    await guest.exec('(httpd -f -p 8080 -h /w >/dev/null 2>&1 &)')
    const hostile = await context.newPage()
    try {
      const pageUrl = guest.url(8080, '/index.html').replace('[::1]', '127.0.0.1')
      await expect.poll(async () => (await hostile.goto(pageUrl))?.status(), { timeout: 10_000 }).toBe(200)
      await hostile.waitForFunction(() => (globalThis as { results?: unknown }).results, undefined, {
        timeout: 20_000,
      })
      const results = (await hostile.evaluate(() => (globalThis as { results?: unknown }).results)) as Record<
        string,
        string
      >
      // Its own origin's storage holds no key (the dashboard's origin is another one).
      expect(results.storage).not.toContain(key)
      // Same origin: the control plane is not there.
      expect(results.journalHere).toMatch(/^404:/)
      expect(results.tenantsHere).toMatch(/^404:/)
      expect(results.resetHere).toMatch(/^404:/)
      // Root DevTools discovery would name a sandbox's run id: not to a page.
      expect(results.devtoolsHere).toMatch(/^403:/)
      // The dashboard's origin: nothing readable, no preflight passes, a no-cors POST changes nothing.
      expect(results.journalThere).toMatch(/^blocked:/)
      expect(results.tenantsThere).toMatch(/^blocked:/)
      expect(results.runsThere).toMatch(/^blocked:/)
      expect(results.resetThere).toMatch(/^blocked:/)
      expect(results.resetNoCors).toBe('opaque')
      expect(results.framed).toMatch(/^blocked:/)
      expect(JSON.stringify(results)).not.toContain(target.id)
    } finally {
      await hostile.close()
    }
    expect((await target.info()).status).toBe('running')
    expect((await isorun.list()).map((s) => s.id)).toContain(target.id)
  }, 90_000)

  it('on loopback needs no key: it lists the tenants, with idle time left, dates and the network policy', async () => {
    const other = newApiKey()
    const client = newClient(other)
    const timed = track(await client.create({ image: 'busybox:latest', timeoutSec: 600 }))
    const fenced = track(
      await client.create({ image: 'busybox:latest', network: { allow: ['allowed.test'] } }),
    )
    const fresh = await context.newPage()
    try {
      // A new tab: nothing in its sessionStorage, no key typed.
      await fresh.goto(`${adminBase}/_emulator/ui`)
      expect(await fresh.getAttribute('#key', 'placeholder')).toBe('paste a key')
      await fresh
        .locator(`#tenant option[value="${tenantOf(other)}"]`)
        .waitFor({ state: 'attached', timeout: 10_000 })
      await fresh.selectOption('#tenant', tenantOf(other))
      const at = (id: string) => fresh.locator(`#sandboxes tbody[data-id="${id}"]`)
      await at(timed.id).waitFor({ timeout: 10_000 })
      await at(fenced.id).waitFor({ timeout: 10_000 })
      expect(await fresh.inputValue('#key')).toBe('')
      expect(await at(timed.id).locator('td.created').textContent()).toMatch(
        /^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d$/,
      )
      await expect
        .poll(async () => at(timed.id).locator('td.idle').textContent(), { timeout: 5_000 })
        .toMatch(/^\d+m \d\ds left of 10m 00s$/)
      expect(await at(timed.id).locator('td.network').textContent()).toBe('unrestricted')
      expect(await at(fenced.id).locator('td.network').textContent()).toBe('allow allowed.test')
      await timed.hibernate()
      await expect
        .poll(async () => at(timed.id).locator('td.idle').textContent(), { timeout: 10_000 })
        .toBe('10m 00s (paused while hibernated)')
      expect(await fresh.evaluate(() => localStorage.length + sessionStorage.length)).toBe(1)
    } finally {
      // The client stays open: the tracker destroys through it.
      await fresh.close()
    }
  }, 90_000)

  it('with a single tenant, shows it at once: the sample key a first run uses', async () => {
    const emu = await startEmulator({ env: engineEnv() })
    const client = new Isorun({ apiUrl: emu.apiUrl, apiKey: 'isorun_local_dev' })
    const fresh = await context.newPage()
    try {
      const s = await client.create({ image: 'busybox:latest' })
      await fresh.goto(`${emu.adminUrl.replace('[::1]', '127.0.0.1')}/_emulator/ui`)
      await fresh.locator(`#sandboxes tbody[data-id="${s.id}"]`).waitFor({ timeout: 10_000 })
      expect(await fresh.locator('#tenant option:checked').textContent()).toMatch(/^isorun_local_dev · 1 /)
      expect(await fresh.locator('#sandbox-count').textContent()).toBe('1')
      expect(await fresh.locator('#conn').textContent()).toMatch(/^live · isorun_local_dev · /)
    } finally {
      await fresh.close()
      client.close()
      await emu.stop()
    }
  }, 90_000)
})

/**
 * What a hostile guest serves: it tries to take the dashboard's key, list that key's runs (as its tenant),
 * read the request journal and reset the emulator, on its own origin and on the dashboard's; it reports
 * what each attempt got in `window.results`.
 */
function attackPage(adminPort: string, tenant: string): string {
  return `<!doctype html><html><body><iframe id="f"></iframe><script>
(async () => {
  const admin = location.protocol + '//' + location.hostname + ':${adminPort}'
  const attempt = async (url, init) => {
    try {
      const res = await fetch(url, init)
      if (res.type === 'opaque') return 'opaque'
      return res.status + ':' + (await res.text()).slice(0, 300)
    } catch (e) {
      return 'blocked:' + e.name
    }
  }
  const json = { 'content-type': 'application/json' }
  const r = {}
  r.storage = JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookie: document.cookie })
  r.journalHere = await attempt('/_emulator/requests')
  r.tenantsHere = await attempt('/_emulator/tenants')
  r.resetHere = await attempt('/_emulator/reset', { method: 'POST', headers: json, body: '{}' })
  r.devtoolsHere = await attempt('/json/version')
  r.journalThere = await attempt(admin + '/_emulator/requests')
  r.tenantsThere = await attempt(admin + '/_emulator/tenants')
  r.runsThere = await attempt(admin + '/v1/runs', { headers: { 'x-isorun-emulator-tenant': '${tenant}' } })
  r.resetThere = await attempt(admin + '/_emulator/reset', { method: 'POST', headers: json, body: '{}' })
  r.resetNoCors = await attempt(admin + '/_emulator/reset', { method: 'POST', mode: 'no-cors', body: '{}' })
  r.framed = await new Promise((resolve) => {
    const f = document.getElementById('f')
    f.onload = () => {
      try {
        resolve('read:' + JSON.stringify({ ...f.contentWindow.sessionStorage }))
      } catch (e) {
        resolve('blocked:' + e.name)
      }
    }
    f.src = admin + '/_emulator/ui'
  })
  window.results = r
})()
</script></body></html>`
}
