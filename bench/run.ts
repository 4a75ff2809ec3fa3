/**
 * `npm run bench`: times the emulator through the real SDK against the same work on the raw Docker
 * Engine API, in one run on one machine, alternating rounds so both see the same noise. Prints a table
 * and writes bench/results.json.
 */
import { writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { Isorun } from 'isorun'
import { appendCost, benchDurability } from './durability.ts'
import { startEmulatorProcess } from './emulator-process.ts'
import { benchExec, benchExecCpu, type ExecCpu } from './exec.ts'
import {
  benchConcurrency,
  benchFiles,
  benchRefillInterference,
  benchWarmCreate,
  type ConcurrencyResult,
} from './more.ts'
import { benchProxy, type ProxyBenchRow, printProxyTable } from './proxy.ts'
import { RawDocker } from './raw-docker.ts'
import { benchState } from './state.ts'
import { median, percentile, timed } from './stats.ts'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15)
const IMAGE = process.env.BENCH_IMAGE ?? 'busybox:latest'
/** BENCH_ONLY=exec: create, exec, state and files only (no durability, concurrency, pool or proxy phases). */
const EXEC_ONLY = process.env.BENCH_ONLY === 'exec'

interface Row {
  name: string
  emulator: number[]
  raw: number[]
}

function summarize(row: Row) {
  const em = median(row.emulator)
  const raw = median(row.raw)
  return {
    name: row.name,
    emulator_p50_ms: round(em),
    emulator_p99_ms: round(percentile(row.emulator, 99)),
    raw_p50_ms: round(raw),
    raw_p99_ms: round(percentile(row.raw, 99)),
    ratio: round(em / raw, 3),
    samples: row.emulator.length,
  }
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits

async function main() {
  const raw = new RawDocker()
  // Cold numbers come from an emulator without a warm pool; the warm phase below runs one with it.
  const { apiUrl, child } = await startEmulatorProcess(['--pool', '0'])
  const isorun = new Isorun({ apiUrl, apiKey: 'isorun_bench' })
  const rows: Record<string, Row> = {}
  let proxyRows: ProxyBenchRow[] = []
  let concurrency: ConcurrencyResult | undefined
  let execCpu: ExecCpu | undefined
  let appendUs: ReturnType<typeof appendCost> | undefined
  const row = (name: string) => {
    rows[name] ??= { name, emulator: [], raw: [] }
    return rows[name]
  }

  const loadAtStart = loadavg()
  try {
    // Warm both paths once (image cache, connection pools) before measuring.
    await (await isorun.create({ image: IMAGE })).destroy()
    await raw.destroy(await raw.create(IMAGE))

    for (let i = 0; i < ROUNDS; i++) {
      // Alternate which side goes first in each round.
      const order = i % 2 === 0 ? (['emulator', 'raw'] as const) : (['raw', 'emulator'] as const)
      for (const side of order) {
        if (side === 'emulator') {
          const [tc, s] = await timed(() => isorun.create({ image: IMAGE }))
          row('create').emulator.push(tc)
          const [te] = await timed(() => s.exec('true'))
          row('exec right after create').emulator.push(te)
          const [td] = await timed(() => s.destroy())
          row('destroy').emulator.push(td)
        } else {
          const [tc, c] = await timed(() => raw.create(IMAGE))
          row('create').raw.push(tc)
          const [te] = await timed(() => raw.exec(c, 'true'))
          row('exec right after create').raw.push(te)
          const [td] = await timed(() => raw.destroy(c))
          row('destroy').raw.push(td)
        }
      }
    }
    // exec on a running sandbox vs raw docker exec, and CPU per exec.
    for (const [name, sides] of Object.entries(await benchExec(isorun, raw, IMAGE, ROUNDS))) {
      row(name).emulator.push(...sides.emulator)
      row(name).raw.push(...sides.raw)
    }
    execCpu = await benchExecCpu(isorun, raw, IMAGE, child.pid ?? 0)
    // Sandbox state (CRIU): snapshot, restore, fork(5), hibernate + resume.
    if (process.env.BENCH_STATE !== '0') {
      const state = await benchState(isorun, raw, IMAGE, Math.max(3, Math.ceil(ROUNDS / 3)))
      for (const [name, sides] of Object.entries(state)) {
        row(name).emulator.push(...sides.emulator)
        row(name).raw.push(...sides.raw)
      }
    }
    // Files: 10 MB each way vs Docker's archive API.
    for (const [name, sides] of Object.entries(await benchFiles(isorun, raw, IMAGE, ROUNDS))) {
      row(name).emulator.push(...sides.emulator)
      row(name).raw.push(...sides.raw)
    }
    // ISORUN_EMULATOR_DURABILITY=fsync against the default, through two more emulator processes.
    if (process.env.BENCH_DURABILITY !== '0' && !EXEC_ONLY) {
      appendUs = appendCost()
      for (const [name, sides] of Object.entries(await benchDurability(IMAGE, ROUNDS))) {
        row(name).emulator.push(...sides.emulator)
        row(name).raw.push(...sides.raw)
      }
    }
    if (!EXEC_ONLY) {
      // 50 sandboxes at once, both ways; the emulator's peak RSS.
      concurrency = await benchConcurrency(isorun, raw, IMAGE, child.pid ?? 0)
      // Warm create: a second emulator with the pool on (raw Docker has no pool: its create is the baseline).
      const warmEmu = await startEmulatorProcess(['--pool', '2'])
      const warmClient = new Isorun({ apiUrl: warmEmu.apiUrl, apiKey: 'isorun_bench' })
      try {
        row('create (warm pool)').emulator.push(...(await benchWarmCreate(warmClient, IMAGE, ROUNDS)))
        row('create (warm pool)').raw.push(...row('create').raw)
        // "raw" here is the same exec with the pool idle: the ratio is what a refill costs a concurrent exec.
        const interference = await benchRefillInterference(warmClient, IMAGE, ROUNDS)
        row('exec during pool refill (vs pool idle)').emulator.push(...interference.refilling)
        row('exec during pool refill (vs pool idle)').raw.push(...interference.idle)
      } finally {
        warmClient.close()
        warmEmu.child.kill('SIGTERM')
        await new Promise((r) => warmEmu.child.once('exit', r))
      }
      // url(port): through the emulator's proxy vs straight to the container's IP.
      proxyRows = await benchProxy(apiUrl, isorun, child.pid)
    }
  } finally {
    isorun.close()
    child.kill('SIGTERM')
    await raw.cleanup()
  }

  const results = Object.values(rows).map(summarize)
  const machine = { cpus: cpus().length, cpu_model: cpus()[0]?.model, mem_gib: round(totalmem() / 2 ** 30) }
  // The machine may be shared: its load average around the run says how much the figures are worth.
  const load = { at_start: loadAtStart.map((x) => round(x, 2)), at_end: loadavg().map((x) => round(x, 2)) }
  console.log(
    `\nisorun-emulator bench: ${ROUNDS} rounds, image ${IMAGE}, ${machine.cpus} cores (${machine.cpu_model}), ` +
      `load average ${load.at_start.join(' ')} at start, ${load.at_end.join(' ')} at end\n`,
  )
  console.log('| operation | emulator p50 ms | raw Docker p50 ms | ratio | emulator p99 ms | raw p99 ms |')
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const r of results) {
    console.log(
      `| ${r.name} | ${r.emulator_p50_ms} | ${r.raw_p50_ms} | ${r.ratio}x | ${r.emulator_p99_ms} | ${r.raw_p99_ms} |`,
    )
  }
  if (concurrency) {
    const c = concurrency
    console.log(
      `\n${c.sandboxes} sandboxes created, exec'd and destroyed at once: emulator ${c.emulator_wall_ms} ms ` +
        `(${c.emulator_errors} errors, peak RSS ${c.emulator_peak_rss_mb} MB) vs raw Docker ${c.raw_wall_ms} ms (${c.raw_errors} errors)`,
    )
  }
  if (appendUs) {
    console.log(
      `\none JSON-lines append (an audit entry): ${appendUs.process_us} µs, with fsync ${appendUs.fsync_us} µs ` +
        '(rows "..., fsync (vs process)": the fsync emulator in the emulator column, the default in the raw one)',
    )
  }
  if (execCpu) {
    const { emulator: e, raw: r } = execCpu
    console.log(
      `\nCPU per exec('echo hi') over ${execCpu.execs} execs, µs: emulator ${e.total} ` +
        `(emulator process ${e.emulator_process}, sandbox ${e.sandbox}, shim ${e.shim}, dockerd+containerd ${e.docker_daemons}, client ${e.client}) ` +
        `vs raw docker exec ${r.total} (sandbox ${r.sandbox}, shim+runc ${r.shim}, dockerd+containerd ${r.docker_daemons}, client ${r.client})`,
    )
  }
  printProxyTable(proxyRows)
  const file = join(import.meta.dirname, 'results.json')
  writeFileSync(
    file,
    `${JSON.stringify({ at: new Date().toISOString(), machine, load, rounds: ROUNDS, image: IMAGE, results, exec_cpu: execCpu, proxy: proxyRows, concurrency, append_us: appendUs }, null, 2)}\n`,
  )
  console.log(`\nwritten to ${file}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
