import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { Isorun } from 'isorun'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { LABEL } from '../src/sandboxes/labels.ts'
import { apiUrlIn } from './support/banner.ts'
import { removeContainers } from './support/cleanup.ts'
import { startGuest } from './support/guest.ts'
import { describeWithDocker, waitFor } from './support/sdk.ts'

const cli = join(import.meta.dirname, '..', 'src', 'cli.ts')
const KEY = 'isorun_shutdown_test'

interface Emulator {
  child: ChildProcessByStdio<null, Readable, Readable>
  port: number
  exited: Promise<{ code: number | null; at: number }>
  log: () => string
}

/** The real command (src/cli.ts) in a child process, on the given data dir, any free port, no pool. */
async function startEmulator(dataDir: string, env: Record<string, string> = {}): Promise<Emulator> {
  const child = spawn(
    process.execPath,
    [cli, '--port', '0', '--data-dir', dataDir, '--api-key', KEY, '--pool', '0', '--log-level', 'info'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  )
  let out = ''
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.once('exit', (code) => resolve({ code, at: performance.now() })),
  )
  const port = await Promise.race([
    waitFor(async () => /^http:\/\/\[::1\]:(\d+)$/.exec(apiUrlIn(out) ?? '')?.[1], 60_000, 20),
    exited.then(() => undefined),
  ])
  if (!port) throw new Error(`the emulator did not start: ${out}`)
  return { child, port: Number(port), exited, log: () => out }
}

/** An exec through plain HTTP on one listener; resolves to the status and stdout, or the network error. */
async function exec(
  base: string,
  id: string,
  command: string,
): Promise<{ status: number; stdout: string } | { error: string }> {
  try {
    const res = await fetch(`${base}/v1/runs/${id}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command }),
    })
    const body = (await res.json()) as { stdout?: string }
    return { status: res.status, stdout: body.stdout ?? '' }
  } catch (err) {
    return { error: `${(err as Error).message}: ${String((err as { cause?: unknown }).cause)}` }
  }
}

/**
 * SIGTERM (Ctrl-C, docker stop) on the real command: requests in flight on either loopback listener are
 * answered before the process exits, nothing waits forever, and a second signal ends it at once.
 */
describeWithDocker('shutting the emulator down', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-shutdown-test-'))
  let instanceId = ''
  let runId = ''
  const alive: Emulator[] = []

  const start = async (env?: Record<string, string>) => {
    const e = await startEmulator(dataDir, env)
    alive.push(e)
    return e
  }

  beforeAll(async () => {
    // One sandbox for the whole file: shutdown leaves it running and each new start adopts it.
    const e = await start()
    const res = await fetch(`http://[::1]:${e.port}/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'node:22-slim' }),
    })
    expect(res.status).toBe(201)
    runId = ((await res.json()) as { id: string }).id
    e.child.kill('SIGTERM')
    expect((await e.exited).code).toBe(0)
  }, 120_000)

  afterAll(async () => {
    for (const e of alive) e.child.kill('SIGKILL')
    const { readFileSync } = await import('node:fs')
    try {
      instanceId = JSON.parse(readFileSync(join(dataDir, 'instance.json'), 'utf8')).instanceId
    } catch {
      // never started
    }
    if (instanceId) await removeContainers([`${LABEL.instance}=${instanceId}`])
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('answers execs in flight on 127.0.0.1 and on [::1], then exits promptly', async () => {
    const e = await start()
    const v4 = `http://127.0.0.1:${e.port}`
    const v6 = `http://[::1]:${e.port}`
    const marker = `/tmp/started-${Date.now()}`
    const calls = [
      exec(v4, runId, `touch ${marker}-v4; sleep 3; echo done-v4`),
      exec(v6, runId, `touch ${marker}-v6; sleep 3; echo done-v6`),
    ]
    // Both commands are running in the guest before the signal.
    const running = await waitFor(async () => {
      const r = await exec(v6, runId, `test -e ${marker}-v4 && test -e ${marker}-v6 && echo yes`)
      return 'stdout' in r && r.stdout === 'yes\n' ? true : undefined
    }, 20_000)
    expect(running).toBe(true)
    const signalled = performance.now()
    e.child.kill('SIGTERM')
    const [onV4, onV6] = await Promise.all(calls)
    const answered = performance.now()
    const exit = await e.exited
    expect(onV4, e.log()).toEqual({ status: 200, stdout: 'done-v4\n' })
    expect(onV6, e.log()).toEqual({ status: 200, stdout: 'done-v6\n' })
    expect(exit.code).toBe(0)
    // Drained, then out promptly: the exit follows the last answer closely (closing touches no sandbox).
    expect(exit.at - answered).toBeLessThan(2_000)
    console.log(
      `[shutdown] SIGTERM -> last answer ${Math.round(answered - signalled)} ms, -> exit ${Math.round(exit.at - signalled)} ms`,
    )
  })

  it('refuses new connections while it drains', async () => {
    const e = await start()
    const v4 = `http://127.0.0.1:${e.port}`
    const marker = `/tmp/started-${Date.now()}`
    const call = exec(v4, runId, `touch ${marker}; sleep 2; echo done`)
    await waitFor(async () => {
      const r = await exec(`http://[::1]:${e.port}`, runId, `test -e ${marker} && echo yes`)
      return 'stdout' in r && r.stdout === 'yes\n' ? true : undefined
    }, 20_000)
    e.child.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 300))
    for (const host of ['127.0.0.1', '[::1]']) {
      const late = await fetch(`http://${host}:${e.port}/_emulator/health`).then(
        (r) => `status ${r.status}`,
        (err: { cause?: { code?: string } }) => err.cause?.code ?? 'error',
      )
      expect(late, host).toBe('ECONNREFUSED')
    }
    expect(await call).toEqual({ status: 200, stdout: 'done\n' })
    expect((await e.exited).code).toBe(0)
  })

  it('a second signal ends the process at once', async () => {
    const e = await start()
    const marker = `/tmp/started-${Date.now()}`
    const call = exec(`http://127.0.0.1:${e.port}`, runId, `touch ${marker}; sleep 60`)
    await waitFor(async () => {
      const r = await exec(`http://[::1]:${e.port}`, runId, `test -e ${marker} && echo yes`)
      return 'stdout' in r && r.stdout === 'yes\n' ? true : undefined
    }, 20_000)
    e.child.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 500))
    expect(e.child.exitCode, 'still draining after the first signal').toBeNull()
    const second = performance.now()
    e.child.kill('SIGINT')
    const exit = await e.exited
    expect(exit.at - second).toBeLessThan(1_000)
    expect(exit.code).not.toBe(0)
    expect(await call).toHaveProperty('error')
  })

  it('cuts what outlives the grace period: a long exec, a url(port) stream, a WebSocket', async () => {
    const e = await start({ ISORUN_EMULATOR_SHUTDOWN_GRACE_MS: '1500' })
    const v6 = `http://[::1]:${e.port}`
    const client = new Isorun({ apiUrl: v6, apiKey: KEY })
    try {
      const s = await client.get(runId)
      if (!s) throw new Error('the sandbox was not adopted')
      await startGuest(s, 'app.mjs', 8080, '/hello')
      // A server-sent event stream never ends by itself.
      const stream = await fetch(s.url(8080, '/sse?n=100000&interval=200'))
      expect(stream.status).toBe(200)
      const streamEnded = stream.text().then(
        () => 'ended',
        () => 'cut',
      )
      const ws = new WebSocket(s.url(8080, '/ws').replace(/^http/, 'ws'))
      const wsClosed = new Promise<string>((resolve) => ws.addEventListener('close', () => resolve('closed')))
      await new Promise<void>((resolve, reject) => {
        ws.addEventListener('open', () => resolve())
        ws.addEventListener('error', () => reject(new Error('WebSocket failed to open')))
      })
      const marker = `/tmp/started-${Date.now()}`
      const call = exec(`http://127.0.0.1:${e.port}`, runId, `touch ${marker}; sleep 60`)
      await waitFor(async () => {
        const r = await exec(v6, runId, `test -e ${marker} && echo yes`)
        return 'stdout' in r && r.stdout === 'yes\n' ? true : undefined
      }, 20_000)

      const signalled = performance.now()
      e.child.kill('SIGTERM')
      const exit = await e.exited
      expect(exit.code).toBe(0)
      // The grace period, then closing; far from the exec's 60 s.
      expect(exit.at - signalled).toBeGreaterThan(1_400)
      expect(exit.at - signalled).toBeLessThan(5_000)
      expect(await call).toHaveProperty('error')
      expect(await streamEnded).toMatch(/ended|cut/)
      expect(await wsClosed).toBe('closed')
      expect(e.log()).toMatch(/grace period/)
    } finally {
      client.close()
    }
  })
})
