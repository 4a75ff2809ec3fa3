/**
 * The emulator as its own process on the in-memory FakeEngine, for tests that measure the process
 * itself (resident memory under floods) without Docker. Its engine writes no file anywhere: an upload's
 * bytes are counted and dropped, so what the process holds is the emulator's own doing. Prints
 * `ISORUN_API_URL=...` and `ISORUN_ADMIN_URL=...` (the control plane's origin) when ready, and `uploaded <bytes>` after each upload the engine received.
 */
import type { Readable } from 'node:stream'
import { loadConfig } from '../../src/config.ts'
import { startServer } from '../../src/server.ts'
import { FakeEngine } from './fake-engine.ts'

class CountingEngine extends FakeEngine {
  override async writeFile(
    _containerId: string,
    _path: string,
    size: number,
    content: Readable,
  ): Promise<void> {
    let got = 0
    for await (const chunk of content) got += (chunk as Buffer).length
    process.stdout.write(`uploaded ${got} of ${size}\n`)
  }
}

const server = await startServer(
  loadConfig({ ...process.env, ISORUN_EMULATOR_PORT: '0', ISORUN_EMULATOR_POOL: '0' }),
  {
    engine: new CountingEngine(),
  },
)
process.stdout.write(`ISORUN_API_URL=${server.apiUrl}\nISORUN_ADMIN_URL=${server.adminUrl}\n`)
process.on('SIGTERM', () => {
  server.close().then(() => process.exit(0))
})
