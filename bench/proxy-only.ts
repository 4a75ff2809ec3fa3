/**
 * `npm run bench:proxy`: only the url(port) section of the benchmark (bench/proxy.ts), against an
 * emulator process of its own; for comparing the proxy before and after a change without the rest.
 * The emulator inherits the environment: `ISORUN_EMULATOR_FAST_PROXY=0` measures the routes instead.
 */
import { Isorun } from 'isorun'
import { startEmulatorProcess } from './emulator-process.ts'
import { benchProxy, printProxyTable } from './proxy.ts'

const { apiUrl, child } = await startEmulatorProcess(['--pool', '0'])
const isorun = new Isorun({ apiUrl, apiKey: 'isorun_bench' })
try {
  printProxyTable(await benchProxy(apiUrl, isorun, child.pid))
} finally {
  isorun.close()
  child.kill('SIGTERM')
}
