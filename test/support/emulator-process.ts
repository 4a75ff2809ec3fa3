import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun } from 'isorun'
import { LABEL } from '../../src/sandboxes/labels.ts'
import { apiUrlIn } from './banner.ts'
import { removeContainers } from './cleanup.ts'

/** The banner's dashboard URL, `<origin>/_emulator/ui`: its origin is the control plane's. */
export const DASHBOARD_URL = /(https?:\/\/\S+?)\/_emulator\/ui\b/

const cli = join(import.meta.dirname, '..', '..', 'src', 'cli.ts')

export interface EmulatorProcess {
  child: ChildProcess
  apiUrl: string
  /** The dashboard's and the control plane's origin, from the banner's dashboard URL. */
  adminUrl: string
  dataDir: string
  client(apiKey?: string): Isorun
  /** Everything it printed so far (stdout and stderr). */
  log(): string
  /** Its exit code (or signal) once it has exited; undefined while it runs. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined
  /** SIGKILL, remove its containers and its data dir. */
  stop(): Promise<void>
}

/**
 * The emulator as its own process, as a user runs it: a test can then tell whether a request ended it.
 * `env` adds ISORUN_EMULATOR_* settings (the warm pool is off unless set).
 */
export async function launchEmulator(env: Record<string, string> = {}): Promise<EmulatorProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-emulator-proc-'))
  const child = spawn(process.execPath, [cli, '--port', '0', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      ISORUN_EMULATOR_LOG_LEVEL: 'info',
      ISORUN_EMULATOR_POOL: '0',
      ...env,
    },
  })
  let out = ''
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.once('exit', (code, signal) => {
    exit = { code, signal }
  })
  const stop = async () => {
    if (!exit) child.kill('SIGKILL')
    await removeContainers([`${LABEL.dataDir}=${dataDir}`])
    rmSync(dataDir, { recursive: true, force: true })
  }
  const [apiUrl, adminUrl] = await new Promise<[string, string]>((resolve, reject) => {
    const timer = setInterval(() => {
      const url = apiUrlIn(out)
      const admin = DASHBOARD_URL.exec(out)
      if (url && admin?.[1]) {
        clearInterval(timer)
        resolve([url, admin[1]])
      } else if (exit) {
        clearInterval(timer)
        reject(new Error(`emulator exited with ${exit.code ?? exit.signal}: ${out}`))
      }
    }, 20)
  }).catch(async (err) => {
    await stop()
    throw err
  })
  return {
    child,
    apiUrl,
    adminUrl,
    dataDir,
    client: (apiKey = 'proc-key') => new Isorun({ apiUrl, apiKey }),
    log: () => out,
    exited: () => exit,
    stop,
  }
}
