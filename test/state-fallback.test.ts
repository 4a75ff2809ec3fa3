import { Isorun, type IsorunError } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { LABEL } from '../src/sandboxes/labels.ts'
import type { RunningServer } from '../src/server.ts'
import { startEmulator } from '../src/testing.ts'
import { removeContainers } from './support/cleanup.ts'
import { engineEnv } from './support/engine.ts'
import { describeWithDocker, docker } from './support/sdk.ts'
import { readCount, startShellCounter } from './support/state.ts'

/** An emulator of its own, configured as on a machine without CRIU (Docker Desktop, say). */
async function startWithoutCriu(extra: Record<string, string> = {}) {
  const emu = await startEmulator({
    env: { ...engineEnv(), ISORUN_EMULATOR_LOG_LEVEL: 'silent', ISORUN_EMULATOR_CRIU: 'off', ...extra },
  })
  const client = new Isorun({ apiUrl: emu.apiUrl, apiKey: 'fallback-key' })
  const stop = async () => {
    client.close()
    await emu.stop()
    await removeContainers([`${LABEL.instance}=${emu.server.identity.instanceId}`])
  }
  return { server: emu.server, client, stop }
}

const status = (p: Promise<unknown>) => p.then(() => 200).catch((e: IsorunError) => e.status)

describeWithDocker('without CRIU: files-only snapshots, pause for hibernate, and saying so', () => {
  let emu: Awaited<ReturnType<typeof startWithoutCriu>>
  let server: RunningServer
  beforeAll(async () => {
    emu = await startWithoutCriu()
    server = emu.server
  })
  afterAll(() => emu.stop())

  it('reports the degradation in its capabilities', async () => {
    const caps = (await (await fetch(`${server.apiUrl}/_emulator/capabilities`)).json()) as {
      memory_state: { reason: string }
    }
    expect(caps.memory_state).toMatchObject({
      criu: false,
      snapshot: 'files',
      fork: 'files',
      hibernate: 'pause',
    })
    expect(caps.memory_state.reason).toContain('ISORUN_EMULATOR_CRIU=off')
  })

  it('restores files but not processes, and the snapshot says it holds no memory', async () => {
    const parent = await emu.client.create({ image: 'busybox:latest' })
    await startShellCounter(parent)
    await parent.writeFile('/data/kept.txt', 'files survive')
    const snap = await parent.snapshot()
    const listed = (await (
      await fetch(`${server.apiUrl}/v1/snapshots`, { headers: { authorization: 'Bearer fallback-key' } })
    ).json()) as { snapshots: { id: string; memory: boolean }[] }
    expect(listed.snapshots.find((s: { id: string }) => s.id === snap.id)?.memory).toBe(false)
    const restored = await emu.client.restore(snap.id)
    expect(await restored.readFile('/data/kept.txt')).toBe('files survive')
    // The counter's file came along, but no process writes it any more.
    const first = await readCount(restored)
    await new Promise((r) => setTimeout(r, 500))
    expect(await readCount(restored)).toBe(first)
    const forks = await parent.fork(2)
    expect(forks).toHaveLength(2)
    for (const s of [parent, restored, ...forks]) await s.destroy()
    await emu.client.deleteSnapshot(snap.id)
  })

  it('hibernates by pausing: memory is kept in RAM and the processes carry on after resume', async () => {
    const s = await emu.client.create({ image: 'busybox:latest' })
    await startShellCounter(s)
    await s.hibernate()
    const [c] = await docker.listContainers({ all: true, filters: { name: [`isorun-${s.id}`] } })
    expect(c?.State).toBe('paused')
    expect(await status(s.exec('true'))).toBe(409)
    await s.resume()
    const first = await readCount(s)
    await new Promise((r) => setTimeout(r, 500))
    expect(await readCount(s)).toBeGreaterThan(first)
    await s.destroy()
  })
})

describeWithDocker('strict mode without CRIU', () => {
  let emu: Awaited<ReturnType<typeof startWithoutCriu>>
  beforeAll(async () => {
    emu = await startWithoutCriu({ ISORUN_EMULATOR_STRICT: '1' })
  })
  afterAll(() => emu.stop())

  it('refuses snapshot, fork and hibernate with a 409 naming the missing capability', async () => {
    const s = await emu.client.create({ image: 'busybox:latest' })
    for (const op of [() => s.snapshot(), () => s.fork(1), () => s.hibernate()]) {
      const err = (await op().catch((e: unknown) => e)) as IsorunError
      expect(err.status).toBe(409)
      expect(JSON.parse(err.body ?? '{}').code).toBe('capability_unavailable')
    }
    expect((await s.exec('echo still fine')).stdout).toBe('still fine\n')
    await s.destroy()
  })
})
