import { createServer, type Server } from 'node:net'
import { Isorun, IsorunError } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type StartedEmulator, startEmulator } from '../src/testing.ts'
import { engineEnv } from './support/engine.ts'
import { describeOnEngine, docker } from './support/sdk.ts'

/**
 * A policy create the emulator must refuse after it made the isolated network (here: the egress port is
 * taken; in a container: the gateway is not the emulator's address) leaves no network behind.
 */
describeOnEngine('docker', 'Podman has no isolated network', 'a refused egress policy', () => {
  let emu: StartedEmulator
  let squatter: Server
  let port: number

  beforeAll(async () => {
    // Every address of this port: the proxy's listen on the network's gateway then fails (EADDRINUSE).
    squatter = createServer()
    await new Promise<void>((resolve, reject) => {
      squatter.once('error', reject)
      squatter.listen(0, '0.0.0.0', resolve)
    })
    port = (squatter.address() as { port: number }).port
    emu = await startEmulator({ env: { ...engineEnv(), ISORUN_EMULATOR_EGRESS_PORT: String(port) } })
  })
  afterAll(async () => {
    await emu?.stop()
    await new Promise((r) => squatter?.close(r))
  })

  const networksOf = async (instanceId: string) =>
    docker.listNetworks({ filters: { label: [`isorun-emulator.instance=${instanceId}`] } })

  it('answers 409 and removes the isolated network it made for it', { timeout: 60_000 }, async () => {
    const isorun = new Isorun({ apiUrl: emu.apiUrl, apiKey: emu.apiKey })
    try {
      const err = await isorun.create({ image: 'busybox:latest', networkProfile: 'none' }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(IsorunError)
      expect((err as IsorunError).status).toBe(409)
      expect((err as IsorunError).body).toContain(`:${port}`)
      expect(await networksOf(emu.server.identity.instanceId)).toEqual([])
    } finally {
      isorun.close()
    }
  })
})
