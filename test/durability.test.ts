import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun } from 'isorun'
import { afterAll, expect, it } from 'vitest'
import { verifyAuditLog } from '../src/audit/verify.ts'
import { LABEL } from '../src/sandboxes/labels.ts'
import { apiUrlIn } from './support/banner.ts'
import { removeContainers } from './support/cleanup.ts'
import { describeWithDocker, docker, waitFor } from './support/sdk.ts'
import { readCount, startShellCounter } from './support/state.ts'

const cli = join(import.meta.dirname, '..', 'src', 'cli.ts')
const KEY = 'durability-key'
/**
 * The short-lived sandbox's idle timeout: it must outlast the leftovers' setup, the kill and the restart
 * (on a machine loaded by several test runs, starting the emulator alone took 11 s), which in turn take
 * longer than the polling's slack, so that a timer restarted from scratch is told apart from one that
 * kept counting.
 */
const IDLE_SEC = 30

/** The emulator as its own process, as a user runs it, so it can be killed with SIGKILL. */
async function launch(dataDir: string): Promise<{ child: ChildProcess; client: Isorun; log: () => string }> {
  const child = spawn(process.execPath, [cli, '--port', '0', '--data-dir', dataDir, '--log-level', 'info'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const apiUrl = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const url = apiUrlIn(out)
      if (url) {
        clearInterval(timer)
        resolve(url)
      }
    }, 20)
    child.once('exit', (code) => reject(new Error(`emulator exited with ${code}: ${out}`)))
  })
  return { child, client: new Isorun({ apiUrl, apiKey: KEY }), log: () => out }
}

describeWithDocker('durability: kill -9 the emulator mid-work and restart it on the same data dir', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-durability-'))
  const children: ChildProcess[] = []
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL')
    await removeContainers([`${LABEL.dataDir}=${dataDir}`])
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('loses no sandbox, snapshot, history row or audit chain, keeps timers counting, and reaps only its own leftovers', async () => {
    const first = await launch(dataDir)
    children.push(first.child)
    const isorun = first.client

    const running = await isorun.create({
      image: 'busybox:latest',
      credentials: { SECRET_X: 'very-secret-value' },
    })
    await startShellCounter(running)
    await running.writeFile('/data/keep.txt', 'survives')
    await running.setTimeout(600)
    const sleepy = await isorun.create({ image: 'busybox:latest' })
    await startShellCounter(sleepy)
    await sleepy.hibernate()
    const snap = await running.snapshot()
    const gone = await isorun.create({ image: 'busybox:latest' })
    const goneResult = await gone.destroy()
    const shortLived = await isorun.create({ image: 'busybox:latest', timeoutSec: IDLE_SEC })
    const beforeKill = Date.now()

    // Leftovers: a container this emulator made but no longer knows (its state file is gone, as after
    // a create cut short), and a container someone else made, which must never be touched.
    const orphan = await isorun.create({ image: 'busybox:latest' })
    rmSync(join(dataDir, 'sandboxes', `${orphan.id}.json`))
    const foreign = await docker.createContainer({
      Image: 'busybox:latest',
      Entrypoint: ['sleep', '600'],
      Labels: { 'some-other-tool': '1' },
    })
    await foreign.start()

    first.child.kill('SIGKILL')
    await new Promise((r) => first.child.once('exit', r))

    const second = await launch(dataDir)
    const restartedAt = Date.now()
    children.push(second.child)
    const again = second.client
    try {
      const ids = (await again.list()).map((s) => s.id)
      expect(ids.filter((id) => id !== shortLived.id).sort()).toEqual([running.id, sleepy.id].sort())
      // The short-lived one too, unless its idle timeout (which kept counting through the kill) passed
      // while a loaded machine restarted; a lost one is told apart below: it would be gone early.
      if (Date.now() - beforeKill < IDLE_SEC * 1000 - 2_000) expect(ids).toContain(shortLived.id)
      expect((await again.get(sleepy.id).then((s) => s?.info()))?.status).toBe('hibernated')

      // Running sandboxes keep their files and processes; the credential is still masked in the audit log.
      const r = await again.get(running.id)
      expect(await r?.readFile('/data/keep.txt')).toBe('survives')
      expect(await readCount(r as NonNullable<typeof r>)).toBeGreaterThan(3)
      await r?.exec('echo very-secret-value')

      // The hibernated one resumes with its memory (CRIU) or its paused processes.
      const h = await again.get(sleepy.id)
      await h?.resume()
      const c1 = await readCount(h as NonNullable<typeof h>)
      await new Promise((res) => setTimeout(res, 400))
      expect(await readCount(h as NonNullable<typeof h>)).toBeGreaterThan(c1)

      // The snapshot is still listed and restorable.
      expect((await again.listSnapshots()).map((s) => s.id)).toContain(snap.id)
      const restored = await again.restore(snap.id)
      expect(await restored.readFile('/data/keep.txt')).toBe('survives')

      // History survived with the figures destroy returned.
      const hist = (await again.history()).find((x) => x.id === gone.id)
      expect(hist?.costCents).toBe(goneResult.costCents)
      expect(hist?.uptimeMs).toBe(goneResult.uptimeMs)

      // The idle timer kept counting from the last activity before the kill: IDLE_SEC after it, not after
      // the restart.
      const destroyedAt = await waitFor(
        async () => ((await again.list()).some((s) => s.id === shortLived.id) ? undefined : Date.now()),
        IDLE_SEC * 1000 + 7_000,
        100,
      )
      expect(destroyedAt).toBeDefined()
      // Not early (IDLE_SEC after its last activity, which was before the kill) ...
      expect((destroyedAt ?? 0) - beforeKill).toBeGreaterThan(IDLE_SEC * 1000 - 2_000)
      // ... and not restarted from scratch, which would fire IDLE_SEC after the restart.
      expect(destroyedAt ?? Number.POSITIVE_INFINITY).toBeLessThan(restartedAt + IDLE_SEC * 1000 - 300)

      // The orphan was reaped and logged; the foreign container was left alone.
      expect(second.log()).toContain('no longer knows')
      expect(
        await docker.listContainers({ all: true, filters: { name: [`isorun-${orphan.id}`] } }),
      ).toHaveLength(0)
      expect((await foreign.inspect()).State.Running).toBe(true)

      // Every audit chain verifies, across the kill.
      const key = Buffer.from(readFileSync(join(dataDir, 'audit.key'), 'utf8').trim(), 'hex')
      for (const id of [running.id, sleepy.id, gone.id]) {
        const text = readFileSync(join(dataDir, 'audit', `${id}.jsonl`), 'utf8')
        expect(verifyAuditLog(text, key).ok).toBe(true)
        expect(text).not.toContain('very-secret-value')
      }
      const runningLog = await r?.auditLog()
      expect(runningLog?.at(-1)?.event).toBe('exec.end')

      for (const s of [r, h, restored]) await s?.destroy()
      await again.deleteSnapshot(snap.id)
    } finally {
      await foreign.remove({ force: true })
      second.child.kill('SIGTERM')
    }
    // Two emulator starts, a kill, and an idle timeout waited out in real time.
  }, 180_000)
})
