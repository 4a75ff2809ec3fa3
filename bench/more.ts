import { readFileSync } from 'node:fs'
import { Readable } from 'node:stream'
import type { Isorun } from 'isorun'
import * as tar from 'tar-stream'
import type { RawDocker } from './raw-docker.ts'
import { timed } from './stats.ts'

export type Samples = Record<string, { emulator: number[]; raw: number[] }>

function add(samples: Samples, name: string, side: 'emulator' | 'raw', ms: number): void {
  samples[name] ??= { emulator: [], raw: [] }
  samples[name][side].push(ms)
}

/** writeFile/readFile of 10 MB through the SDK vs Docker's archive API (putArchive/getArchive). */
export async function benchFiles(
  isorun: Isorun,
  raw: RawDocker,
  image: string,
  rounds: number,
): Promise<Samples> {
  const samples: Samples = {}
  const data = Buffer.alloc(10 * 1024 * 1024, 'x')
  const s = await isorun.create({ image })
  const c = await raw.create(image)
  try {
    const emulator = async () => {
      add(samples, 'writeFile 10 MB', 'emulator', (await timed(() => s.writeFile('/tmp/blob', data)))[0])
      const [t, back] = await timed(() => s.readFile('/tmp/blob'))
      if (back.length !== data.length) throw new Error('emulator readFile: wrong size')
      add(samples, 'readFile 10 MB', 'emulator', t)
    }
    const direct = async () => {
      add(samples, 'writeFile 10 MB', 'raw', (await timed(() => rawPut(c, '/tmp/blob', data)))[0])
      const [t, back] = await timed(() => rawGet(c, '/tmp/blob'))
      if (back.length !== data.length) throw new Error('raw getArchive: wrong size')
      add(samples, 'readFile 10 MB', 'raw', t)
    }
    // Alternate which side goes first in each round.
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        await emulator()
        await direct()
      } else {
        await direct()
        await emulator()
      }
    }
  } finally {
    await s.destroy()
    await raw.destroy(c)
  }
  return samples
}

async function rawPut(c: import('dockerode').Container, path: string, data: Buffer): Promise<void> {
  const pack = tar.pack()
  pack.entry({ name: path.slice(1), size: data.length }, data)
  pack.finalize()
  await c.putArchive(Readable.from(pack as unknown as AsyncIterable<Buffer>), { path: '/' })
}

async function rawGet(c: import('dockerode').Container, path: string): Promise<Buffer> {
  const stream = await c.getArchive({ path })
  const extract = tar.extract()
  const chunks: Buffer[] = []
  await new Promise<void>((resolve, reject) => {
    extract.on('entry', (_h, s, next) => {
      s.on('data', (d: unknown) => {
        chunks.push(d as Buffer)
      })
      s.on('end', next)
    })
    extract.on('finish', resolve)
    extract.on('error', reject)
    stream.pipe(extract)
  })
  return Buffer.concat(chunks)
}

export interface ConcurrencyResult {
  sandboxes: number
  emulator_wall_ms: number
  raw_wall_ms: number
  emulator_errors: number
  raw_errors: number
  emulator_peak_rss_mb: number
}

/** 50 sandboxes created, exec'd and destroyed at once, through the SDK and on raw Docker. */
export async function benchConcurrency(
  isorun: Isorun,
  raw: RawDocker,
  image: string,
  emulatorPid: number,
  n = 50,
): Promise<ConcurrencyResult> {
  const one = async () => {
    const s = await isorun.create({ image })
    const r = await s.exec('echo ok')
    if (r.stdout !== 'ok\n') throw new Error('bad exec output')
    await s.destroy()
  }
  const [emWall, emResults] = await timed(() => Promise.allSettled(Array.from({ length: n }, one)))
  const oneRaw = async () => {
    const c = await raw.create(image)
    await raw.exec(c, 'echo ok')
    await raw.destroy(c)
  }
  const [rawWall, rawResults] = await timed(() => Promise.allSettled(Array.from({ length: n }, oneRaw)))
  const status = readFileSync(`/proc/${emulatorPid}/status`, 'utf8')
  const hwmKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0)
  const failed = emResults.filter((r) => r.status === 'rejected')
  if (failed[0]) console.error('first emulator failure:', (failed[0] as PromiseRejectedResult).reason)
  return {
    sandboxes: n,
    emulator_wall_ms: Math.round(emWall),
    raw_wall_ms: Math.round(rawWall),
    emulator_errors: failed.length,
    raw_errors: rawResults.filter((r) => r.status === 'rejected').length,
    emulator_peak_rss_mb: Math.round(hwmKb / 1024),
  }
}

/** Warm create: with the pool on, once refilled, create hands out a started container. */
export async function benchWarmCreate(isorun: Isorun, image: string, rounds: number): Promise<number[]> {
  const times: number[] = []
  await (await isorun.create({ image })).destroy() // puts the image in demand
  for (let i = 0; i < rounds; i++) {
    await new Promise((r) => setTimeout(r, 1500)) // let the pool refill
    const [t, s] = await timed(() => isorun.create({ image }))
    times.push(t)
    await s.destroy()
  }
  return times
}

/**
 * Does a pool refill slow the API? Exec latency on a sandbox while the pool is idle vs right after a
 * create took a pooled container (so a refill is running), alternating.
 */
export async function benchRefillInterference(
  isorun: Isorun,
  image: string,
  rounds: number,
): Promise<{ idle: number[]; refilling: number[] }> {
  const s = await isorun.create({ image })
  const idle: number[] = []
  const refilling: number[] = []
  try {
    for (let i = 0; i < rounds; i++) {
      await new Promise((r) => setTimeout(r, 1500)) // pool full again
      for (let k = 0; k < 3; k++) idle.push((await timed(() => s.exec('true')))[0])
      const taken = await isorun.create({ image }) // starts a refill behind it
      for (let k = 0; k < 3; k++) refilling.push((await timed(() => s.exec('true')))[0])
      await taken.destroy()
    }
  } finally {
    await s.destroy()
  }
  return { idle, refilling }
}
