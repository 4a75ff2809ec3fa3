import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's CPU counters (USER_HZ; 100 on Linux everywhere that matters). */
const TICK_US = 10_000

/**
 * CPU time spent so far, in microseconds: by the whole machine (every core, every process, the kernel's
 * network work included) and by one process. Linux /proc only; undefined elsewhere.
 */
export function cpuNow(pid?: number): { machineUs: number; processUs: number } | undefined {
  try {
    const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number)
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields
    const machineUs = (user + nice + system + irq + softirq + steal) * TICK_US
    let processUs = 0
    if (pid) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      // Fields after the command name (which may hold spaces): utime is the 14th, stime the 15th.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      processUs = (Number(rest[11]) + Number(rest[12])) * TICK_US
    }
    return { machineUs, processUs }
  } catch {
    return undefined
  }
}

/** CPU of one process and of its children it has reaped (utime, stime, cutime, cstime), µs. */
export function processTreeUs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14])) * TICK_US
  } catch {
    return 0
  }
}

/** Processes whose command line matches, by pid. */
export function pidsOf(match: (cmdline: string) => boolean): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ')
      if (match(cmdline)) pids.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

/** The CPU a container's processes have used (its cgroup), µs; undefined where unreadable. */
export function containerCpuUs(containerId: string): number | undefined {
  for (const path of [
    `/sys/fs/cgroup/cpuacct/docker/${containerId}/cpuacct.usage`,
    `/sys/fs/cgroup/cpu,cpuacct/docker/${containerId}/cpuacct.usage`,
  ]) {
    try {
      return Number(readFileSync(path, 'utf8').trim()) / 1000
    } catch {
      // not this layout
    }
  }
  for (const path of [
    `/sys/fs/cgroup/docker/${containerId}/cpu.stat`,
    `/sys/fs/cgroup/system.slice/docker-${containerId}.scope/cpu.stat`,
  ]) {
    try {
      const usage = /usage_usec (\d+)/.exec(readFileSync(path, 'utf8'))?.[1]
      if (usage) return Number(usage)
    } catch {
      // not this layout
    }
  }
  return undefined
}
