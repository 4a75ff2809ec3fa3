import { execFile, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { LABEL } from '../src/sandboxes/labels.ts'
import { apiUrlIn } from './support/banner.ts'
import { removeContainers } from './support/cleanup.ts'
import { engineEnv } from './support/engine.ts'
import { installOffline, npm } from './support/offline-install.ts'
import { describeWithDocker } from './support/sdk.ts'

const repoRoot = join(import.meta.dirname, '..')

/**
 * The package as a user gets it: `npm pack` (which builds dist/), the tarball installed offline into a
 * project of its own, its bin run through npx, and its vitest globalSetup used by a test of that project.
 */
describeWithDocker('the packed tarball', () => {
  let work: string
  let project: string
  let tarball: string
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, ...engineEnv(), ISORUN_EMULATOR_POOL: '0' })

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'isorun-package-test-'))
    project = join(work, 'project')
    mkdirSync(project)
    await npm(repoRoot, ['pack', '--pack-destination', work], 300_000)
    const packed = readdirSync(work).find((f) => f.endsWith('.tgz'))
    if (!packed) throw new Error(`npm pack made no tarball in ${work}`)
    tarball = join(work, packed)
    const manifest = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>
    }
    // Its dependencies as this repo pins them, the SDK and vitest for the project's test; then the tarball.
    await installOffline(project, [...Object.keys(manifest.dependencies), 'isorun', 'vitest'])
    await npm(project, ['install', '--offline', '--no-save', '--no-audit', '--no-fund', tarball])
  }, 600_000)

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true })
  })

  it('holds the license and the repository, and no sources or tests', async () => {
    const { stdout } = await promisify(execFile)('tar', ['-tzf', tarball])
    const files = stdout.split('\n').filter(Boolean)
    expect(files).toEqual(
      expect.arrayContaining(['package/LICENSE', 'package/dist/cli.js', 'package/dist/vitest.js']),
    )
    expect(files.filter((f) => f.startsWith('package/src/') || f.startsWith('package/test/'))).toEqual([])
    const installed = join(project, 'node_modules', 'isorun-emulator')
    expect(readFileSync(join(installed, 'LICENSE'), 'utf8')).toMatch(/^MIT License/)
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'))
    expect(manifest.license).toBe('MIT')
    expect(manifest.repository.url).toMatch(/^git\+https:\/\//)
  })

  it('runs as `npx isorun-emulator`: --version, then a start that answers health', {
    timeout: 120_000,
  }, async () => {
    const version = await npm(project, ['exec', '--offline', '--', 'isorun-emulator', '--version'])
    expect(version.trim()).toBe(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version)

    const dataDir = join(work, 'data')
    const child = spawn('npx', ['--offline', 'isorun-emulator', '--port', '0', '--data-dir', dataDir], {
      cwd: project,
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setInterval(() => {
          const found = apiUrlIn(out)
          if (found) {
            clearInterval(timer)
            resolve(found)
          }
        }, 50)
        exited.then((code) => {
          clearInterval(timer)
          reject(new Error(`exited with ${code}: ${out}`))
        })
      })
      const health = await fetch(`${url}/_emulator/health`)
      expect(health.status).toBe(200)
      // The dashboard's files came with the package (served on the control plane's own port).
      const dashboard = /^Dashboard: (\S+)$/m.exec(out)?.[1]
      expect(dashboard).toMatch(/^http:\/\/\[::1\]:\d+\/_emulator\/ui$/)
      expect((await fetch(dashboard as string)).status).toBe(200)
      // Ctrl-C: the terminal signals the whole group. npm re-raises the signal on itself; the emulator
      // shuts down and nothing of the group is left.
      process.kill(-(child.pid as number), 'SIGINT')
      expect(await exited).toBeNull()
      expect(child.signalCode).toBe('SIGINT')
      const alive = () => {
        try {
          process.kill(-(child.pid as number), 0)
          return true
        } catch {
          return false
        }
      }
      for (let i = 0; i < 200 && alive(); i++) await new Promise((r) => setTimeout(r, 50))
      expect(alive()).toBe(false)
      expect(out).toContain('shutting down')
    } finally {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL')
        } catch {
          // Already gone.
        }
      }
      await removeContainers([`${LABEL.dataDir}=${dataDir}`])
    }
  })

  it('gives a project a ready vitest globalSetup (isorun-emulator/vitest)', {
    timeout: 240_000,
  }, async () => {
    writeFileSync(
      join(project, 'vitest.config.js'),
      `import { defineConfig } from 'vitest/config'
export default defineConfig({ test: { globalSetup: ['isorun-emulator/vitest'], testTimeout: 120000 } })
`,
    )
    // new Isorun() with no options: the setup gave the test the SDK's environment.
    writeFileSync(
      join(project, 'sdk.test.js'),
      `import { Isorun } from 'isorun'
import { expect, it } from 'vitest'
it('reaches the emulator through the environment', async () => {
  expect(process.env.ISORUN_API_URL).toMatch(/^http:\\/\\/\\[::1\\]:\\d+$/)
  const isorun = new Isorun()
  const sandbox = await isorun.create({ image: 'busybox:latest' })
  try {
    expect((await sandbox.exec('echo from-the-package')).stdout).toBe('from-the-package\\n')
  } finally {
    await sandbox.destroy()
  }
})
`,
    )
    const { ISORUN_API_URL: _url, ISORUN_API_KEY: _key, ...rest } = env()
    const result = await promisify(execFile)('npx', ['--offline', 'vitest', 'run'], {
      cwd: project,
      env: rest,
      timeout: 200_000,
    }).catch((err: { stdout: string; stderr: string }) => {
      throw new Error(`the project's vitest run failed:\n${err.stdout}\n${err.stderr}`)
    })
    expect(result.stdout).toMatch(/1 passed/)
  })
})
