import { describe, expect, it } from 'vitest'
import { describeWithDocker, newClient, sandboxTracker } from './support/sdk.ts'

describeWithDocker('exec through the real SDK', () => {
  const isorun = newClient()
  const track = sandboxTracker()
  const sandbox = () => isorun.create({ image: 'busybox:latest' }).then(track)

  it('runs a shell command line and returns exit code, stdout and stderr separately', async () => {
    const s = await sandbox()
    const r = await s.exec('echo out; echo err >&2; printf "%s" "$((6 * 7))" | tee /tmp/x; exit 3')
    expect(r).toEqual({ exitCode: 3, stdout: 'out\n42', stderr: 'err\n' })
    expect((await s.exec('cat /tmp/x')).stdout).toBe('42')
  })

  it('reports a missing command as exit code 127', async () => {
    const s = await sandbox()
    const r = await s.exec('no-such-command-here')
    expect(r.exitCode).toBe(127)
    expect(r.stderr).toContain('not found')
  })

  it('kills a command and all its children on timeout, and says so with exit code 124', async () => {
    const s = await sandbox()
    const started = Date.now()
    const r = await s.exec('sleep 101 & (sleep 102 &) ; echo started; sleep 103', 1)
    const took = Date.now() - started
    expect(r.exitCode).toBe(124)
    expect(r.stdout).toBe('started\n')
    expect(r.stderr).toContain('timed out after 1s')
    expect(took).toBeGreaterThanOrEqual(1000)
    expect(took).toBeLessThan(5000)
    // Nothing the command started survives, not even the orphan re-parented to PID 1.
    const ps = await s.exec('ps -o args')
    expect(ps.stdout).not.toMatch(/sleep 10[123]/)
  })

  it('keeps only the first 16 MiB of a huge output and says it truncated', async () => {
    const s = await sandbox()
    const r = await s.exec('head -c 20000000 /dev/zero | tr "\\0" a', 60)
    expect(r.exitCode).toBe(0)
    expect(r.stdout.length).toBe(16 * 1024 * 1024)
    expect(r.stdout[0]).toBe('a')
    expect(r.stderr).toContain('stdout truncated')
  })

  it('runs concurrent execs on one sandbox independently', async () => {
    const s = await sandbox()
    const started = Date.now()
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => s.exec(`sleep 1; echo ${i}; exit ${i}`)),
    )
    expect(Date.now() - started).toBeLessThan(8000)
    results.forEach((r, i) => {
      expect(r.stdout).toBe(`${i}\n`)
      expect(r.exitCode).toBe(i)
    })
  })

  describe('in the node:22-slim stand-in', () => {
    it('runs node scripts with arguments and multi-line output', async () => {
      const s = track(await isorun.create({ image: 'node:22-slim' }))
      const r = await s.exec(`node -e 'for (let i = 0; i < 3; i++) console.log(i * 2)'`)
      expect(r).toEqual({ exitCode: 0, stdout: '0\n2\n4\n', stderr: '' })
    })
  })
})
