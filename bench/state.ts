import { cp, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type Docker from 'dockerode'
import type { Isorun } from 'isorun'
import type { RawDocker } from './raw-docker.ts'
import { timed } from './stats.ts'

/** Sample times (ms) per operation, emulator and raw Docker side by side. */
export type StateSamples = Record<string, { emulator: number[]; raw: number[] }>

const COUNTER = `sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' >/dev/null 2>&1 </dev/null &`

/**
 * Snapshot + restore, fork(5) and hibernate + resume through the SDK, against the same CRIU work done by
 * hand on the Engine API (pause, checkpoint, commit, unpause; create, copy the checkpoint in, start from
 * it). Each sandbox runs a counting shell loop, so there is memory to carry.
 */
export async function benchState(
  isorun: Isorun,
  raw: RawDocker,
  image: string,
  rounds: number,
): Promise<StateSamples> {
  const samples: StateSamples = {}
  const add = (name: string, side: 'emulator' | 'raw', ms: number) => {
    samples[name] ??= { emulator: [], raw: [] }
    samples[name][side].push(ms)
  }
  const rootDir = (await raw.docker.info()).DockerRootDir as string

  for (let i = 0; i < rounds; i++) {
    // Emulator, through the SDK.
    const s = await isorun.create({ image })
    await s.exec(COUNTER)
    // exec on the running sandbox, then the first exec right after each checkpoint operation: the
    // "raw" column of those rows is this exec before the checkpoint.
    const [tBefore] = await timed(() => s.exec('echo hi'))
    const [tSnap, snap] = await timed(() => s.snapshot())
    add('snapshot', 'emulator', tSnap)
    const [tRestore, restored] = await timed(() => isorun.restore(snap.id))
    add('restore', 'emulator', tRestore)
    add('snapshot + restore', 'emulator', tSnap + tRestore)
    add('exec right after restore (vs before)', 'emulator', (await timed(() => restored.exec('echo hi')))[0])
    add('exec right after restore (vs before)', 'raw', tBefore)
    const [tFork, kids] = await timed(() => s.fork(5))
    if (kids.length !== 5) throw new Error(`fork(5) gave ${kids.length} children`)
    add('fork(5)', 'emulator', tFork)
    for (const kid of kids) {
      add('exec right after fork (vs before)', 'emulator', (await timed(() => kid.exec('echo hi')))[0])
      add('exec right after fork (vs before)', 'raw', tBefore)
    }
    const [tHib] = await timed(() => s.hibernate())
    const [tRes] = await timed(() => s.resume())
    add('hibernate + resume', 'emulator', tHib + tRes)
    add('exec right after resume (vs before)', 'emulator', (await timed(() => s.exec('echo hi')))[0])
    add('exec right after resume (vs before)', 'raw', tBefore)
    await Promise.all([s, restored, ...kids].map((x) => x.destroy()))
    await isorun.deleteSnapshot(snap.id)

    // Raw Docker, by hand.
    const c = await raw.createCheckpointable(image)
    await raw.exec(c, COUNTER)
    const name = `bench${i}`
    const [tRawSnap] = await timed(async () => {
      await c.pause()
      await (c as unknown as Checkpointable).createCheckpoint({ CheckpointID: name, Exit: false })
      await c.commit({ repo: 'isorun-bench-snap', tag: name, pause: false })
      await c.unpause()
    })
    add('snapshot', 'raw', tRawSnap)
    // A new container from the committed image, started from a copy of the checkpoint `checkpoint`.
    const restoreOne = async (checkpoint: string) => {
      const n = await raw.createCheckpointable(`isorun-bench-snap:${checkpoint}`, false)
      const dest = join(rootDir, 'containers', n.id, 'checkpoints', checkpoint)
      await mkdir(join(dest, '..'), { recursive: true })
      await cp(join(rootDir, 'containers', c.id, 'checkpoints', checkpoint), dest, { recursive: true })
      await writeFile(join(dest, 'nonce'), n.id)
      await raw.startFromCheckpoint(n, checkpoint)
      return n
    }
    const [tRawRestore, r1] = await timed(() => restoreOne(name))
    add('restore', 'raw', tRawRestore)
    add('snapshot + restore', 'raw', tRawSnap + tRawRestore)
    const [tRawFork, rawKids] = await timed(async () => {
      await c.pause()
      await (c as unknown as Checkpointable).createCheckpoint({ CheckpointID: `${name}f`, Exit: false })
      await c.commit({ repo: 'isorun-bench-snap', tag: `${name}f`, pause: false })
      await c.unpause()
      return Promise.all(Array.from({ length: 5 }, () => restoreOne(`${name}f`)))
    })
    add('fork(5)', 'raw', tRawFork)
    const [tRawHib] = await timed(async () => {
      await (c as unknown as Checkpointable).createCheckpoint({ CheckpointID: 'hib', Exit: true })
      while ((await c.inspect()).State.Running) await new Promise((r) => setTimeout(r, 20))
      const dir = join(rootDir, 'containers', c.id, 'checkpoints', 'hib')
      await writeFile(join(dir, 'nonce'), String(Date.now()))
      await raw.startFromCheckpoint(c, 'hib')
    })
    add('hibernate + resume', 'raw', tRawHib)
    await Promise.all([c, r1, ...rawKids].map((x) => raw.destroy(x)))
    for (const tag of [name, `${name}f`]) {
      await raw.docker
        .getImage(`isorun-bench-snap:${tag}`)
        .remove()
        .catch(() => {})
    }
  }
  return samples
}

interface Checkpointable {
  createCheckpoint(opts: { CheckpointID: string; Exit: boolean }): Promise<unknown>
}

export type { Docker }
