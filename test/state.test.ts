import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IsorunError, Sandbox } from 'isorun'
import { beforeAll, describe, expect, it } from 'vitest'
import { dataDir, describeWithDocker, docker, newClient, sandboxTracker, waitFor } from './support/sdk.ts'
import { memoryCapability, readCount, startShellCounter } from './support/state.ts'

const status = (p: Promise<unknown>) => p.then(() => 200).catch((e: IsorunError) => e.status)

async function imageExists(ref: string): Promise<boolean> {
  return docker
    .getImage(ref)
    .inspect()
    .then(
      () => true,
      () => false,
    )
}

describeWithDocker('snapshot, restore, fork and hibernate through the real SDK', () => {
  const isorun = newClient()
  const track = sandboxTracker()
  let criu = { criu: false, reason: '' }

  beforeAll(async () => {
    criu = await memoryCapability()
    if (!criu.criu) {
      if (process.env.ISORUN_REQUIRE_CRIU === '1')
        throw new Error(`CRIU is required here but: ${criu.reason}`)
      console.warn(`[state tests] memory assertions skipped: ${criu.reason}`)
    }
  })

  describe('filesystem state', () => {
    it('restores a snapshot into a new sandbox with the files; the parent keeps running', async () => {
      const parent = track(await isorun.create({ image: 'busybox:latest', memMiB: 256 }))
      await parent.writeFile('/data/notes.txt', 'before snapshot')
      const snap = await parent.snapshot()
      expect(snap.id).toMatch(/^snap[0-9a-f]{20}$/)
      expect(snap.runId).toBe(parent.id)
      expect(snap.sizeBytes).toBeGreaterThan(0)
      await parent.writeFile('/data/notes.txt', 'after snapshot')
      expect((await parent.info()).status).toBe('running')

      const restored = track(await isorun.restore(snap.id))
      expect(restored.id).not.toBe(parent.id)
      expect(restored.memMiB).toBe(256)
      expect(await restored.readFile('/data/notes.txt')).toBe('before snapshot')
      expect((await isorun.listSnapshots()).map((s) => s.id)).toContain(snap.id)
    })

    it('restores after the parent is destroyed, and a deleted snapshot leaves no image behind', async () => {
      const parent = await isorun.create({ image: 'busybox:latest' })
      await parent.writeFile('/etc/motd', 'kept')
      const snap = await parent.snapshot()
      await parent.destroy()
      const restored = await isorun.restore(snap.id)
      expect(await restored.readFile('/etc/motd')).toBe('kept')
      const image = `isorun-emulator-snapshot:${snap.id}`
      expect(await imageExists(image)).toBe(true)
      await isorun.deleteSnapshot(snap.id)
      expect((await isorun.listSnapshots()).map((s) => s.id)).not.toContain(snap.id)
      expect(await status(isorun.restore(snap.id))).toBe(404)
      expect(await status(isorun.deleteSnapshot(snap.id))).toBe(404)
      // The restored sandbox still runs on the image; it goes with the last sandbox using it.
      expect((await restored.exec('cat /etc/motd')).stdout).toBe('kept')
      await restored.destroy()
      expect(await waitFor(async () => ((await imageExists(image)) ? undefined : true), 5000)).toBe(true)
    })

    it('forks children that share nothing with each other or the parent', async () => {
      const parent = track(await isorun.create({ image: 'busybox:latest' }))
      await parent.writeFile('/work/state.txt', 'parent')
      const kids = track(await parent.fork(3))
      expect(kids).toHaveLength(3)
      expect(new Set(kids.map((k) => k.id)).size).toBe(3)
      for (const [i, k] of kids.entries()) {
        expect(await k.readFile('/work/state.txt')).toBe('parent')
        await k.writeFile('/work/state.txt', `child ${i}`)
      }
      for (const [i, k] of kids.entries()) expect(await k.readFile('/work/state.txt')).toBe(`child ${i}`)
      expect(await parent.readFile('/work/state.txt')).toBe('parent')
      expect((await parent.info()).status).toBe('running')
    })

    it('bounds fork count to 1..20 with a 400', async () => {
      const parent = track(await isorun.create({ image: 'busybox:latest' }))
      expect(await status(parent.fork(0))).toBe(400)
      expect(await status(parent.fork(21))).toBe(400)
    })

    it('hibernates and resumes the same sandbox; exec on a hibernated one is a 409', async () => {
      const s = track(await isorun.create({ image: 'busybox:latest' }))
      await s.writeFile('/tmp/h.txt', 'still here')
      await s.hibernate()
      expect((await s.info()).status).toBe('hibernated')
      expect(await status(s.exec('true'))).toBe(409)
      expect(await status(s.readFile('/tmp/h.txt'))).toBe(409)
      expect(await status(fetch(s.url(8080)).then((r) => Promise.reject({ status: r.status })))).toBe(409)
      await s.resume()
      expect((await s.info()).status).toBe('running')
      expect(await s.readFile('/tmp/h.txt')).toBe('still here')
    })

    it('does not bill hibernated time', async () => {
      const s = await isorun.create({ image: 'busybox:latest', vcpus: 1, memMiB: 1024 })
      await s.hibernate()
      await new Promise((r) => setTimeout(r, 2500))
      await s.resume()
      const result = await s.destroy()
      const billedSeconds = result.costCents / (0.0014 + 0.00045)
      expect(result.uptimeMs).toBeGreaterThan(2500)
      expect(billedSeconds * 1000).toBeLessThan(result.uptimeMs - 2000)
    })

    it('keeps idle timers working on restored and forked sandboxes', async () => {
      const parent = track(await isorun.create({ image: 'busybox:latest', timeoutSec: 5 }))
      // The snapshot and the fork's capture are activity on the parent; once its children are starting
      // the parent may go idle too, which is not this test's concern (the restore needs no parent).
      const snap = await parent.snapshot()
      const [kid] = track(await parent.fork(1))
      const restored = track(await isorun.restore(snap.id))
      // Polled with list(), a read: not activity (docs/api.md).
      for (const s of [restored, kid as Sandbox]) {
        const gone = await waitFor(
          async () => ((await isorun.list()).some((x) => x.id === s.id) ? undefined : true),
          20_000,
          200,
        )
        expect(gone).toBe(true)
      }
      await isorun.deleteSnapshot(snap.id)
    })

    it('lets a delete wait for a restore in flight, then the snapshot is gone', async () => {
      const parent = track(await isorun.create({ image: 'busybox:latest' }))
      const snap = await parent.snapshot()
      const [restored, deleted] = await Promise.allSettled([
        isorun.restore(snap.id),
        isorun.deleteSnapshot(snap.id),
      ])
      expect(restored.status).toBe('fulfilled')
      expect(deleted.status).toBe('fulfilled')
      if (restored.status === 'fulfilled') track(restored.value)
      expect(await status(isorun.restore(snap.id))).toBe(404)
    })
  })

  describe('memory state (CRIU)', () => {
    /** Without CRIU (outside CI, which requires it above): skipped, and the reason printed and noted. */
    const skipWithoutCriu = (ctx: { skip: (note?: string) => void }) => {
      if (criu.criu) return
      console.warn(`[state tests] skipped, no CRIU: ${criu.reason}`)
      ctx.skip(`no CRIU: ${criu.reason}`)
    }

    it('restore: a shell loop counting in a variable carries on from its value', async (ctx) => {
      skipWithoutCriu(ctx)
      const parent = track(await isorun.create({ image: 'busybox:latest' }))
      await startShellCounter(parent)
      const snap = await parent.snapshot()
      const atSnapshot = await readCount(parent)
      const restored = track(await isorun.restore(snap.id))
      const first = await readCount(restored)
      await new Promise((r) => setTimeout(r, 600))
      const later = await readCount(restored)
      // It neither restarted from 1 nor stood still: it went on from where the snapshot caught it.
      expect(first).toBeGreaterThan(3)
      expect(first).toBeLessThanOrEqual(atSnapshot + 2)
      expect(later).toBeGreaterThan(first)
    })

    it('fork: each child carries on the parent’s counter and its Node server answers for itself', async (ctx) => {
      skipWithoutCriu(ctx)
      const parent = track(await isorun.create({ image: 'node:22-slim' }))
      await startShellCounter(parent)
      const counterJs = readFileSync(join(import.meta.dirname, 'fixtures', 'guest', 'counter.mjs'), 'utf8')
      await parent.writeFile('/srv/counter.mjs', counterJs)
      await parent.exec('node /srv/counter.mjs 8080 >/tmp/counter.log 2>&1 &')
      const up = await waitFor(
        () => fetch(parent.url(8080)).then((r) => (r.ok ? r.json() : undefined)),
        15_000,
      )
      expect(up).toBeDefined()
      for (let i = 0; i < 3; i++) await fetch(parent.url(8080))
      const parentState = (await (await fetch(parent.url(8080))).json()) as {
        count: number
        pid: number
        startedAt: number
      }
      const kids = track(await parent.fork(2))
      expect(kids).toHaveLength(2)
      for (const kid of kids) {
        expect(await readCount(kid)).toBeGreaterThan(3)
        // The same Node process (memory, pid, start time) carries on in the child, behind its own url().
        const a = (await (await fetch(kid.url(8080))).json()) as typeof parentState
        const b = (await (await fetch(kid.url(8080))).json()) as typeof parentState
        expect(a.pid).toBe(parentState.pid)
        expect(a.startedAt).toBe(parentState.startedAt)
        expect(a.count).toBe(parentState.count + 1)
        expect(b.count).toBe(a.count + 1)
      }
      // The parent's counter is its own.
      const p = (await (await fetch(parent.url(8080))).json()) as typeof parentState
      expect(p.count).toBe(parentState.count + 1)
    })

    it('hibernate: the same processes resume with their memory, and the container is stopped meanwhile', async (ctx) => {
      skipWithoutCriu(ctx)
      const s = track(await isorun.create({ image: 'busybox:latest' }))
      await startShellCounter(s)
      await s.hibernate()
      const container = await docker.listContainers({ all: true, filters: { name: [`isorun-${s.id}`] } })
      expect(container[0]?.State).toBe('exited')
      const atHibernate = Number(readFileSync(await hostPathOfCount(s.id), 'utf8').trim() || '0')
      // Long enough hibernated that a counter still running would have moved well past the bound below.
      await new Promise((r) => setTimeout(r, 1_500))
      const resumedAt = Date.now()
      await s.resume()
      const first = await readCount(s)
      // The counter ticks every 100 ms from where it stopped: at most one tick per 100 ms since resume
      // was asked (and one for rounding), however slow the resume and the read were.
      const ticksSinceResume = Math.ceil((Date.now() - resumedAt) / 100) + 1
      expect(first).toBeGreaterThanOrEqual(atHibernate)
      expect(first).toBeLessThanOrEqual(atHibernate + ticksSinceResume)
    })

    it('a snapshot of a hibernated sandbox restores its processes', async (ctx) => {
      skipWithoutCriu(ctx)
      const s = track(await isorun.create({ image: 'busybox:latest' }))
      await startShellCounter(s)
      await s.hibernate()
      const snap = await s.snapshot()
      const restored = track(await isorun.restore(snap.id))
      const first = await readCount(restored)
      await new Promise((r) => setTimeout(r, 500))
      expect(await readCount(restored)).toBeGreaterThan(first)
      await s.resume()
      expect(await readCount(s)).toBeGreaterThan(3)
      await isorun.deleteSnapshot(snap.id)
      expect(existsSync(snapshotCheckpointDir(snap.id))).toBe(false)
    })
  })
})

/** /tmp/count of a stopped container, read from its writable layer on the host. */
async function hostPathOfCount(runId: string): Promise<string> {
  const info = await docker.getContainer(`isorun-${runId}`).inspect()
  const upper = (info.GraphDriver?.Data as { UpperDir?: string } | undefined)?.UpperDir ?? ''
  return join(upper, 'tmp', 'count')
}

function snapshotCheckpointDir(snapshotId: string): string {
  return join(dataDir, 'snapshots', snapshotId)
}
