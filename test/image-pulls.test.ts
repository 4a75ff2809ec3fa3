import { createServer, type Server } from 'node:net'
import { Isorun, IsorunError } from 'isorun'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.ts'
import { LABEL } from '../src/sandboxes/labels.ts'
import { startEmulator } from '../src/testing.ts'
import { removeContainers } from './support/cleanup.ts'
import { engineEnv } from './support/engine.ts'
import { describeWithDocker, newClient } from './support/sdk.ts'

/** A stand-in registry: counts the connections dockerd makes to it, and answers none of them. */
async function registry(): Promise<{ server: Server; port: number; connections: () => number }> {
  let count = 0
  const server = createServer((socket) => {
    count++
    socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return {
    server,
    port: typeof address === 'object' && address ? address.port : 0,
    connections: () => count,
  }
}

async function createFails(
  isorun: Isorun,
  image: string,
): Promise<{ status: number; code: string; message: string }> {
  const err = await isorun.create({ image }).then(
    async (s) => {
      await s.destroy()
      throw new Error(`create({ image: ${JSON.stringify(image)} }) succeeded`)
    },
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(IsorunError)
  const body = JSON.parse((err as IsorunError).body ?? '{}')
  return { status: (err as IsorunError).status, code: body.code, message: body.error }
}

/** An emulator in this process with the given pull settings. */
async function emulatorWith(env: Record<string, string>) {
  const emu = await startEmulator({
    env: { ...engineEnv(), ISORUN_EMULATOR_PULL_TIMEOUT_MS: '15000', ...env },
  })
  return {
    server: emu.server,
    client: new Isorun({ apiUrl: emu.apiUrl, apiKey: 'pulls-test' }),
    async close() {
      await emu.stop()
      await removeContainers([`${LABEL.instance}=${emu.server.identity.instanceId}`])
    },
  }
}

describeWithDocker('image pulls (issue 12 item 8)', () => {
  let target: Awaited<ReturnType<typeof registry>>
  beforeAll(async () => {
    target = await registry()
  })
  afterAll(() => target?.server.close())

  it('by default pulls from Docker Hub only: a registry on loopback is never contacted', async () => {
    const isorun = newClient()
    const before = target.connections()
    for (const image of [
      `127.0.0.1:${target.port}/x:1`,
      `localhost:${target.port}/x`,
      `host.invalid:${target.port}/x`,
    ]) {
      const failed = await createFails(isorun, image)
      expect(failed).toMatchObject({ status: 400, code: 'image_unavailable' })
      expect(failed.message).toContain('not in the allowed registries (docker.io)')
    }
    await new Promise((r) => setTimeout(r, 300))
    expect(target.connections()).toBe(before)
  })

  describe('with settings', () => {
    let allowing: Awaited<ReturnType<typeof emulatorWith>> | undefined
    let never: Awaited<ReturnType<typeof emulatorWith>> | undefined
    afterAll(async () => {
      await allowing?.close()
      await never?.close()
    })

    it('a registry named in ISORUN_EMULATOR_PULL_REGISTRIES is pulled from (the stand-in sees dockerd)', async () => {
      allowing = await emulatorWith({ ISORUN_EMULATOR_PULL_REGISTRIES: `docker.io,127.0.0.1:${target.port}` })
      const before = target.connections()
      const failed = await createFails(allowing.client, `127.0.0.1:${target.port}/x:1`)
      expect(failed).toMatchObject({ status: 400, code: 'image_unavailable' })
      expect(target.connections()).toBeGreaterThan(before)
    })

    it('ISORUN_EMULATOR_PULL=never uses local images only, and says so for a missing one', async () => {
      never = await emulatorWith({ ISORUN_EMULATOR_PULL: 'never' })
      const failed = await createFails(never.client, 'isorun-missing/never-built:1')
      expect(failed).toMatchObject({ status: 400, code: 'image_unavailable' })
      expect(failed.message).toContain('ISORUN_EMULATOR_PULL=never')
      const local = await never.client.create({ image: 'busybox:latest' })
      expect((await local.exec('echo here')).stdout).toBe('here\n')
      await local.destroy()
    })
  })
})

describe('pull settings', () => {
  it('refuses a registry entry that is not host[:port] or *', () => {
    expect(() => loadConfig({ ISORUN_EMULATOR_PULL_REGISTRIES: 'https://example.com' })).toThrow(
      /ISORUN_EMULATOR_PULL_REGISTRIES/,
    )
    expect(() => loadConfig({ ISORUN_EMULATOR_PULL: 'always' })).toThrow(/ISORUN_EMULATOR_PULL/)
    expect(loadConfig({}).pull).toEqual({ mode: 'missing', registries: ['docker.io'] })
    expect(
      loadConfig({ ISORUN_EMULATOR_PULL_REGISTRIES: 'Index.Docker.io, ghcr.io,localhost:5000' }).pull,
    ).toEqual({
      mode: 'missing',
      registries: ['docker.io', 'ghcr.io', 'localhost:5000'],
    })
  })
})
