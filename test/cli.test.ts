import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { type AddressInfo, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { apiUrlIn } from './support/banner.ts'
import { describeWithDocker } from './support/sdk.ts'

const cli = join(import.meta.dirname, '..', 'src', 'cli.ts')
const version = (
  JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as {
    version: string
  }
).version

/** The command to its end: exit code, stdout, stderr. */
async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [cli, ...args], {
    env: { ...process.env, ...env },
    timeout: 60_000,
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({
      code: err.code,
      stdout: err.stdout,
      stderr: err.stderr,
    }),
  )
}

describe('the isorun-emulator command without an engine', () => {
  const dirs: string[] = []
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'isorun-cli-test-'))
    dirs.push(dir)
    return dir
  }
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  })

  it('prints its version (package.json) with --version and -v', async () => {
    const runs = await Promise.all(['--version', '-v'].map((flag) => run([flag])))
    for (const r of runs) expect(r).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' })
  })

  it('exits 2 on a usage error: an unknown flag, a bad setting, a missing argument', async () => {
    const [unknown, badPort, badEnv, noFile] = await Promise.all([
      run(['--no-such-flag']),
      run(['--port', 'eighty']),
      // Had it started, on a port and data dir of its own with no pool.
      run(['--port', '0', '--pool', '0', '--data-dir', tempDir()], { ISORUN_EMULATOR_LOG_FORMAT: 'xml' }),
      run(['verify-audit']),
    ])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('--no-such-flag')
    expect(unknown.stderr).toContain('--help')
    expect(badPort.code).toBe(2)
    expect(badPort.stderr).toContain('ISORUN_EMULATOR_PORT')
    expect(badEnv.code).toBe(2)
    expect(badEnv.stderr).toContain('ISORUN_EMULATOR_LOG_FORMAT')
    expect(noFile.code).toBe(2)
    expect(noFile.stderr).toContain('needs the audit log file')
  })

  it('exits 3 when it cannot start (no engine at DOCKER_HOST)', async () => {
    const r = await run(['--engine', 'docker', '--port', '0', '--pool', '0', '--data-dir', tempDir()], {
      DOCKER_HOST: `unix://${join(tempDir(), 'no-docker.sock')}`,
    })
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/^isorun-emulator: could not start: .*docker/im)
    expect(r.stdout).not.toContain('ISORUN_API_URL')
  })

  it('exits 1 when verify-audit cannot read the log', async () => {
    const r = await run(['verify-audit', join(tempDir(), 'missing.jsonl'), '--key', 'k'.repeat(32)])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('missing.jsonl')
  })

  it('documents its exit codes in --help', async () => {
    const help = await run(['--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(
      /Exit codes: 0 ok .*1 failed .*2 usage error .*3 could not start .*4 the audit log is tampered/s,
    )
    expect(help.stdout).toContain('--version')
  })
})

describeWithDocker('the isorun-emulator command', () => {
  it('exits 3 when its port is taken (another emulator, say) on both loopbacks', async () => {
    const servers = [createServer(), createServer()]
    const first = servers[0] as Server
    await new Promise<void>((resolve, reject) => {
      first.once('error', reject)
      first.listen(0, '::1', resolve)
    })
    const port = (first.address() as AddressInfo).port
    await new Promise<void>((resolve, reject) => {
      servers[1]?.once('error', reject)
      servers[1]?.listen(port, '127.0.0.1', resolve)
    })
    const dataDir = mkdtempSync(join(tmpdir(), 'isorun-cli-test-'))
    try {
      const r = await run(['--port', String(port), '--pool', '0', '--data-dir', dataDir])
      expect(r.code).toBe(3)
      expect(r.stderr).toMatch(/^isorun-emulator: could not start: .*address already in use/m)
    } finally {
      for (const server of servers) server.close()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it('prints export lines to paste, serves both loopbacks, and exits cleanly on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'isorun-cli-test-'))
    const child = spawn(
      process.execPath,
      [cli, '--port', '0', '--pool', '0', '--data-dir', dataDir, '--api-key', 'key-one', '--api-key', "it's"],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    try {
      let out = ''
      const banner = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          if (out.includes('Dashboard:')) resolve(out)
        })
        child.once('exit', (code) => reject(new Error(`exited early with ${code}`)))
      })
      // Not on a terminal: the log is pino's JSON lines.
      const logLines = banner.split('\n').filter((l) => l.startsWith('{'))
      expect(logLines.length).toBeGreaterThan(0)
      for (const line of logLines) expect(JSON.parse(line)).toHaveProperty('level')
      expect(banner).toContain(`isorun-emulator ${version} ready on http://[::1]:`)

      const exports = banner.split('\n').filter((l) => l.startsWith('export '))
      expect(exports).toHaveLength(2)
      // What a user pastes: a shell gets exactly the URL and the key.
      const { stdout } = await promisify(execFile)('sh', [
        '-c',
        `${exports.join('\n')}\nprintf '%s\\n%s\\n' "$ISORUN_API_URL" "$ISORUN_API_KEY"`,
      ])
      const [url, key] = stdout.split('\n')
      expect(url).toBe(apiUrlIn(banner))
      expect(url).toMatch(/^http:\/\/\[::1\]:\d+$/)
      expect(key).toBe('key-one')

      const port = new URL(url as string).port
      for (const base of [`http://[::1]:${port}`, `http://127.0.0.1:${port}`]) {
        const health = await fetch(`${base}/_emulator/health`)
        expect(health.status).toBe(200)
        const runs = await fetch(`${base}/v1/runs`, { headers: { authorization: `Bearer it's` } })
        expect(runs.status).toBe(200)
        const denied = await fetch(`${base}/v1/runs`, { headers: { authorization: 'Bearer key-three' } })
        expect(denied.status).toBe(401)
      }
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
    } finally {
      child.kill('SIGKILL')
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it('logs readable lines, not JSON, on a terminal', { timeout: 60_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'isorun-cli-test-'))
    // script(1) gives the command a pseudo-terminal as its standard output.
    const command = [process.execPath, cli, '--port', '0', '--pool', '0', '--data-dir', dataDir]
      .map((a) => `'${a}'`)
      .join(' ')
    const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    try {
      let out = ''
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          if (out.includes('Dashboard:')) resolve()
        })
        child.once('exit', (code) => reject(new Error(`exited early with ${code}: ${out}`)))
      })
      const lines = out.split(/\r?\n/).filter(Boolean)
      expect(lines.filter((l) => l.startsWith('{'))).toEqual([])
      expect(out).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}engine capabilities capabilities=\{.*…$/m)
      expect(out).toMatch(/^\d\d:\d\d:\d\d\.\d{3} (INFO |WARN ) memory snapshots: /m)
      for (const line of lines) expect(line.length).toBeLessThan(400)
      expect(apiUrlIn(out)).toMatch(/^http:\/\/\[::1\]:\d+$/)
    } finally {
      child.kill('SIGTERM')
      await new Promise((r) => setTimeout(r, 500))
      child.kill('SIGKILL')
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
