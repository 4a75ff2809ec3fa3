import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun, IsorunError } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Capabilities } from '../src/capabilities.ts'
import { loadConfig } from '../src/config.ts'
import { resetSandboxes } from '../src/control/reset.ts'
import { says } from '../src/engine-abilities.ts'
import { parsePodmanUrl, podmanDockerClient } from '../src/podman/endpoint.ts'
import { LABEL } from '../src/sandboxes/labels.ts'
import { type RunningServer, startServer } from '../src/server.ts'
import { removeContainers } from './support/cleanup.ts'
import { describeOnEngine, waitFor } from './support/sdk.ts'
import { readCount, startShellCounter } from './support/state.ts'

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * Podman reached over TCP, as on another host: a second API service of this machine's Podman on a
 * loopback port, and an emulator that takes a TCP address for another host's (it neither reads the
 * engine's files or cgroups nor runs its CRIU). Memory snapshots still work: their checkpoints travel
 * as archives in the API's bodies.
 */
describeOnEngine(
  'podman',
  'a Podman API service on a TCP port',
  'Podman over TCP: memory snapshots without a shared file system',
  () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'isorun-podman-tcp-'))
    let service: ChildProcess | undefined
    let server: RunningServer
    let isorun: Isorun
    let url = ''

    beforeAll(async () => {
      url = `tcp://127.0.0.1:${await freePort()}`
      service = spawn('podman', ['system', 'service', '--time=0', url], { stdio: 'ignore' })
      const engine = podmanDockerClient(parsePodmanUrl(url))
      const up = await waitFor(
        () =>
          engine.ping().then(
            () => true,
            () => undefined,
          ),
        15_000,
      )
      if (!up) throw new Error(`podman system service did not answer on ${url}`)
      server = await startServer(
        loadConfig({
          ISORUN_EMULATOR_ENGINE: 'podman',
          ISORUN_EMULATOR_PODMAN_URL: url,
          // What a user names for a remote Debian host: its catatonit's real path (here, this host's).
          ISORUN_EMULATOR_PODMAN_INIT: realpathSync('/usr/libexec/podman/catatonit'),
          ISORUN_EMULATOR_PORT: '0',
          ISORUN_EMULATOR_DATA_DIR: dataDir,
          ISORUN_EMULATOR_LOG_LEVEL: 'warn',
          ISORUN_EMULATOR_POOL: '0',
        }),
      )
      isorun = new Isorun({ apiUrl: server.apiUrl, apiKey: 'podman-tcp' })
    })

    afterAll(async () => {
      isorun?.close()
      const instance = server?.identity.instanceId
      if (server) await resetSandboxes(server.sandboxes)
      await server?.close()
      if (instance) await removeContainers([`${LABEL.instance}=${instance}`])
      service?.kill('SIGTERM')
      rmSync(dataDir, { recursive: true, force: true })
    })

    it('names the engine and where it is, and says why memory checkpoints are not verified from here', async () => {
      const caps = (await (await fetch(`${server.apiUrl}/_emulator/capabilities`)).json()) as Capabilities
      expect(caps.engine).toMatchObject({ engine: 'podman', endpoint: url, remote: true })
      expect(caps.memory_state.criu).toBe(true)
      expect(caps.memory_state.reason).toMatch(/cannot check from here/)
      // The table's remote Podman column says what this emulator really does.
      const there = caps.engines.podman.remote
      expect(says(there.memory_snapshots)).toBe(true)
      expect(says(there.egress_policies)).toBe(caps.egress.enforced)
      expect(says(there.sandboxes_apart)).toBe(caps.engine?.sandboxNetwork?.isolated)
    })

    it('refuses egress policies with a 409 saying why: the proxy and the firewall would be on the other host', async () => {
      const err = await isorun
        .create({ image: 'busybox:latest', network: { allow: ['allowed.test'] } })
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(IsorunError)
      expect((err as IsorunError).status).toBe(409)
      expect((err as IsorunError).message).toMatch(/Podman is another host's/)
      const caps = (await (await fetch(`${server.apiUrl}/_emulator/capabilities`)).json()) as {
        egress: { enforced: boolean; note: string }
      }
      expect(caps.egress).toMatchObject({ enforced: false, note: expect.stringMatching(/another host's/) })
      expect(await isorun.list()).toEqual([])
    })

    it('snapshots, restores and forks with memory, and hibernates and resumes, over TCP', async () => {
      const s = await isorun.create({ image: 'busybox:latest' })
      await s.writeFile('/data/note.txt', 'over tcp')
      await startShellCounter(s)
      const snap = await s.snapshot()
      expect(snap.sizeBytes).toBeGreaterThan(0)
      const restored = await isorun.restore(snap.id)
      const [kid] = await s.fork(1)
      for (const child of [restored, kid]) {
        expect(await child?.readFile('/data/note.txt')).toBe('over tcp')
        // The loop carried on from memory: no exec started it in the child.
        const first = await readCount(child as NonNullable<typeof child>)
        expect(first).toBeGreaterThan(3)
        expect(
          await waitFor(
            async () => ((await readCount(child as NonNullable<typeof child>)) > first ? true : undefined),
            5_000,
          ),
        ).toBe(true)
      }
      await s.hibernate()
      expect((await s.info()).status).toBe('hibernated')
      await s.resume()
      const after = await readCount(s)
      expect(await waitFor(async () => ((await readCount(s)) > after ? true : undefined), 5_000)).toBe(true)
      // Usage comes from the stats API here (no cgroup files of the engine's host): still real figures.
      const result = await s.destroy()
      expect(result.cpuMs).toBeGreaterThan(0)
      for (const child of [restored, kid]) await child?.destroy()
      await isorun.deleteSnapshot(snap.id)
    })
  },
)
