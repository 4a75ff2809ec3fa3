import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Isorun } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { FS_VIEW, FS_VIEW_LABEL } from '../src/sandboxes/fs-view.ts'
import { LABEL } from '../src/sandboxes/labels.ts'
import { startEmulator } from '../src/testing.ts'
import { apiUrlIn } from './support/banner.ts'
import { engineEnv } from './support/engine.ts'
import {
  containerOf,
  describeOnEngine,
  describeWithDocker,
  docker,
  newClient,
  sandboxTracker,
  waitFor,
} from './support/sdk.ts'

const run = promisify(execFile)

/** A TCP port free on both loopbacks now (the containerised emulator takes it on the host's network). */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '::1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
const repoRoot = join(import.meta.dirname, '..')

/**
 * The image the top-level Dockerfile makes (through scripts/docker-image.sh), run as README's "Run in
 * Docker" says, and driven through the real SDK from the host: the seed Quickstart, url(port), and the
 * honest degradation without CRIU. Its tag and container are this run's own and removed at the end.
 */
describeOnEngine(
  'docker',
  'the image runs its emulator on the Docker socket it is given',
  'the emulator as a Docker image',
  () => {
    const suffix = randomBytes(4).toString('hex')
    const tag = `isorun-emulator:test-${suffix}`
    const name = `isorun-emulator-test-${suffix}`
    let dataDir = ''
    const track = sandboxTracker()
    let apiUrl = ''
    let adminPort = 0
    let client: Isorun | undefined
    let hostSandboxId = ''

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'isorun-docker-image-'))
      // A sandbox of the test run's own emulator, whose data dir the containerised one cannot see: it
      // must survive that emulator's start (its recovery reaps only leftovers it can judge).
      hostSandboxId = track(await newClient().create({ image: 'busybox:latest' })).id

      // Not niced: at nice 19 the build starved behind CI's busy loops (.ci/busy) and hit its timeout.
      await run('bash', [join(repoRoot, 'scripts', 'docker-image.sh'), tag], {
        timeout: 420_000,
        maxBuffer: 16 * 1024 * 1024,
      })
      const rootDir = (await docker.info()).DockerRootDir as string
      const port = await freePort()
      adminPort = await freePort()
      // docs/docker.md's command, with this run's names, a temp data dir, a free port, and no warm pool.
      await run('docker', [
        'run',
        '-d',
        '--name',
        name,
        '--network',
        'host',
        '-v',
        '/var/run/docker.sock:/var/run/docker.sock',
        '-v',
        `${rootDir}:${rootDir}`,
        '-v',
        `${dataDir}:/data`,
        '-e',
        `ISORUN_EMULATOR_PORT=${port}`,
        '-e',
        `ISORUN_EMULATOR_ADMIN_PORT=${adminPort}`,
        '-e',
        'ISORUN_EMULATOR_POOL=0',
        tag,
      ])
      apiUrl = `http://[::1]:${port}`
      const healthy = await waitFor(
        async () =>
          fetch(`${apiUrl}/_emulator/health`).then(
            (r) => (r.ok ? true : undefined),
            () => undefined,
          ),
        30_000,
        200,
      )
      if (!healthy) {
        const logs = await run('docker', ['logs', name]).catch((e: { stderr?: string }) => e)
        throw new Error(`the containerised emulator did not become healthy: ${JSON.stringify(logs)}`)
      }
      client = new Isorun({ apiUrl, apiKey: 'isorun_local_dev' })
    }, 480_000)

    afterAll(async () => {
      client?.close()
      // docker stop: SIGTERM, the CLI closes cleanly; then whatever its sandboxes left, the container, the tag.
      await run('docker', ['stop', '-t', '10', name]).catch(() => undefined)
      let instanceId = ''
      try {
        if (dataDir) instanceId = JSON.parse(readFileSync(join(dataDir, 'instance.json'), 'utf8')).instanceId
      } catch {
        // never started
      }
      if (instanceId) {
        const left = await docker.listContainers({
          all: true,
          filters: { label: [`${LABEL.instance}=${instanceId}`] },
        })
        await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true })))
      }
      await run('docker', ['rm', '-f', name]).catch(() => undefined)
      await run('docker', ['rmi', tag]).catch(() => undefined)
      if (dataDir) rmSync(dataDir, { recursive: true, force: true })
    }, 60_000)

    it('is node:22-slim plus the app, listening on loopback, and prints the URL to use', async () => {
      const image = await docker.getImage(tag).inspect()
      expect((image.Config.Env ?? []).filter((e) => e.startsWith('ISORUN_EMULATOR_HOST='))).toEqual([])
      expect(image.Config.Entrypoint).toEqual(['node', '/opt/isorun-emulator/dist/cli.js'])
      // No label of the emulator's own namespace on the image: its container must never look like a sandbox.
      expect(Object.keys(image.Config.Labels ?? {}).filter((k) => k === LABEL.app)).toEqual([])
      const { stdout } = await run('docker', ['logs', name])
      expect(apiUrlIn(stdout)).toBe(apiUrl)
      expect(stdout).toContain(`Dashboard: http://[::1]:${adminPort}/_emulator/ui`)
      expect((await fetch(`http://[::1]:${adminPort}/_emulator/ui`)).status).toBe(200)
    })

    it('refuses to listen beyond loopback without an admin token, as on the host', async () => {
      const refused = await run('docker', ['run', '--rm', '-e', 'ISORUN_EMULATOR_HOST=0.0.0.0', tag]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      )
      // A usage error (the setting refused), not a start failure.
      expect(refused.code).toBe(2)
      expect(refused.stderr).toContain('ISORUN_EMULATOR_ADMIN_TOKEN')
    })

    it('is out of its sandboxes’ reach: a guest cannot connect to it', async () => {
      const isorun = client as Isorun
      const s = await isorun.create({ image: 'busybox:latest' })
      try {
        // The host as the guest sees it (its gateway): neither the API's port nor the dashboard's.
        for (const port of [new URL(apiUrl).port, String(adminPort)]) {
          const probe = await s.exec(
            `gw=$(ip route | awk '/^default/ {print $3}'); echo "gateway $gw"; ` +
              `timeout 5 wget -q -O- http://$gw:${port}/_emulator/health; echo "exit $?"`,
            30,
          )
          expect(probe.stdout).toMatch(/^gateway \d+\.\d+\.\d+\.\d+$/m)
          expect(probe.stdout).not.toContain('"ok"')
          // Refused (1), not a crash (139) nor a hang cut short by timeout (143).
          expect(probe.stdout).toMatch(/^exit 1$/m)
          expect(probe.stderr).toMatch(/refused/i)
        }
      } finally {
        await s.destroy()
      }
    })

    it('runs the seed Quickstart through the real SDK', async () => {
      const isorun = client as Isorun
      const sandbox = await isorun.create({ image: 'node:22-slim' })
      try {
        const { stdout, exitCode } = await sandbox.exec('node -v')
        expect(exitCode).toBe(0)
        expect(stdout).toMatch(/^v22\.\d+\.\d+\n$/)
      } finally {
        const result = await sandbox.destroy()
        expect(result.status).toBe('destroyed')
      }
      expect(await isorun.get(sandbox.id)).toBeNull()
    })

    it('serves url(port) from inside its container', async () => {
      const isorun = client as Isorun
      const s = await isorun.create({ image: 'busybox:latest' })
      try {
        await s.exec(
          'mkdir -p /w && echo served > /w/index.html && (httpd -f -p 8080 -h /w >/dev/null 2>&1 &)',
        )
        const body = await waitFor(async () => {
          const res = await fetch(s.url(8080, '/index.html')).catch(() => undefined)
          return res?.ok ? res.text() : undefined
        }, 10_000)
        expect(body).toBe('served\n')
      } finally {
        await s.destroy()
      }
    })

    it('has no CRIU, says so, and degrades: files-only snapshots, hibernate pauses', async () => {
      const caps = (await (await fetch(`${apiUrl}/_emulator/capabilities`)).json()) as {
        memory_state: { criu: boolean; reason: string; snapshot: string; hibernate: string }
      }
      expect(caps.memory_state.criu).toBe(false)
      expect(caps.memory_state.reason).toMatch(/criu is not on the emulator's PATH/)
      expect(caps.memory_state.snapshot).toBe('files')
      expect(caps.memory_state.hibernate).toBe('pause')

      const isorun = client as Isorun
      const s = await isorun.create({ image: 'busybox:latest' })
      try {
        await s.writeFile('/tmp/kept.txt', 'kept')
        const snap = await s.snapshot()
        const listed = (await (
          await fetch(`${apiUrl}/v1/snapshots`, { headers: { authorization: 'Bearer isorun_local_dev' } })
        ).json()) as { snapshots: { id: string; memory: boolean }[] }
        expect(listed.snapshots.find((x) => x.id === snap.id)?.memory).toBe(false)
        const restored = await isorun.restore(snap.id)
        expect(await restored.readFile('/tmp/kept.txt')).toBe('kept')
        await restored.destroy()
        await isorun.deleteSnapshot(snap.id)
        await s.hibernate()
        expect((await s.info()).status).toBe('hibernated')
        await s.resume()
        expect((await s.exec('echo awake')).stdout).toBe('awake\n')
      } finally {
        await s.destroy()
      }
    })

    it('left the host emulator’s sandbox alone when it started', async () => {
      expect((await containerOf(hostSandboxId))?.State).toBe('running')
    })

    // Last: it stops the containerised emulator.
    it('stops within docker stop’s 10 s, answering the exec in flight first', async () => {
      const s = await (client as Isorun).create({ image: 'busybox:latest' })
      const call = fetch(`${apiUrl}/v1/runs/${s.id}/exec`, {
        method: 'POST',
        headers: { authorization: 'Bearer isorun_local_dev', 'content-type': 'application/json' },
        body: JSON.stringify({ command: 'touch /tmp/started; sleep 2; echo done' }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as { stdout?: string } }))
      const started = await waitFor(
        async () =>
          (await s.exec('test -e /tmp/started && echo yes')).stdout === 'yes\n' ? true : undefined,
        20_000,
      )
      expect(started).toBe(true)
      const before = performance.now()
      await run('docker', ['stop', '-t', '10', name])
      const took = performance.now() - before
      const answer = await call
      expect(answer.status).toBe(200)
      expect(answer.body.stdout).toBe('done\n')
      // Exit code 0: the emulator closed by itself; 137 would be docker's SIGKILL after the 10 s.
      const state = (await docker.getContainer(name).inspect()).State
      expect(state.ExitCode, `stopped after ${Math.round(took)} ms`).toBe(0)
      expect(took).toBeLessThan(10_000)
      const { stdout: logs } = await run('docker', ['logs', name])
      const closing = logs.split('\n').filter((line) => /shut|second signal|closing/.test(line))
      console.log(
        `[shutdown] docker stop with an exec in flight: ${Math.round(took)} ms\n${closing.join('\n')}`,
      )
    })
  },
)

/**
 * The reaping rule the image needs: an emulator removes another one's leftovers for a missing data dir
 * only when they were made where the same files are visible (same fs view), never across a container.
 */
describeWithDocker('reaping leftovers across file-system views', () => {
  it('reaps a leftover of its own view whose data dir is gone, and never one from another view', async () => {
    const made: string[] = []
    const leftover = async (view: string) => {
      const c = await docker.createContainer({
        Image: 'busybox:latest',
        Entrypoint: ['sleep', '600'],
        Labels: {
          [LABEL.app]: '1',
          [LABEL.instance]: `gone${randomBytes(6).toString('hex')}`,
          [LABEL.dataDir]: join(tmpdir(), `isorun-never-existed-${randomBytes(4).toString('hex')}`),
          [FS_VIEW_LABEL]: view,
        },
      })
      made.push(c.id)
      return c.id
    }
    try {
      const sameView = await leftover(FS_VIEW)
      const otherView = await leftover('a-container/mnt:[1]')
      // Reaping is done at start.
      await (await startEmulator({ env: { ...engineEnv(), ISORUN_EMULATOR_LOG_LEVEL: 'silent' } })).stop()
      const exists = async (id: string) =>
        docker
          .getContainer(id)
          .inspect()
          .then(
            () => true,
            () => false,
          )
      expect(await exists(sameView)).toBe(false)
      expect(await exists(otherView)).toBe(true)
    } finally {
      await Promise.all(
        made.map((id) =>
          docker
            .getContainer(id)
            .remove({ force: true })
            .catch(() => undefined),
        ),
      )
    }
  })
})
