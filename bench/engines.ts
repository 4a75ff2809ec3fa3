/**
 * `npm run bench:engines`: the same work through the real SDK on one emulator per engine (Docker and
 * Podman, each its own process), in alternating rounds so both see the same machine noise: create,
 * exec, snapshot, restore, fork(5), hibernate and resume of a sandbox running a counting shell loop (so
 * there is memory to carry). Prints a table of medians and 90th percentiles, and the machine's load
 * average before and after (the figures mean little without it on a shared machine).
 */
import { loadavg } from 'node:os'
import { Isorun } from 'isorun'
import { startEmulatorProcess } from './emulator-process.ts'
import { median, percentile, timed } from './stats.ts'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7)
const IMAGE = process.env.BENCH_IMAGE ?? 'busybox:latest'
const ENGINES = ['docker', 'podman'] as const
type Engine = (typeof ENGINES)[number]

const COUNTER = `sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' >/dev/null 2>&1 </dev/null &`
const OPS = [
  'create',
  'exec true',
  'snapshot',
  'restore',
  'fork(5)',
  'hibernate',
  'resume',
  'destroy',
] as const

async function round(isorun: Isorun, add: (op: (typeof OPS)[number], ms: number) => void): Promise<void> {
  const [tCreate, s] = await timed(() => isorun.create({ image: IMAGE }))
  add('create', tCreate)
  const [tExec] = await timed(() => s.exec('true'))
  add('exec true', tExec)
  await s.exec(COUNTER)
  const [tSnap, snap] = await timed(() => s.snapshot())
  add('snapshot', tSnap)
  const [tRestore, restored] = await timed(() => isorun.restore(snap.id))
  add('restore', tRestore)
  const [tFork, kids] = await timed(() => s.fork(5))
  if (kids.length !== 5) throw new Error(`fork(5) gave ${kids.length} children`)
  add('fork(5)', tFork)
  const [tHib] = await timed(() => s.hibernate())
  add('hibernate', tHib)
  const [tRes] = await timed(() => s.resume())
  add('resume', tRes)
  // The memory came back: the loop still counts.
  const before = Number((await s.exec('cat /tmp/count')).stdout)
  await new Promise((r) => setTimeout(r, 300))
  if (!(Number((await s.exec('cat /tmp/count')).stdout) > before))
    throw new Error('resumed loop is not counting')
  const [tDestroy] = await timed(() => s.destroy())
  add('destroy', tDestroy)
  await Promise.all([restored, ...kids].map((x) => x.destroy()))
  await isorun.deleteSnapshot(snap.id)
}

const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(', ')

async function main() {
  const loadBefore = load()
  const emulators = await Promise.all(
    ENGINES.map(async (engine) => {
      const { apiUrl, child } = await startEmulatorProcess(['--pool', '0', '--engine', engine])
      return { engine, child, isorun: new Isorun({ apiUrl, apiKey: 'isorun_bench' }) }
    }),
  )
  const samples: Record<Engine, Record<string, number[]>> = { docker: {}, podman: {} }
  try {
    for (const { engine, isorun } of emulators) {
      const caps = (await (await fetch(`${isorun.apiUrl}/_emulator/capabilities`)).json()) as {
        memory_state?: { criu?: boolean }
      }
      if (!caps.memory_state?.criu) throw new Error(`${engine}: no memory checkpoints here`)
      // Warm once (image import, connection pools) before measuring.
      await round(isorun, () => {})
    }
    for (let i = 0; i < ROUNDS; i++) {
      const order = i % 2 === 0 ? emulators : [...emulators].reverse()
      for (const { engine, isorun } of order) {
        await round(isorun, (op, ms) => {
          samples[engine][op] ??= []
          samples[engine][op].push(ms)
        })
        process.stderr.write(`bench: ${engine} round ${i + 1}/${ROUNDS}\n`)
      }
    }
  } finally {
    for (const { child, isorun } of emulators) {
      isorun.close()
      child.kill('SIGTERM')
    }
  }
  const ms = (xs: number[] | undefined, p: number) =>
    xs?.length ? Math.round(percentile(xs, p)) : Number.NaN
  const lines = [
    `${ROUNDS} rounds, image ${IMAGE}, a counting shell loop in memory; ms, p50 (p90)`,
    `load average (1, 5, 15 min): ${loadBefore} before, ${load()} after`,
    '',
    '| operation | docker | podman | podman / docker |',
    '| --- | ---: | ---: | ---: |',
    ...OPS.map((op) => {
      const d = samples.docker[op]
      const p = samples.podman[op]
      const ratio = d && p ? (median(p) / median(d)).toFixed(2) : '-'
      return `| ${op} | ${ms(d, 50)} (${ms(d, 90)}) | ${ms(p, 50)} (${ms(p, 90)}) | ${ratio} |`
    }),
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
