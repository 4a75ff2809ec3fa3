import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun, type IsorunError } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type StartedEmulator, startEmulator } from '../src/testing.ts'
import { engineEnv } from './support/engine.ts'
import { describeWithDocker, docker } from './support/sdk.ts'

describeWithDocker('--seed and --init: a prepared starting state that reset returns to', () => {
  const dir = mkdtempSync(join(tmpdir(), 'isorun-seed-'))
  const marker = join(dir, 'init-ran.txt')
  let emu: StartedEmulator
  beforeAll(async () => {
    const seed = {
      snapshots: [
        {
          snapshot_id: 'busybox-with-tools',
          image: 'busybox:latest',
          files: { '/opt/tool.sh': 'echo tool-ready' },
          commands: ['chmod +x /opt/tool.sh', 'echo built > /opt/built.txt'],
        },
      ],
      sandboxes: [{ api_key: 'seeded-tenant', image: 'busybox:latest', files: { '/srv/hello.txt': 'hi' } }],
    }
    writeFileSync(join(dir, 'seed.json'), JSON.stringify(seed))
    mkdirSync(join(dir, 'init'))
    writeFileSync(join(dir, 'init', '10-marker.sh'), `echo "$ISORUN_API_URL" > ${marker}\n`)
    writeFileSync(join(dir, 'init', '20-not-a-script.txt'), 'ignored')
    chmodSync(join(dir, 'init', '10-marker.sh'), 0o644)
    emu = await startEmulator({
      env: {
        ...engineEnv(),
        ISORUN_EMULATOR_SEED: join(dir, 'seed.json'),
        ISORUN_EMULATOR_INIT: join(dir, 'init'),
      },
    })
  })
  afterAll(async () => {
    // stop() removes what it made, seeded snapshots and their images included (its data dir was temporary).
    await emu.stop()
    rmSync(dir, { recursive: true, force: true })
    const images = await docker.listImages({
      filters: { reference: ['isorun-emulator-snapshot:busybox-with-tools'] },
    })
    expect(images).toHaveLength(0)
  })

  it('lets any key restore a seeded snapshot by its name, but not delete it', async () => {
    const isorun = new Isorun({ apiUrl: emu.apiUrl, apiKey: emu.apiKey })
    expect((await isorun.listSnapshots()).map((s) => s.id)).toContain('busybox-with-tools')
    const s = await isorun.restore('busybox-with-tools')
    expect((await s.exec('/opt/tool.sh; cat /opt/built.txt')).stdout).toBe('tool-ready\nbuilt\n')
    await s.destroy()
    const err = (await isorun.deleteSnapshot('busybox-with-tools').catch((e: unknown) => e)) as IsorunError
    expect(err.status).toBe(403)
    isorun.close()
  })

  it('creates the seeded sandboxes for their key, runs init scripts, and reset brings the seed back', async () => {
    expect(readFileSync(marker, 'utf8').trim()).toBe(emu.apiUrl)
    const tenant = new Isorun({ apiUrl: emu.apiUrl, apiKey: 'seeded-tenant' })
    const [first] = await tenant.list()
    expect(await first?.readFile('/srv/hello.txt')).toBe('hi')
    await first?.writeFile('/srv/hello.txt', 'changed')
    const result = await emu.reset()
    expect(result.destroyed).toBeGreaterThanOrEqual(1)
    const [again] = await tenant.list()
    expect(again?.id).not.toBe(first?.id)
    expect(await again?.readFile('/srv/hello.txt')).toBe('hi')
    expect((await tenant.listSnapshots()).map((s) => s.id)).toContain('busybox-with-tools')
    tenant.close()
  })
})
