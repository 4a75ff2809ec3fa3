import { readFileSync } from 'node:fs'

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
