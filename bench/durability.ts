/**
 * What `ISORUN_EMULATOR_DURABILITY=fsync` costs: the same create, exec and destroy through two emulator
 * processes, one per setting, alternating, plus the bare cost of one JSON-lines append on this disk.
 * Part of `npm run bench`; alone: `node bench/durability.ts`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Isorun } from 'isorun'
import { appendJsonLine } from '../src/store/files.ts'
import { startEmulatorProcess } from './emulator-process.ts'
import type { Samples } from './more.ts'
import { median, timed } from './stats.ts'

/** Samples per operation: `emulator` is the fsync side, `raw` the default (process) side. */
export async function benchDurability(image: string, rounds: number): Promise<Samples> {
  const sides = {
    fsync: await startEmulatorProcess(['--pool', '0'], { ISORUN_EMULATOR_DURABILITY: 'fsync' }),
    process: await startEmulatorProcess(['--pool', '0'], { ISORUN_EMULATOR_DURABILITY: 'process' }),
  }
  const clients = {
    fsync: new Isorun({ apiUrl: sides.fsync.apiUrl, apiKey: 'isorun_bench' }),
    process: new Isorun({ apiUrl: sides.process.apiUrl, apiKey: 'isorun_bench' }),
  }
  const samples: Samples = {}
  const add = (name: string, side: 'fsync' | 'process', ms: number) => {
    samples[name] ??= { emulator: [], raw: [] }
    samples[name][side === 'fsync' ? 'emulator' : 'raw'].push(ms)
  }
  try {
    for (const c of Object.values(clients)) await (await c.create({ image })).destroy()
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? (['fsync', 'process'] as const) : (['process', 'fsync'] as const)
      for (const side of order) {
        const [tc, s] = await timed(() => clients[side].create({ image }))
        add('create, fsync (vs process)', side, tc)
        const [te] = await timed(() => s.exec('true'))
        add('exec true, fsync (vs process)', side, te)
        const [td] = await timed(() => s.destroy())
        add('destroy, fsync (vs process)', side, td)
      }
    }
  } finally {
    for (const side of ['fsync', 'process'] as const) {
      clients[side].close()
      sides[side].child.kill('SIGTERM')
      await new Promise((r) => sides[side].child.once('exit', r))
      rmSync(sides[side].dataDir, { recursive: true, force: true })
    }
  }
  return samples
}

/** One audit-sized JSON-lines append to a file in the temp dir, with and without fsync: µs at p50. */
export function appendCost(count = 200): { process_us: number; fsync_us: number } {
  const dir = mkdtempSync(join(tmpdir(), 'isorun-bench-append-'))
  const entry = {
    seq: 0,
    ts: new Date().toISOString(),
    event: 'exec.start',
    data: { command: 'true' },
    hmac: 'x'.repeat(71),
  }
  const measure = (fsync: boolean) => {
    const file = join(dir, `${fsync}.jsonl`)
    const times: number[] = []
    for (let i = 0; i < count; i++) {
      const start = performance.now()
      appendJsonLine(file, entry, { fsync })
      times.push((performance.now() - start) * 1000)
    }
    return Math.round(median(times))
  }
  try {
    return { process_us: measure(false), fsync_us: measure(true) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const image = process.env.BENCH_IMAGE ?? 'busybox:latest'
  const rounds = Number(process.env.BENCH_ROUNDS ?? 15)
  console.log('append:', appendCost())
  const samples = await benchDurability(image, rounds)
  console.log('| operation | fsync p50 ms | process p50 ms | added ms |')
  console.log('|---|---:|---:|---:|')
  for (const [name, s] of Object.entries(samples)) {
    const f = median(s.emulator)
    const p = median(s.raw)
    console.log(`| ${name} | ${f.toFixed(1)} | ${p.toFixed(1)} | ${(f - p).toFixed(1)} |`)
  }
}
