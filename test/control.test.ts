import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Isorun, type IsorunError } from 'isorun'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type StartedEmulator, startEmulator } from '../src/testing.ts'
import { engineEnv } from './support/engine.ts'
import { describeWithDocker, waitFor } from './support/sdk.ts'

const statusOf = (p: Promise<unknown>) => p.then(() => 200).catch((e: IsorunError) => e.status)

describeWithDocker('test-double powers: startEmulator, virtual clock, faults, journal, reset', () => {
  let emu: StartedEmulator
  let isorun: Isorun
  beforeAll(async () => {
    emu = await startEmulator({ clock: 'virtual', env: engineEnv() })
    isorun = new Isorun({ apiUrl: emu.apiUrl, apiKey: emu.apiKey })
  })
  afterAll(async () => {
    isorun.close()
    await emu.stop()
  })

  describe('virtual clock', () => {
    it('fires the idle timeout only when told, and gives the same cost every run', async () => {
      expect(emu.clock.mode).toBe('virtual')
      const s = await isorun.create({ image: 'busybox:latest', timeoutSec: 300, vcpus: 1, memMiB: 1024 })
      emu.clock.advance(299)
      expect((await isorun.list()).map((x) => x.id)).toContain(s.id)
      emu.clock.advance(2)
      // Destroyed (its history entry is written when the container is gone), not merely unlisted.
      const gone = await waitFor(
        async () => ((await isorun.history()).some((x) => x.id === s.id) ? true : undefined),
        5000,
      )
      expect(gone).toBe(true)
      expect((await isorun.list()).map((x) => x.id)).not.toContain(s.id)
      const [h] = await isorun.history()
      expect(h?.id).toBe(s.id)
      // Exactly 300 s of 1 vCPU and 1 GiB at the default prices.
      expect(h?.uptimeMs).toBe(300_000)
      expect(h?.costCents).toBe(Math.round(300 * (0.0014 + 0.00045) * 10_000) / 10_000)
    })

    it('is moved and read over HTTP too; a real clock refuses to move', async () => {
      const clockNow = async (res: Response) => Date.parse(((await res.json()) as { now: string }).now)
      const before = await clockNow(await fetch(`${emu.adminUrl}/_emulator/clock`))
      const res = await fetch(`${emu.adminUrl}/_emulator/clock/advance`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ seconds: 60 }),
      })
      expect((await clockNow(res)) - before).toBe(60_000)
      const real = await startEmulator({ env: engineEnv() })
      try {
        const refused = await fetch(`${real.adminUrl}/_emulator/clock/advance`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ seconds: 1 }),
        })
        expect(refused.status).toBe(409)
        expect(((await refused.json()) as { code: string }).code).toBe('conflict')
      } finally {
        await real.stop()
      }
    })
  })

  describe('faults', () => {
    it('injects a 429 on exec that reaches SDK code as IsorunError.status, a limited number of times', async () => {
      const s = await isorun.create({ image: 'busybox:latest' })
      const f = emu.faults.add({ method: 'POST', path: '/exec$', status: 429, times: 1 })
      expect(await statusOf(s.exec('true'))).toBe(429)
      expect((await s.exec('echo fine')).stdout).toBe('fine\n')
      expect(emu.faults.list().find((x) => x.id === f.id)?.hits).toBe(1)
      emu.faults.clear()
      await s.destroy()
    })

    it('delays the real answer, drops the connection, fakes an exec timeout and a partial fork', async () => {
      const s = await isorun.create({ image: 'busybox:latest' })
      emu.faults.add({ path: '/exec$', delay_ms: 400, times: 1 })
      const t = performance.now()
      expect((await s.exec('echo late')).stdout).toBe('late\n')
      expect(performance.now() - t).toBeGreaterThanOrEqual(390)

      emu.faults.add({ path: `/runs/${s.id}$`, method: 'GET', action: 'drop_connection', times: 1 })
      await expect(s.info()).rejects.toThrow()
      expect((await s.info()).status).toBe('running')

      emu.faults.add({ path: '/exec$', action: 'exec_timeout', times: 1 })
      const timedOut = await s.exec('echo never')
      expect(timedOut.exitCode).toBe(124)
      expect(timedOut.stdout).toBe('')

      emu.faults.add({ path: '/fork$', action: 'fork_partial', fail_children: 1, times: 1 })
      const res = await fetch(`${emu.apiUrl}/v1/runs/${s.id}/fork`, {
        method: 'POST',
        headers: { authorization: `Bearer ${emu.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ count: 3 }),
      })
      const body = (await res.json()) as { forks: { id: string }[]; failed: { index: number }[] }
      expect(body.forks).toHaveLength(2)
      expect(body.failed).toEqual([expect.objectContaining({ index: 2 })])
      emu.faults.clear()
    })

    it('drops a proxied WebSocket with drop_connection', async () => {
      const s = await isorun.create({ image: 'node:22-slim' })
      const guest = join(import.meta.dirname, 'fixtures', 'guest')
      for (const f of ['app.mjs', 'ws.mjs'])
        await s.writeFile(`/srv/${f}`, readFileSync(join(guest, f), 'utf8'))
      await s.exec('node /srv/app.mjs 8080 > /tmp/app.log 2>&1 &')
      await waitFor(() => fetch(s.url(8080, '/hello')).then((r) => (r.ok ? true : undefined)), 15_000, 50)
      const open = (url: string) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(url)
          ws.addEventListener('open', () => {
            ws.close()
            resolve('open')
          })
          ws.addEventListener('error', () => resolve('dropped'))
        })
      const url = s.url(8080, '/ws').replace(/^http/, 'ws')
      expect(await open(url)).toBe('open')
      emu.faults.add({ path: `/v1/runs/${s.id}/proxy/8080/ws$`, action: 'drop_connection', times: 1 })
      expect(await open(url)).toBe('dropped')
      expect(await open(url)).toBe('open')
      await s.destroy()
    })

    it('is managed over HTTP: create, list, delete, with a 400 naming a bad field', async () => {
      const post = (body: unknown) =>
        fetch(`${emu.adminUrl}/_emulator/faults`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })
      const bad = await post({ path: '(' })
      expect(bad.status).toBe(400)
      expect(((await bad.json()) as { details: { field: string } }).details.field).toBe('body.path')
      const { id } = (await (await post({ path: '^/v1/usage$', status: 503 })).json()) as { id: string }
      expect(await statusOf(isorun.usage())).toBe(503)
      const listed = (await (await fetch(`${emu.adminUrl}/_emulator/faults`)).json()) as {
        faults: { id: string }[]
      }
      expect(listed.faults.map((f) => f.id)).toContain(id)
      const json = { 'content-type': 'application/json' }
      const deleted = await fetch(`${emu.adminUrl}/_emulator/faults/${id}`, {
        method: 'DELETE',
        headers: json,
      })
      expect(deleted.status).toBe(200)
      expect(await statusOf(isorun.usage())).toBe(200)
    })
  })

  describe('journal and reset', () => {
    it('records what the code sent, credentials masked', async () => {
      const s = await isorun.create({ image: 'busybox:latest', credentials: { TOKEN: 'journal-secret-1' } })
      await s.exec('echo hello-journal')
      const [exec] = emu.requests({ path: '/exec', method: 'POST', limit: 1 })
      expect(exec).toMatchObject({ method: 'POST', path: `/v1/runs/${s.id}/exec`, status: 200 })
      expect(exec?.body).toMatchObject({ command: 'echo hello-journal' })
      const [create] = emu.requests({ path: '/v1/runs', method: 'POST' }).filter((r) => r.path === '/v1/runs')
      expect(JSON.stringify(create)).not.toContain('journal-secret-1')
      const overHttp = (await (
        await fetch(`${emu.adminUrl}/_emulator/requests?method=POST&limit=2`)
      ).json()) as {
        requests: unknown[]
      }
      expect(overHttp.requests).toHaveLength(2)
    })

    it('resets one key’s sandboxes and snapshots, then everything, without a restart', async () => {
      const other = new Isorun({ apiUrl: emu.apiUrl, apiKey: 'another-tenant' })
      const a = await isorun.create({ image: 'busybox:latest' })
      await a.snapshot()
      await other.create({ image: 'busybox:latest' })
      const mine = await emu.reset(emu.apiKey)
      expect(mine.destroyed).toBeGreaterThanOrEqual(1)
      expect(mine.snapshots_deleted).toBe(1)
      expect(await isorun.list()).toEqual([])
      expect(await isorun.listSnapshots()).toEqual([])
      expect(await other.list()).toHaveLength(1)
      const all = (await (
        await fetch(`${emu.adminUrl}/_emulator/reset`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        })
      ).json()) as { destroyed: number }
      expect(all.destroyed).toBe(1)
      expect(await other.list()).toEqual([])
      other.close()
    })
  })

  it('guards the control plane with --admin-token', async () => {
    const guarded = await startEmulator({
      env: { ...engineEnv(), ISORUN_EMULATOR_ADMIN_TOKEN: 'admin-secret' },
    })
    try {
      expect((await fetch(`${guarded.adminUrl}/_emulator/faults`)).status).toBe(401)
      const ok = await fetch(`${guarded.adminUrl}/_emulator/faults`, {
        headers: { authorization: 'Bearer admin-secret' },
      })
      expect(ok.status).toBe(200)
      expect((await fetch(`${guarded.apiUrl}/_emulator/health`)).status).toBe(200)
    } finally {
      await guarded.stop()
    }
  })
})
