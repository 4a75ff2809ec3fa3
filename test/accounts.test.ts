import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { verifyAuditLog } from '../src/audit/verify.ts'
import { dataDir, describeWithDocker, newClient, waitFor } from './support/sdk.ts'

const auditKey = () => Buffer.from(readFileSync(join(dataDir, 'audit.key'), 'utf8').trim(), 'hex')

describeWithDocker('usage, history and the audit log through the real SDK', () => {
  it('keeps history and usage consistent with what destroy returned, idle destroys included', async () => {
    const isorun = newClient()
    const a = await isorun.create({ image: 'busybox:latest', vcpus: 1, memMiB: 512 })
    const c = await isorun.create({ image: 'busybox:latest' })
    await a.exec('i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done')
    const destroyed = await a.destroy()
    // b goes by its idle timeout; made after a is gone, so it is the newer history row however long the
    // work above took.
    const b = await isorun.create({ image: 'busybox:latest', timeoutSec: 1 })
    expect(
      await waitFor(
        async () => ((await isorun.history()).some((h) => h.id === b.id) ? true : undefined),
        10_000,
      ),
    ).toBe(true)

    const history = await isorun.history()
    expect(history.map((h) => h.id)).toEqual([b.id, a.id]) // newest first
    const ha = history[1]
    expect(ha).toMatchObject({
      id: a.id,
      image: 'busybox:latest',
      vcpus: 1,
      memMiB: 512,
      cpuMs: destroyed.cpuMs,
      memPeakBytes: destroyed.memPeakBytes,
      uptimeMs: destroyed.uptimeMs,
      costCents: destroyed.costCents,
    })
    expect(Date.parse(ha?.destroyedAt ?? '')).toBeGreaterThan(Date.parse(ha?.createdAt ?? ''))

    const usage = await isorun.usage()
    expect(usage.activeSandboxes).toBe(1)
    expect(usage.historySandboxes).toBe(2)
    const historyCost = history.reduce((sum, h) => sum + h.costCents, 0)
    expect(usage.historyCostCents).toBeCloseTo(historyCost, 4)
    expect(usage.totalCostCents).toBeCloseTo(usage.activeCostCents + usage.historyCostCents, 4)
    expect(usage.activeCostCents).toBeGreaterThan(0)
    expect(usage.cpuSeconds).toBeGreaterThan(0)
    expect(usage.memSeconds).toBeGreaterThan(0)
    expect(Date.parse(usage.asOf)).toBeGreaterThan(0)
    // Another key sees none of it.
    const other = newClient()
    expect(await other.history()).toEqual([])
    expect((await other.usage()).historySandboxes).toBe(0)
    await c.destroy()
  })

  it('records every API action in a verifiable audit log that outlives destroy, credentials masked', async () => {
    const isorun = newClient()
    const s = await isorun.create({ image: 'busybox:latest', credentials: { API_TOKEN: 'tok-9f8e7d6c' } })
    await s.exec('echo tok-9f8e7d6c; exit 3')
    await s.writeFile('/tmp/report.txt', 'hello')
    const snap = await s.snapshot()
    const [kid] = await s.fork(1)
    await s.hibernate()
    await s.resume()
    const live = await s.auditLog()
    expect(live[0]).toMatchObject({ seq: 0, sandboxId: s.id, event: 'sandbox.created' })
    expect(live[0]?.data).toMatchObject({ image: 'busybox:latest', credentials: ['API_TOKEN'] })
    await s.destroy()

    const entries = await s.auditLog()
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i))
    expect(entries.map((e) => e.event)).toEqual([
      'sandbox.created',
      'exec.start',
      'exec.end',
      'file.write',
      'snapshot.created',
      'sandbox.forked',
      'sandbox.hibernated',
      'sandbox.resumed',
      'sandbox.destroyed',
    ])
    expect(entries[1]?.data.command).toBe('echo ***; exit 3')
    expect(entries[2]?.data.exit_code).toBe(3)
    expect(entries[3]?.data).toMatchObject({ path: '/tmp/report.txt', size: 5 })
    expect(entries[4]?.data.snapshot_id).toBe(snap.id)
    expect(JSON.stringify(entries)).not.toContain('tok-9f8e7d6c')
    // The raw log verifies with the emulator's key.
    const raw = readFileSync(join(dataDir, 'audit', `${s.id}.jsonl`), 'utf8')
    expect(verifyAuditLog(raw, auditKey())).toEqual({ ok: true, entries: entries.length })
    // The child has a log of its own, and still masks the inherited credential.
    await kid?.exec('echo tok-9f8e7d6c')
    const kidLog = await kid?.auditLog()
    expect(kidLog?.[0]?.event).toBe('sandbox.restored')
    expect(JSON.stringify(kidLog)).not.toContain('tok-9f8e7d6c')
    await kid?.destroy()
    await isorun.deleteSnapshot(snap.id)
    expect((await newClient().get(s.id)) ?? null).toBeNull()
  })
})
