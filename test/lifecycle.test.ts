import { IsorunError } from 'isorun'
import { describe, expect, it } from 'vitest'
import {
  apiUrl,
  containerOf,
  describeWithDocker,
  newApiKey,
  newClient,
  sandboxTracker,
  waitFor,
} from './support/sdk.ts'

const RUN_ID = /^run[0-9a-f]{20}$/

describeWithDocker('sandbox lifecycle through the real SDK', () => {
  const isorun = newClient()
  const track = sandboxTracker()

  describe('create', () => {
    it('applies the SDK defaults and returns a run record', async () => {
      const before = Date.now()
      const s = track(await isorun.create({ image: 'busybox:latest' }))
      expect(s.id).toMatch(RUN_ID)
      expect(s.vcpus).toBe(1)
      expect(s.memMiB).toBe(1024)
      expect(s.diskMiB).toBe(4096)
      expect(s.createMs).toBeGreaterThan(0)
      const info = await s.info()
      expect(info.status).toBe('running')
      expect(info.image).toBe('busybox:latest')
      expect(Date.parse(info.createdAt)).toBeGreaterThanOrEqual(before - 1000)
      const container = await containerOf(s.id)
      expect(container?.State).toBe('running')
    })

    it('turns vcpus and memory into real limits the guest can read from its cgroup', async () => {
      const s = track(await isorun.create({ image: 'busybox:latest', vcpus: 1, memMiB: 256 }))
      const mem = await s.exec(
        'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max',
      )
      expect(Number(mem.stdout.trim())).toBe(256 * 1024 * 1024)
      const cpu = await s.exec(
        'q=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null) && p=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us) && echo "$q $p" || cat /sys/fs/cgroup/cpu.max',
      )
      const [quota = 0, period = 1] = cpu.stdout.trim().split(/\s+/).map(Number)
      expect(quota / period).toBe(1)
    })

    it('passes credentials to the guest as environment variables and never returns them', async () => {
      const s = track(
        await isorun.create({ image: 'busybox:latest', credentials: { API_TOKEN: 's3cr3t-value' } }),
      )
      expect((await s.exec('echo "$API_TOKEN"')).stdout).toBe('s3cr3t-value\n')
      expect(JSON.stringify(await s.info())).not.toContain('s3cr3t-value')
      expect(JSON.stringify(await isorun.list())).not.toContain('s3cr3t-value')
    })

    it('answers an image that is neither local nor pullable with a 400 naming the image', async () => {
      const started = Date.now()
      const err = await isorun.create({ image: 'isorun-missing/never-built:1' }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(IsorunError)
      expect((err as IsorunError).status).toBe(400)
      const body = JSON.parse((err as IsorunError).body ?? '{}')
      expect(body.code).toBe('image_unavailable')
      expect(body.error).toContain('isorun-missing/never-built:1')
      expect(Date.now() - started).toBeLessThan(60_000)
    })
  })

  describe('get, list and key isolation', () => {
    it('lists and gets only the calling key’s sandboxes; another key gets 404s', async () => {
      const s = track(await isorun.create({ image: 'busybox:latest' }))
      const otherKey = newApiKey()
      const other = newClient(otherKey)
      expect((await isorun.list()).map((x) => x.id)).toContain(s.id)
      expect((await other.list()).map((x) => x.id)).not.toContain(s.id)
      expect(await other.get(s.id)).toBeNull()
      // Even with the id in hand, another key cannot act on it.
      for (const [method, path] of [
        ['POST', 'exec'],
        ['DELETE', ''],
        ['GET', 'files?path=/'],
      ] as const) {
        const res = await fetch(`${apiUrl}/v1/runs/${s.id}${path ? `/${path}` : ''}`, {
          method,
          headers: { authorization: `Bearer ${otherKey}`, 'content-type': 'application/json' },
          body: method === 'POST' ? JSON.stringify({ command: 'true' }) : undefined,
        })
        expect(res.status).toBe(404)
      }
      expect((await isorun.get(s.id))?.id).toBe(s.id)
      other.close()
    })

    it('answers an unknown run id with 404 (get returns null)', async () => {
      expect(await isorun.get('run00000000000000000000')).toBeNull()
    })
  })

  describe('destroy', () => {
    it('removes the container and reports usage from its real cgroup counters', async () => {
      const s = await isorun.create({ image: 'busybox:latest', vcpus: 1, memMiB: 512 })
      // Burn some CPU and touch some memory so the counters have something to show.
      await s.exec(
        'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; head -c 20000000 /dev/zero | tail -c 1 >/dev/null',
      )
      const result = await s.destroy()
      expect(result.status).toBe('destroyed')
      expect(result.cpuMs).toBeGreaterThan(50)
      expect(result.memPeakBytes).toBeGreaterThan(1024 * 1024)
      expect(result.uptimeMs).toBeGreaterThan(0)
      // The documented default price: 0.0014 cents per vCPU-second + 0.00045 cents per GiB-second.
      const expected = (result.uptimeMs / 1000) * (1 * 0.0014 + 0.5 * 0.00045)
      expect(result.costCents).toBeCloseTo(expected, 3)
      expect(result.costCents).toBeGreaterThan(0)
      expect(await containerOf(s.id)).toBeUndefined()
      expect(await isorun.get(s.id)).toBeNull()
      const again = await s.destroy().catch((e: unknown) => e)
      expect((again as IsorunError).status).toBe(404)
    })
  })

  describe('idle timeout', () => {
    it('destroys a sandbox that sees no API activity for its timeout', async () => {
      const s = track(await isorun.create({ image: 'busybox:latest', timeoutSec: 1 }))
      // Polled with list(), which is not activity (get() is, and would keep it alive), until the destroy
      // has begun; then until it is done: the container can leave the engine's listing a moment before
      // the engine's remove call returns and the sandbox is forgotten (Podman tears its network down).
      const destroying = await waitFor(
        async () => ((await isorun.list()).some((x) => x.id === s.id) ? undefined : true),
        10_000,
      )
      expect(destroying).toBe(true)
      expect(await waitFor(async () => ((await isorun.get(s.id)) === null ? true : undefined), 10_000)).toBe(
        true,
      )
      expect(await containerOf(s.id)).toBeUndefined()
    })

    it('setTimeout resets the timer, activity keeps a sandbox alive, and 0 disables auto-destroy', async () => {
      const s = track(await isorun.create({ image: 'busybox:latest', timeoutSec: 2 }))
      await s.setTimeout(3)
      // Activity every second for 4 s: longer than the timeout, yet it must survive.
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 1000))
        await s.exec('true')
      }
      expect((await s.info()).status).toBe('running')
      await s.setTimeout(0)
      await new Promise((r) => setTimeout(r, 4000))
      expect(await containerOf(s.id)).toBeDefined()
      await s.destroy()
    })

    it('an exec running longer than the idle timeout is not cut off', async () => {
      const s = track(await isorun.create({ image: 'busybox:latest', timeoutSec: 1 }))
      const r = await s.exec('sleep 3; echo survived', 10)
      expect(r.stdout).toBe('survived\n')
      expect(r.exitCode).toBe(0)
    })
  })
})
