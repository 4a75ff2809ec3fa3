import { randomBytes } from 'node:crypto'
import { z } from 'zod'

/** A fault to inject, as `POST /_emulator/faults` takes it. */
export const FaultSpec = z.object({
  method: z.string().min(1).max(16).optional(),
  // A regular expression matched against the request path (no query string).
  path: z
    .string()
    .min(1)
    .max(1000)
    .refine((p) => {
      try {
        new RegExp(p)
        return true
      } catch {
        return false
      }
    }, 'must be a valid regular expression'),
  api_key: z.string().min(1).optional(),
  status: z.number().int().min(100).max(599).optional(),
  body: z.unknown().optional(),
  delay_ms: z.number().int().min(0).max(600_000).optional(),
  // Default: unlimited.
  times: z.number().int().min(1).optional(),
  probability: z.number().min(0).max(1).optional(),
  action: z.enum(['error', 'drop_connection', 'exec_timeout', 'fork_partial']).default('error'),
  // fork_partial: how many of the asked-for children fail.
  fail_children: z.number().int().min(1).max(20).optional(),
})
export type FaultSpec = z.infer<typeof FaultSpec>

export interface Fault extends FaultSpec {
  id: string
  /** Times it has fired. */
  hits: number
}

/**
 * The faults test authors inject: each matches requests by method, path pattern and key, fires with
 * a probability up to a number of times, and then errors, delays, drops the connection, or bends the
 * answer of an exec or a fork. Kept in memory; `DELETE /_emulator/faults` clears them.
 */
export class FaultInjector {
  private readonly faults: Fault[] = []
  private readonly random: () => number

  constructor(random: () => number = Math.random) {
    this.random = random
  }

  add(spec: FaultSpec): Fault {
    const fault: Fault = { ...spec, id: `fault${randomBytes(6).toString('hex')}`, hits: 0 }
    this.faults.push(fault)
    return fault
  }

  list(): Fault[] {
    return [...this.faults]
  }

  /** Whether any fault is set (so every request must be looked at). */
  armed(): boolean {
    return this.faults.length > 0
  }

  remove(id: string): boolean {
    const i = this.faults.findIndex((f) => f.id === id)
    if (i < 0) return false
    this.faults.splice(i, 1)
    return true
  }

  clear(): number {
    return this.faults.splice(0).length
  }

  /** The first fault that matches and fires for this request (its count is taken), if any. */
  match(method: string, path: string, apiKey: string | undefined): Fault | undefined {
    for (const f of this.faults) {
      if (f.method && f.method.toUpperCase() !== method.toUpperCase()) continue
      if (f.api_key && f.api_key !== apiKey) continue
      if (!new RegExp(f.path).test(path)) continue
      if (f.times !== undefined && f.hits >= f.times) continue
      if (f.probability !== undefined && this.random() >= f.probability) continue
      f.hits++
      return f
    }
    return undefined
  }
}
