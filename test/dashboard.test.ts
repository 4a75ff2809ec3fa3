import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium, type Locator, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { apiUrl, describeWithDocker, newApiKey, newClient, sandboxTracker } from './support/sdk.ts'

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

/** The browser uses the IPv4 loopback (the emulator listens on both); the SDK keeps the fast [::1] URL. */
const pageBase = apiUrl.replace('[::1]', '127.0.0.1')

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
    const res = await fetch(`${pageBase}/_emulator/ui`)
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
    expect((await fetch(`${pageBase}/_emulator/ui/`)).status).toBe(200)
  })

  it('lists the key’s sandboxes; hibernate, resume, snapshot, destroy and audit logs work from the page', async () => {
    const a = track(await isorun.create({ image: 'busybox:latest', memMiB: 256 }))
    const b = track(await isorun.create({ image: 'busybox:latest' }))
    // Audit data the page must show as text, not markup.
    await a.exec('echo "<b id=injected>bold</b><img src=x onerror=window.pwned=1>"')
    const other = newClient() // another key: its sandboxes must not appear
    const foreign = await other.create({ image: 'busybox:latest' })

    await page.goto(`${pageBase}/_emulator/ui`)
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

    // The key is kept in localStorage: a reload shows the same sandboxes without typing it again.
    expect(await page.evaluate(() => localStorage.getItem('isorun-emulator.dashboard.api-key'))).toBe(key)
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

    // url(port): the link the builder makes is the SDK's own url(port).
    await row(a.id).locator('input.port').fill('8080')
    expect(await row(a.id).locator('a.proxy-link').getAttribute('href')).toBe(
      `${pageBase}/v1/runs/${a.id}/proxy/8080/`,
    )
    expect(a.url(8080, '/').replace('[::1]', '127.0.0.1')).toBe(`${pageBase}/v1/runs/${a.id}/proxy/8080/`)

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

    // Forget: the key leaves localStorage and the tables empty.
    await page.click('#forget-key')
    expect(await page.evaluate(() => localStorage.getItem('isorun-emulator.dashboard.api-key'))).toBeNull()
    expect(await page.locator('#sandboxes tbody').count()).toBe(0)
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
        body: JSON.stringify({ error: { code: 'conflict', message: '<i id=toast-markup>busy</i>' } }),
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
        body: JSON.stringify({ error: { code: 'unauthorized', message: 'invalid API key' } }),
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
})
