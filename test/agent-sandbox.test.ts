import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import type { Sandbox } from 'isorun'
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest'
import { testEngine } from './support/engine.ts'
import {
  apiUrl,
  containerOf,
  dataDir,
  describeWithDocker,
  docker,
  newApiKey,
  newClient,
  sandboxTracker,
  waitFor,
} from './support/sdk.ts'
import { memoryCapability } from './support/state.ts'

/**
 * ISORUN_EMULATOR_AGENT=off runs this file against docker exec, and Podman offers no agent (see
 * docs/agent.md): there only the agent's own checks skip.
 */
const agentOn = process.env.ISORUN_EMULATOR_AGENT !== 'off' && testEngine === 'docker'
const withoutAgent = testEngine === 'docker' ? 'docker-exec' : 'engine-exec'
const noAgentReason =
  testEngine !== 'docker' ? `${testEngine} offers no sandbox agent` : 'ISORUN_EMULATOR_AGENT=off'
/** The agent's own checks: skipped, saying why, where no agent runs. */
const itAgent = (name: string, ...rest: [(ctx: TestContext) => unknown, number?]) =>
  agentOn ? it(name, ...rest) : it.skip(`${name} [skipped: ${noAgentReason}]`, ...rest)

/** The sandbox's exec transport, as the emulator reports it. */
async function transport(key: string, s: Sandbox): Promise<{ transport: string; reason: string }> {
  const res = await fetch(`${apiUrl}/_emulator/runs/${s.id}/exec-transport`, {
    headers: { authorization: `Bearer ${key}` },
  })
  expect(res.status).toBe(200)
  return (await res.json()) as { transport: string; reason: string }
}

/** Whether an exec really went through the agent: its shell's parent is then a process of the sandbox
 * (the agent), where Docker's exec has none (PPID 0). */
async function servedByAgent(s: Sandbox): Promise<boolean> {
  return Number((await s.exec('echo $PPID')).stdout.trim()) > 0
}

/** The same command through Docker's own exec API, as the emulator's fallback runs it. */
async function dockerExec(runId: string, command: string): Promise<string> {
  const info = await containerOf(runId)
  if (!info) throw new Error(`no container for ${runId}`)
  const exec = await docker.getContainer(info.Id).exec({
    Cmd: ['/bin/sh', '-c', command],
    AttachStdout: true,
    AttachStderr: true,
  })
  const stream = (await exec.start({ hijack: true, stdin: false })) as Duplex
  const chunks: Buffer[] = []
  await new Promise<void>((resolve) => {
    stream.on('data', (d: Buffer) => chunks.push(d))
    stream.once('end', resolve)
    stream.once('close', resolve)
  })
  // Docker's stream frames (8-byte headers); stdout only.
  const all = Buffer.concat(chunks)
  const out: Buffer[] = []
  for (let at = 0; at + 8 <= all.length; ) {
    const size = all.readUInt32BE(at + 4)
    if (all[at] === 1) out.push(all.subarray(at + 8, at + 8 + size))
    at += 8 + size
  }
  return Buffer.concat(out).toString('utf8')
}

describeWithDocker('exec and files through the sandbox agent', () => {
  const key = newApiKey()
  const isorun = newClient(key)
  const track = sandboxTracker()
  const sandbox = () => isorun.create({ image: 'busybox:latest' }).then(track)

  it('reports the transport each sandbox uses', async () => {
    const s = await sandbox()
    await s.exec('true')
    const t = await transport(key, s)
    expect(t.transport).toBe(agentOn ? 'agent' : withoutAgent)
    expect(await servedByAgent(s)).toBe(agentOn)
    const other = await fetch(`${apiUrl}/_emulator/runs/${s.id}/exec-transport`, {
      headers: { authorization: `Bearer ${newApiKey()}` },
    })
    expect(other.status).toBe(404)
  })

  itAgent(
    'gives commands what docker exec gives them: environment, user, cgroup, capabilities, seccomp',
    async () => {
      const s = track(
        await isorun.create({ image: 'busybox:latest', credentials: { API_TOKEN: 'secret-value' } }),
      )
      const probe =
        'env | grep -v -e ^ISORUN_EXEC_ID= -e ^PWD= -e ^SHLVL= -e ^_= | sort; id; pwd; umask; cat /proc/self/cgroup; grep -e ^Cap -e ^Seccomp -e ^NoNewPrivs /proc/self/status; ulimit -n'
      const viaAgent = (await s.exec(probe)).stdout
      expect(await servedByAgent(s)).toBe(true)
      expect(viaAgent).toContain('API_TOKEN=secret-value')
      expect(viaAgent).toMatch(/Seccomp:\s+2/)
      expect(viaAgent).toBe(await dockerExec(s.id, probe))
    },
  )

  itAgent(
    'keeps the socket out of the guest’s reach: read-only, in a directory of its own, 0700 above',
    async () => {
      const [a, b] = await Promise.all([sandbox(), sandbox()])
      const r = await a.exec(
        'rm -f /.isorun/run/agent.sock; ln -s /etc/passwd /.isorun/run/x; echo > /.isorun/agent',
      )
      expect(r.stderr).toMatch(/Read-only file system/)
      expect((await a.exec('ls /.isorun/run')).stdout).toBe('agent.sock\n')
      expect(await servedByAgent(a)).toBe(true)
      // Each sandbox mounts its own directory; none of them holds another's socket.
      const sources = await Promise.all(
        [a, b].map(async (s) => {
          const info = await docker.getContainer((await containerOf(s.id))?.Id ?? '').inspect()
          return info.Mounts.filter((m) => m.Destination.startsWith('/.isorun')).map((m) => [
            m.Destination,
            m.Source,
            m.RW,
          ])
        }),
      )
      const dirs = sources.map((m) => m.find(([d]) => d === '/.isorun/run')?.[1])
      expect(dirs[0]).toBeTruthy()
      expect(dirs[0]).not.toBe(dirs[1])
      for (const m of sources.flat()) expect(m[2]).toBe(false)
      expect(statSync(join(dataDir, 'agent')).mode & 0o777).toBe(0o700)
    },
  )

  itAgent(
    'falls back to docker exec when the guest kills its agent, and starts the agent again',
    async () => {
      const s = await sandbox()
      expect(await servedByAgent(s)).toBe(true)
      const agentPid = (await s.exec('echo $PPID')).stdout.trim()
      // Killed from a detached process, after this exec has answered; the next exec comes once it is
      // dead (asked through Docker's own exec: on a busy machine the kill can come late).
      await s.exec(`(sleep 0.2; kill -9 ${agentPid}; touch /tmp/agent-killed) >/dev/null 2>&1 &`)
      await waitFor(
        async () =>
          (await dockerExec(s.id, 'test -f /tmp/agent-killed && echo yes')) === 'yes\n' ? true : undefined,
        20_000,
        100,
      )
      const r = await s.exec('echo still here')
      expect(r).toEqual({ exitCode: 0, stdout: 'still here\n', stderr: '' })
      expect(await s.readFile('/etc/hostname')).toContain('sandbox')
      // The emulator starts it again through docker exec; it shows up under the sandbox's init.
      const back = await waitFor(async () => ((await servedByAgent(s)) ? true : undefined), 20_000, 500)
      expect(back).toBe(true)
      expect((await transport(key, s)).transport).toBe('agent')
      // The agent started again is as checkpointable as the first (no stdio of the engine's exec held).
      if ((await memoryCapability()).criu) {
        const snap = await s.snapshot()
        expect((await track(await isorun.restore(snap.id)).exec('echo restored')).stdout).toBe('restored\n')
        await isorun.deleteSnapshot(snap.id)
      }
    },
  )

  it('ends an exec in flight promptly when its sandbox is destroyed', async () => {
    const s = await sandbox()
    const started = Date.now()
    const pending = s.exec('echo started; touch /tmp/started; sleep 60')
    await waitFor(
      async () => ((await s.exec('test -f /tmp/started')).exitCode === 0 ? true : undefined),
      10_000,
    )
    await s.destroy()
    // As docker exec answers it: the command was killed with its sandbox.
    const outcome = await pending.catch((e: Error) => e)
    if (testEngine === 'docker') expect(outcome).toEqual({ exitCode: 137, stdout: 'started\n', stderr: '' })
    expect(Date.now() - started).toBeLessThan(20_000)
  })

  describe('in an image with nothing in it but a static `sleep` (FROM scratch: no shell, no libc)', () => {
    const tag = `isorun-agent-test-scratch:${randomBytes(4).toString('hex')}`
    let s: Sandbox | undefined

    beforeAll(() => {
      const ctx = mkdtempSync(join(tmpdir(), 'isorun-agent-scratch-'))
      writeFileSync(join(ctx, 'hello.txt'), 'from an empty image\n')
      // The sandbox's keep-alive is the image's `sleep` (an image without one is refused, agent or not):
      // Debian's static busybox, which runs as `sleep` under that name.
      copyFileSync('/bin/busybox', join(ctx, 'sleep'))
      writeFileSync(
        join(ctx, 'Dockerfile'),
        'FROM scratch\nCOPY sleep /bin/sleep\nCOPY hello.txt /data/hello.txt\n',
      )
      const env = { ...process.env, DOCKER_BUILDKIT: process.env.DOCKER_BUILDKIT ?? '0' }
      execFileSync('docker', ['build', '--network', 'none', '-q', '-t', tag, ctx], { env, stdio: 'ignore' })
      rmSync(ctx, { recursive: true, force: true })
    })
    afterAll(async () => {
      if (s) await s.destroy().catch(() => {})
      await docker
        .getImage(tag)
        .remove({ force: true })
        .catch(() => {})
    })

    itAgent('runs as a sandbox: files work, and exec says there is no /bin/sh', async () => {
      s = await isorun.create({ image: tag })
      expect(await s.readFile('/data/hello.txt')).toBe('from an empty image\n')
      await s.writeFile('/data/new/file.txt', 'written')
      expect(await s.readFile('/data/new/file.txt')).toBe('written')
      expect((await s.readdir('/data')).map((e) => e.name).sort()).toEqual(['hello.txt', 'new'])
      const r = await s.exec('echo hi')
      expect(r.exitCode).toBe(127)
      expect(r.stderr).toContain('/bin/sh')
    })
  })

  describe('across checkpoints (CRIU)', () => {
    let criu = false
    beforeAll(async () => {
      criu = (await memoryCapability()).criu
    })

    // One checkpoint operation per test: several in one were more than a test's minute on a busy machine.
    itAgent(
      'serves exec right after a restore, through the agent checkpointed with the sandbox',
      async (ctx) => {
        if (!criu) ctx.skip()
        const parent = await sandbox()
        await parent.exec('echo kept > /tmp/state')
        const snap = await parent.snapshot()
        const restored = track(await isorun.restore(snap.id))
        expect(await servedByAgent(restored)).toBe(true)
        expect((await restored.exec('cat /tmp/state')).stdout).toBe('kept\n')
        // The restored agent is the checkpointed process itself, not a new one.
        const [agentInParent, agentInCopy] = await Promise.all(
          [parent, restored].map(async (x) => (await x.exec('echo $PPID')).stdout),
        )
        expect(agentInCopy).toBe(agentInParent)
        await isorun.deleteSnapshot(snap.id)
      },
    )

    itAgent('serves exec right after a fork, in every child', async (ctx) => {
      if (!criu) ctx.skip()
      const parent = await sandbox()
      await parent.exec('echo kept > /tmp/state')
      const kids = track(await parent.fork(2))
      for (const kid of kids) {
        expect(await servedByAgent(kid)).toBe(true)
        expect((await kid.exec('cat /tmp/state')).stdout).toBe('kept\n')
      }
    })

    itAgent('serves exec right after a resume', async (ctx) => {
      if (!criu) ctx.skip()
      const s = await sandbox()
      const before = (await s.exec('echo $PPID')).stdout
      await s.hibernate()
      await s.resume()
      expect(await servedByAgent(s)).toBe(true)
      expect((await s.exec('echo $PPID')).stdout).toBe(before)
    })

    itAgent(
      'checkpoints a sandbox whose agent is still connecting (a snapshot right after create)',
      async (ctx) => {
        if (!criu) ctx.skip()
        for (let i = 0; i < 3; i++) {
          const s = await sandbox()
          const snap = await s.snapshot()
          expect(snap.id).toBeTruthy()
          expect(await servedByAgent(s)).toBe(true)
          await isorun.deleteSnapshot(snap.id)
          await s.destroy()
        }
      },
    )

    itAgent(
      'an exec in flight during a snapshot finishes in the parent and does not run on in the copy',
      async (ctx) => {
        if (!criu) ctx.skip()
        const s = await sandbox()
        const marker = `sleep ${3 + Math.floor(Math.random() * 1000) / 1000}`
        const pending = s.exec(`${marker}; echo finished`)
        await new Promise((r) => setTimeout(r, 500))
        const snap = await s.snapshot()
        const copy = track(await isorun.restore(snap.id))
        expect((await pending).stdout).toBe('finished\n')
        const ps = await waitFor(
          async () => {
            const out = (await copy.exec('ps -o args')).stdout
            return out.includes(marker) ? undefined : out
          },
          5_000,
          200,
        )
        expect(ps).toBeDefined()
        await isorun.deleteSnapshot(snap.id)
      },
    )
  })
})
