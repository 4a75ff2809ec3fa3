import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from './config.ts'
import type { Fault, FaultSpec } from './control/faults.ts'
import type { JournalEntry } from './control/journal.ts'
import { resetSandboxes, resetToSeed } from './control/reset.ts'
import { toResetWire } from './http/wire.ts'
import { VirtualClock } from './sandboxes/clock.ts'
import { hashApiKey as hashKey } from './sandboxes/ids.ts'
import { type RunningServer, startServer } from './server.ts'

export interface StartEmulatorOptions {
  /** `virtual`: time moves only by `clock.advance()`. Default `real`. */
  clock?: 'real' | 'virtual'
  /** The data dir; default a fresh temporary one, removed by `stop()`. */
  dataDir?: string
  /** Warm containers per image; default 0 (each create is what it looks like). */
  pool?: number
  /** More settings, as ISORUN_EMULATOR_* variables. */
  env?: Record<string, string>
}

/** An emulator running inside the test process, and the handles a test needs. */
export interface StartedEmulator {
  /** The fast `http://[::1]:PORT` URL to give the SDK (ISORUN_API_URL). */
  apiUrl: string
  /** The dashboard's and the control plane's own origin (`${adminUrl}/_emulator/ui`). */
  adminUrl: string
  /** A key of this emulator's own: sandboxes made with it are invisible to other keys (other test files). */
  apiKey: string
  faults: {
    add(spec: Partial<FaultSpec> & { path: string }): Fault
    list(): Fault[]
    remove(id: string): boolean
    clear(): number
  }
  clock: {
    mode: 'real' | 'virtual'
    now(): Date
    /** Moves a virtual clock; throws with the real one. */
    advance(seconds: number): Date
  }
  /** Destroys every sandbox and snapshot (of `apiKey` when given). */
  reset(apiKey?: string): Promise<{ destroyed: number; snapshots_deleted: number }>
  /** The recent API requests, newest first. */
  requests(filter?: { path?: string; method?: string; limit?: number }): JournalEntry[]
  /** Destroys what this emulator made, stops it, and removes its temporary data dir. */
  stop(): Promise<void>
  /** Where this emulator keeps its state. */
  dataDir: string
  /** The running server and the app's parts, for tests that look inside (the pool, the proxy...). */
  server: RunningServer
  /**
   * Stops the server as SIGTERM does: its sandboxes keep running and its data dir stays, for
   * `restart()`. A `stop()` after it only removes the temporary data dir.
   */
  close(): Promise<void>
  /**
   * After `close()`: another emulator on the same data dir, which adopts the sandboxes left running
   * (with these options in place of the first ones). It removes the data dir on `stop()` if this one
   * would have.
   */
  restart(options?: Omit<StartEmulatorOptions, 'dataDir'>): Promise<StartedEmulator>
}

/**
 * Starts an emulator in-process on a free port, for tests:
 *
 * ```ts
 * const emu = await startEmulator({ clock: 'virtual' })
 * const isorun = new Isorun({ apiUrl: emu.apiUrl, apiKey: emu.apiKey })
 * ```
 */
export async function startEmulator(options: StartEmulatorOptions = {}): Promise<StartedEmulator> {
  return start(options, options.dataDir === undefined)
}

async function start(options: StartEmulatorOptions, ownDir: boolean): Promise<StartedEmulator> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'isorun-emulator-'))
  const config = loadConfig({
    ISORUN_EMULATOR_PORT: '0',
    ISORUN_EMULATOR_DATA_DIR: dataDir,
    ISORUN_EMULATOR_LOG_LEVEL: 'warn',
    ISORUN_EMULATOR_POOL: String(options.pool ?? 0),
    ISORUN_EMULATOR_CLOCK: options.clock ?? 'real',
    ...options.env,
  })
  const server = await startServer(config)
  const built = server.built
  const { faults, journal, clock } = built
  let running = true
  const close = async () => {
    if (!running) return
    running = false
    await server.close()
  }
  return {
    dataDir,
    server,
    apiUrl: server.apiUrl,
    adminUrl: server.adminUrl,
    apiKey: `isorun_test_${randomBytes(8).toString('hex')}`,
    faults: {
      add: (spec) => faults.add({ action: 'error', ...spec }),
      list: () => faults.list(),
      remove: (id) => faults.remove(id),
      clear: () => faults.clear(),
    },
    clock: {
      mode: clock instanceof VirtualClock ? 'virtual' : 'real',
      now: () => new Date(clock.now()),
      advance(seconds: number) {
        if (!(clock instanceof VirtualClock))
          throw new Error('the clock is real; start with { clock: "virtual" }')
        return new Date(clock.advance(seconds * 1000))
      },
    },
    reset: async (apiKey) =>
      toResetWire(await resetToSeed(server.sandboxes, built.seeder, apiKey ? hashKey(apiKey) : undefined)),
    requests: (filter = {}) => journal.query(filter),
    async stop() {
      if (running) {
        await resetSandboxes(server.sandboxes)
        // A temporary data dir goes away with its snapshots' images; a given one keeps its seed.
        if (ownDir) await server.sandboxes.snapshots.deleteShared()
        await close()
      }
      if (ownDir) rmSync(dataDir, { recursive: true, force: true })
    },
    close,
    async restart(next = {}) {
      if (running) throw new Error('restart() follows close(): one emulator per data dir at a time')
      return start({ ...next, dataDir }, ownDir)
    },
  }
}
