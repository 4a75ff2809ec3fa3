import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Runs the emulator as its own process, as a user would, so it does not share the bench's event loop. */
export async function startEmulatorProcess(
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): Promise<{
  apiUrl: string
  child: ChildProcess
  dataDir: string
}> {
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-bench-'))
  // The shipped program (dist/, built by `npm ci`'s prepare step), as `npx isorun-emulator` runs it; the
  // TypeScript source costs ~30 MB more resident memory for type stripping.
  const built = join(import.meta.dirname, '..', 'dist', 'cli.js')
  const cli = existsSync(built) ? built : join(import.meta.dirname, '..', 'src', 'cli.ts')
  process.stderr.write(`bench: emulator ${cli}\n`)
  const child = spawn(
    process.execPath,
    [cli, '--port', '0', '--data-dir', dataDir, '--log-level', 'warn', ...extraArgs],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    },
  )
  const apiUrl = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /^export ISORUN_API_URL='([^']+)'$/m.exec(out)
      if (m?.[1]) resolve(m[1])
    })
    child.once('exit', (code) => reject(new Error(`emulator exited with ${code}`)))
  })
  return { apiUrl, child, dataDir }
}
