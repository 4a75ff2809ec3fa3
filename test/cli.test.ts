import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { describeWithDocker } from './support/sdk.ts'

const cli = join(import.meta.dirname, '..', 'src', 'cli.ts')

describeWithDocker('the isorun-emulator command', () => {
  it('prints the lines to paste, serves both loopbacks, and exits cleanly on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'isorun-cli-test-'))
    const child = spawn(
      process.execPath,
      [cli, '--port', '0', '--data-dir', dataDir, '--api-key', 'key-one', '--api-key', 'key-two'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    try {
      const banner = await new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          if (out.includes('ISORUN_API_KEY=')) resolve(out)
        })
        child.once('exit', (code) => reject(new Error(`exited early with ${code}`)))
      })
      const url = /^ISORUN_API_URL=(http:\/\/\[::1\]:(\d+))$/m.exec(banner)
      expect(url).not.toBeNull()
      expect(banner).toMatch(/^ISORUN_API_KEY=key-one$/m)
      const port = url?.[2]
      for (const base of [`http://[::1]:${port}`, `http://127.0.0.1:${port}`]) {
        const health = await fetch(`${base}/_emulator/health`)
        expect(health.status).toBe(200)
        const runs = await fetch(`${base}/v1/runs`, { headers: { authorization: 'Bearer key-two' } })
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
})
