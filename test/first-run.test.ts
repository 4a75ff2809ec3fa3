import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Docker from 'dockerode'
import { afterAll, describe, expect, it } from 'vitest'
import { LABEL } from '../src/sandboxes/labels.ts'
import { removeContainers } from './support/cleanup.ts'
import { engineClient, testEngine } from './support/engine.ts'
import { describeWithDocker } from './support/sdk.ts'

const repoRoot = join(import.meta.dirname, '..')

/** The README's Quickstart: its first JavaScript or TypeScript block that creates a sandbox, verbatim. */
function readmeQuickstart(): string {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')
  const block = [...readme.matchAll(/```(?:ts|js)\n([\s\S]*?)```/g)]
    .map((m) => m[1] ?? '')
    .find((code) => code.includes('isorun.create('))
  if (!block) throw new Error('README.md has no ```js or ```ts block that creates a sandbox')
  return block
}

/**
 * A first start on a machine with no images. The engine is shared (other test runs use node:22-slim
 * and busybox), so "no images" is a stand-in repository of this test's own, fresh and unique: nothing
 * under it exists, and the emulator resolves node:22-slim to it. The clone is of this commit; its
 * node_modules are this checkout's (what `npm ci` would install), so only `npm start` is timed.
 */
describeWithDocker('the first run: a fresh clone, no images, the README', () => {
  const namespace = `isorun-first-run-${randomBytes(4).toString('hex')}`
  const dir = mkdtempSync(join(tmpdir(), 'isorun-first-run-'))
  const clone = join(dir, 'clone')
  const dataDir = join(dir, 'data')
  let emulator: ChildProcess | undefined
  afterAll(async () => {
    if (emulator?.pid && emulator.exitCode === null) process.kill(-emulator.pid, 'SIGKILL')
    await removeContainers([`${LABEL.dataDir}=${dataDir}`])
    // What this test built: its own stand-ins, in Docker and (imported) in Podman.
    const engines = testEngine === 'docker' ? [new Docker()] : [new Docker(), engineClient()]
    for (const engine of engines) {
      for (const image of [`${namespace}/node:22`, `${namespace}/python:3`]) {
        // Podman names what it loads from a Docker archive localhost/<name> as well.
        for (const name of [`docker.io/${image}`, `localhost/${image}`]) {
          await engine
            .getImage(name)
            .remove({ force: true })
            .catch(() => undefined)
        }
      }
    }
    rmSync(dir, { recursive: true, force: true })
  })

  it('npm start builds the images offline with progress, then the Quickstart runs', {
    timeout: 600_000,
  }, async () => {
    execFileSync('git', ['clone', '--quiet', '--no-hardlinks', repoRoot, clone])
    symlinkSync(join(repoRoot, 'node_modules'), join(clone, 'node_modules'))
    for (const image of [`${namespace}/node:22`, `${namespace}/python:3`]) {
      expect(
        await new Docker()
          .getImage(image)
          .inspect()
          .catch(() => undefined),
      ).toBeUndefined()
    }

    const began = performance.now()
    emulator = spawn('npm', ['start'], {
      cwd: clone,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ISORUN_EMULATOR_PORT: '0',
        ISORUN_EMULATOR_DATA_DIR: dataDir,
        ISORUN_EMULATOR_STAND_INS: namespace,
        ISORUN_EMULATOR_LOG_LEVEL: 'info',
      },
    })
    let out = ''
    emulator.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
    })
    emulator.stderr?.on('data', (d: Buffer) => {
      out += d.toString()
    })
    const banner = await new Promise<{ url: string; key: string }>((resolve, reject) => {
      const timer = setInterval(() => {
        // The banner's lines to paste: `export ISORUN_API_URL='...'` (or without export and quotes).
        const url = /^(?:export )?ISORUN_API_URL='?([^'\s]+)'?$/m.exec(out)?.[1]
        const key = /^(?:export )?ISORUN_API_KEY='?([^'\s]+)'?$/m.exec(out)?.[1]
        if (url && key) {
          clearInterval(timer)
          resolve({ url, key })
        } else if (emulator?.exitCode !== null) {
          clearInterval(timer)
          reject(new Error(`npm start exited (${emulator?.exitCode}):\n${out}`))
        }
      }, 100)
    })
    const ready = performance.now()
    // Progress while it built, before it said it was ready.
    const beforeBanner = out.slice(0, out.indexOf('ISORUN_API_URL='))
    expect(beforeBanner).toContain(`first start: building the stand-in images ${namespace}/node:22`)
    expect(beforeBanner).toContain(`building ${namespace}/node:22: docker build`)
    expect(beforeBanner).toContain('stand-in images ready')

    const script = join(clone, 'quickstart.mts')
    writeFileSync(script, readmeQuickstart())
    const node = join(repoRoot, 'node_modules', '.bin', 'node')
    const run = execFileSync(node, [script], {
      cwd: clone,
      env: { ...process.env, ISORUN_API_URL: banner.url, ISORUN_API_KEY: banner.key },
      encoding: 'utf8',
      timeout: 120_000,
    })
    const done = performance.now()
    // The sandbox ran the stand-in, and the record said so.
    expect(out).toMatch(new RegExp(`"image":"${namespace}/node:22"`))
    if (run.trim()) expect(run).toMatch(/v22\.\d+\.\d+/)
    console.log(
      `[first-run] ${testEngine}: npm start to ready ${((ready - began) / 1000).toFixed(1)} s, to a finished Quickstart ${((done - began) / 1000).toFixed(1)} s (no images; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`,
    )
  })
})

describe('the first run on a host without Docker', () => {
  it('says the one command that provisions it, and exits non-zero', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'isorun-no-docker-'))
    try {
      const node = join(repoRoot, 'node_modules', '.bin', 'node')
      const result = (() => {
        try {
          execFileSync(node, [join(repoRoot, 'src', 'cli.ts'), '--port', '0', '--data-dir', dataDir], {
            env: {
              ...process.env,
              ISORUN_EMULATOR_ENGINE: 'docker',
              DOCKER_HOST: `unix://${join(dataDir, 'no-docker.sock')}`,
            },
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'pipe'],
            timeout: 60_000,
          })
          return { status: 0, stderr: '' }
        } catch (err) {
          return err as { status: number; stderr: string }
        }
      })()
      expect(result.status).not.toBe(0)
      expect(result.stderr).toContain('the container engine is not reachable')
      expect(result.stderr).toContain(`sudo bash ${join(repoRoot, 'scripts', 'provision.sh')}`)
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
