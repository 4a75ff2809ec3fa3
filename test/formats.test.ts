import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEntry } from '../src/audit/chain.ts'
import { VirtualClock } from '../src/sandboxes/clock.ts'
import type { EgressEnforcer } from '../src/sandboxes/egress-enforcer.ts'
import { buildFakeDomain, type FakeDomain } from './support/fake-domain.ts'
import { FakeEngine } from './support/fake-engine.ts'
import { buildInjectApp } from './support/inject-app.ts'

/**
 * Formats other parties depend on, pinned byte for byte (key order included): the audit log and the
 * history file on disk (old data dirs must still read, and the audit HMAC chain covers every byte), and
 * the wire bodies the SDK and test fixtures parse. The domain speaks camelCase; these stay as they are.
 */

const OWNER = 'owner-hash'

/** Egress enforcement that only says where a sandbox would go: enough for the domain to accept a policy. */
const stubEgress: EgressEnforcer = {
  prepare: async () => ({
    attachment: { network: 'isolated', proxyHost: 'isorun-egress', proxyAddress: '10.0.0.1' },
    env: { HTTP_PROXY: 'http://isorun-egress:1' },
  }),
  closeConnections: async () => {},
}

const json = (v: unknown) => JSON.stringify(v)

describe('the audit log and history on disk', () => {
  let t: FakeDomain
  afterEach(() => t.close())

  it('records each event with the snake_case data it always had, in the same key order', async () => {
    t = buildFakeDomain({ egressEnforcer: stubEgress })
    const { lifecycle, guest, checkpoints, proxyTargets, egressSources } = t.domain
    const s = await lifecycle.create(OWNER, {
      image: 'busybox:latest',
      vcpus: 2,
      memMib: 512,
      diskMib: 1024,
      timeoutSec: 60,
      credentials: { TOKEN: 'tok-secret' },
      egress: { profile: 'web', allow: ['example.com'], deny: [] },
    })
    t.clock.advance(1000)
    await guest.exec(OWNER, s.id, 'echo tok-secret', 5)
    await guest.writeFile(OWNER, s.id, '/tmp/a', 3, Readable.from([Buffer.from('abc')]))
    lifecycle.setTimeout(OWNER, s.id, 120)
    const snap = await checkpoints.snapshot(OWNER, s.id)
    const restored = await checkpoints.restore(OWNER, snap.id)
    const { forks } = await checkpoints.fork(OWNER, s.id, 1)
    await checkpoints.hibernate(OWNER, s.id)
    t.clock.advance(2000)
    await checkpoints.resume(OWNER, s.id)
    proxyTargets.noteOpened(s, 8080)
    egressSources.blocked(s, { host: 'evil.example', port: 443, method: 'CONNECT', reason: 'denied' })
    await lifecycle.destroy(OWNER, s.id)

    const entries = (id: string) =>
      (t.audit.read(id) ?? '')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as AuditEntry)
    const own = entries(s.id)
    expect(own.map((e) => [e.event, json(e.data)])).toEqual([
      [
        'sandbox.created',
        json({
          image: 'busybox:latest',
          vcpus: 2,
          mem_mib: 512,
          disk_mib: 1024,
          timeout: 60,
          credentials: ['TOKEN'],
          network: { profile: 'web', allow: ['example.com'], deny: [] },
        }),
      ],
      ['exec.start', json({ command: 'echo ***', timeout: 5 })],
      [
        'exec.end',
        // The fake engine echoes the command line as stdout.
        json({ exit_code: 0, timed_out: false, duration_ms: 0, stdout_bytes: 15, stderr_bytes: 0 }),
      ],
      ['file.write', json({ path: '/tmp/a', size: 3 })],
      ['timeout.set', json({ timeout: 120 })],
      ['snapshot.created', json({ snapshot_id: snap.id, size_bytes: 1, memory: false })],
      ['sandbox.forked', json({ count: 1, children: [forks[0]?.id], failed: 0, memory: false })],
      ['sandbox.hibernated', json({ memory: false })],
      ['sandbox.resumed', json({})],
      ['proxy.opened', json({ port: 8080 })],
      ['network.blocked', json({ host: 'evil.example', port: 443, method: 'CONNECT', reason: 'denied' })],
      [
        'sandbox.destroyed',
        // 3 s up, 2 of them hibernated: 1 s billed at 2 vCPU x 1 + 0.5 GiB x 2 cents per second.
        json({
          reason: 'api',
          status: 'destroyed',
          cpu_ms: 1,
          mem_peak_bytes: 2,
          uptime_ms: 3000,
          cost_cents: 3,
          billable_ms: 1000,
        }),
      ],
    ])
    expect(entries(restored.id).map((e) => [e.event, json(e.data)])).toEqual([
      ['sandbox.restored', json({ snapshot_id: snap.id, memory: false })],
    ])
    expect(entries(forks[0]?.id ?? '').map((e) => [e.event, json(e.data)])).toEqual([
      ['sandbox.restored', json({ forked_from: s.id, memory: false })],
    ])

    const created = new Date(1_700_000_000_000).toISOString()
    expect(t.history.list(OWNER).map(json)).toEqual([
      json({
        owner: OWNER,
        id: s.id,
        image: 'busybox:latest',
        vcpus: 2,
        mem_mib: 512,
        // The real time the create took (never 0), so not a fixed figure: the one the record holds.
        create_ms: s.createMs,
        created_at: created,
        destroyed_at: new Date(1_700_000_003_000).toISOString(),
        uptime_ms: 3000,
        cpu_ms: 1,
        mem_peak_bytes: 2,
        cost_cents: 3,
        billable_ms: 1000,
        reason: 'api',
      }),
    ])
  })
})

describe('the wire', () => {
  it('answers create, get, exec, snapshot, fork, hibernate, reset and destroy with the bodies the SDK parses', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'isorun-wire-test-'))
    const clock = new VirtualClock(1_700_000_000_000)
    const t = buildInjectApp(dataDir, { engine: new FakeEngine(), clock })
    try {
      const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) => {
        const res = await t.app.inject({ method, url, payload, headers: { authorization: 'Bearer k1' } })
        return res.body
      }
      const created = await call('POST', '/v1/runs', { image: 'busybox:latest', timeout: 60 })
      const { id, create_ms: createMs } = JSON.parse(created) as { id: string; create_ms: number }
      // The real time the create took, even under the virtual clock: never 0, not a fixed figure.
      expect(createMs).toBeGreaterThan(0)
      const at = new Date(1_700_000_000_000).toISOString()
      const run = (status: string, runId = id, ms = createMs) =>
        `{"id":"${runId}","status":"${status}","image":"busybox:latest","vcpus":1,"mem_mib":1024,"disk_mib":4096,"create_ms":${ms},"created_at":"${at}","timeout":60}`
      expect(created).toBe(run('running'))
      expect(await call('GET', `/v1/runs/${id}`)).toBe(run('running'))
      expect(await call('GET', '/v1/runs')).toBe(`{"runs":[${run('running')}]}`)
      expect(await call('POST', `/v1/runs/${id}/exec`, { command: 'true' })).toBe(
        '{"exit_code":0,"stdout":"true","stderr":""}',
      )
      const snapshot = await call('POST', `/v1/runs/${id}/snapshot`)
      const snapId = (JSON.parse(snapshot) as { id: string }).id
      expect(snapshot).toBe(
        `{"snapshot_id":"${snapId}","id":"${snapId}","run_id":"${id}","size_bytes":1,"created_at":"${at}","memory":false}`,
      )
      const forked = await call('POST', `/v1/runs/${id}/fork`, { count: 1 })
      const child = (JSON.parse(forked) as { forks: { id: string; create_ms: number }[] }).forks[0]
      expect(child?.create_ms).toBeGreaterThan(0)
      expect(forked).toBe(`{"forks":[${run('running', child?.id, child?.create_ms)}],"failed":[]}`)
      expect(await call('POST', `/v1/runs/${id}/hibernate`)).toBe(run('hibernated'))
      clock.advance(1000)
      expect(await call('DELETE', `/v1/runs/${id}`)).toBe(
        // Hibernated all along: nothing billed.
        '{"status":"destroyed","cpu_ms":1,"mem_peak_bytes":2,"uptime_ms":1000,"cost_cents":0}',
      )
      const reset = await t.app.inject({ method: 'POST', url: '/_emulator/reset', payload: {} })
      expect(reset.body).toBe('{"destroyed":1,"snapshots_deleted":1}')
    } finally {
      await t.app.close()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
