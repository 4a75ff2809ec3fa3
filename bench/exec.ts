import type { Isorun } from 'isorun'
import { containerCpuUs, pidsOf, processTreeUs } from './cpu.ts'
import type { RawDocker } from './raw-docker.ts'
import { timed } from './stats.ts'

export type Samples = Record<string, { emulator: number[]; raw: number[] }>

const ONE_MB = 'head -c 1048576 /dev/zero | tr "\\0" a'

/** CPU per `echo hi`, µs, by who spends it. */
export interface ExecCpu {
  execs: number
  emulator: {
    emulator_process: number
    sandbox: number
    shim: number
    docker_daemons: number
    client: number
    total: number
  }
  raw: {
    emulator_process: number
    sandbox: number
    shim: number
    docker_daemons: number
    client: number
    total: number
  }
}

/**
 * exec on a sandbox that is already running, through the SDK and with raw `docker exec` (create, start,
 * inspect) on a container configured the same, alternating: `echo hi` and 1 MB of output.
 */
export async function benchExec(
  isorun: Isorun,
  raw: RawDocker,
  image: string,
  rounds: number,
): Promise<Samples> {
  const samples: Samples = {}
  const add = (name: string, side: 'emulator' | 'raw', ms: number) => {
    samples[name] ??= { emulator: [], raw: [] }
    samples[name][side].push(ms)
  }
  const s = await isorun.create({ image })
  const c = await raw.create(image)
  try {
    await s.exec('true')
    await raw.exec(c, 'true')
    for (let i = 0; i < rounds; i++) {
      for (let k = 0; k < 3; k++) {
        const [te, out] = await timed(() => s.exec('echo hi'))
        if (out.stdout !== 'hi\n') throw new Error('emulator exec: wrong output')
        add('exec echo hi', 'emulator', te)
        add('exec echo hi', 'raw', (await timed(() => raw.exec(c, 'echo hi')))[0])
      }
      const [tm, big] = await timed(() => s.exec(ONE_MB))
      if (big.stdout.length !== 1048576) throw new Error('emulator exec 1 MB: wrong output size')
      add('exec 1 MB output', 'emulator', tm)
      const [tr, rawBig] = await timed(() => raw.exec(c, ONE_MB))
      if (rawBig.bytes < 1048576) throw new Error('raw exec 1 MB: wrong output size')
      add('exec 1 MB output', 'raw', tr)
    }
  } finally {
    await s.destroy()
    await raw.destroy(c)
  }
  return samples
}

/** Everything an exec may cost CPU in, µs so far: who spends it is what the comparison is about. */
function cpuParts(emulatorPid: number, containerId: string) {
  const shim = pidsOf((c) => c.includes('containerd-shim') && c.includes(`-id ${containerId}`))
  const daemons = pidsOf((c) => /^(\S*\/)?(dockerd|containerd)( |$)/.test(c))
  const client = process.cpuUsage()
  return {
    emulator_process: processTreeUs(emulatorPid),
    sandbox: containerCpuUs(containerId) ?? 0,
    shim: shim.reduce((sum, pid) => sum + processTreeUs(pid), 0),
    docker_daemons: daemons.reduce((sum, pid) => sum + processTreeUs(pid), 0),
    client: client.user + client.system,
  }
}

type Parts = ReturnType<typeof cpuParts>

function perExec(before: Parts, after: Parts, execs: number) {
  const part = (k: keyof Parts) => Math.round((after[k] - before[k]) / execs)
  const parts = {
    emulator_process: part('emulator_process'),
    sandbox: part('sandbox'),
    shim: part('shim'),
    docker_daemons: part('docker_daemons'),
    client: part('client'),
  }
  return { ...parts, total: Object.values(parts).reduce((a, b) => a + b, 0) }
}

/**
 * CPU per `echo hi` over a batch of sequential execs on each side: the emulator process, the sandbox
 * (its cgroup: the agent and the command, or runc's init and the command), the container's shim (with
 * the runc processes it reaped), dockerd and containerd, and the bench's own client. The daemons serve
 * every container on the machine, so their share is an upper bound on a shared machine.
 */
export async function benchExecCpu(
  isorun: Isorun,
  raw: RawDocker,
  image: string,
  emulatorPid: number,
  execs = 100,
): Promise<ExecCpu> {
  const s = await isorun.create({ image })
  const c = await raw.create(image)
  try {
    const [found] = await raw.docker.listContainers({ all: true, filters: { name: [`isorun-${s.id}`] } })
    if (!found) throw new Error('bench: the sandbox has no container')
    await s.exec('true')
    await raw.exec(c, 'true')
    const e0 = cpuParts(emulatorPid, found.Id)
    for (let i = 0; i < execs; i++) await s.exec('echo hi')
    const e1 = cpuParts(emulatorPid, found.Id)
    const r0 = cpuParts(emulatorPid, c.id)
    for (let i = 0; i < execs; i++) await raw.exec(c, 'echo hi')
    const r1 = cpuParts(emulatorPid, c.id)
    return { execs, emulator: perExec(e0, e1, execs), raw: perExec(r0, r1, execs) }
  } finally {
    await s.destroy()
    await raw.destroy(c)
  }
}
