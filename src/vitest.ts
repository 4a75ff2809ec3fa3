import { type StartEmulatorOptions, type StartedEmulator, startEmulator } from './testing.ts'

/**
 * A ready vitest `globalSetup` (`isorun-emulator/vitest`): one emulator for the whole run, the SDK's
 * environment (`ISORUN_API_URL`, `ISORUN_API_KEY`) set for the test files, so `new Isorun()` reaches
 * it; at the end every sandbox it made is destroyed and it stops.
 *
 * ```ts
 * // vitest.config.ts
 * export default defineConfig({ test: { globalSetup: ['isorun-emulator/vitest'] } })
 * ```
 *
 * Test workers inherit the environment as it is when they start, after this setup. The emulator's own
 * settings come from `ISORUN_EMULATOR_*` variables as for the command (the port, data dir and host
 * are its own: a free port, a temporary data dir, loopback).
 */
export default async function setup(): Promise<() => Promise<void>> {
  return (await startForVitest()).teardown
}

/** The same, with options (a virtual clock, a warm pool): `globalSetup: ['./emulator-setup.ts']` exporting `emulatorSetup({...})`. */
export function emulatorSetup(options: StartEmulatorOptions = {}): () => Promise<() => Promise<void>> {
  return async () => (await startForVitest(options)).teardown
}

/** Settings a shared test emulator chooses itself. */
const OWN = new Set(['ISORUN_EMULATOR_PORT', 'ISORUN_EMULATOR_DATA_DIR', 'ISORUN_EMULATOR_HOST'])

async function startForVitest(
  options: StartEmulatorOptions = {},
): Promise<{ emulator: StartedEmulator; teardown: () => Promise<void> }> {
  const fromEnv = Object.fromEntries(
    Object.entries(process.env).filter(
      (entry): entry is [string, string] =>
        entry[0].startsWith('ISORUN_EMULATOR_') && !OWN.has(entry[0]) && Boolean(entry[1]),
    ),
  )
  const emulator = await startEmulator({ ...options, env: { ...fromEnv, ...options.env } })
  const before = { url: process.env.ISORUN_API_URL, key: process.env.ISORUN_API_KEY }
  process.env.ISORUN_API_URL = emulator.apiUrl
  process.env.ISORUN_API_KEY = emulator.apiKey
  return {
    emulator,
    teardown: async () => {
      restore('ISORUN_API_URL', before.url)
      restore('ISORUN_API_KEY', before.key)
      await emulator.stop()
    },
  }
}

function restore(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name]
  else process.env[name] = value
}
