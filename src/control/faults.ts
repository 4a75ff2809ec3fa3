import { randomBytes } from 'node:crypto'
import { RE2JS } from 're2js'
import { z } from 'zod'
import { MAX_FORK_COUNT } from '../sandboxes/checkpoints.ts'

/**
 * Fault path patterns run on RE2's linear-time engine (re2js), never on a backtracking one: a pattern
 * such as `^/v1/(\w+\w?)+$` and one request to a long path would otherwise hold the event loop, and
 * every request with it, for minutes. RE2 is JavaScript's syntax without lookaround and backreferences;
 * a pattern it cannot run is refused when the fault is added.
 *
 * Linear in the path, RE2's time still grows with the pattern's program: `(a|b|c|d){1000}` (3000
 * instructions) took seconds on a 16 KiB path, the longest request head Node takes. Path patterns
 * need a few dozen instructions; past this many a pattern is refused.
 */
export const MAX_PATTERN_INSTRUCTIONS = 240

export function compilePattern(pattern: string): RE2JS {
  return RE2JS.compile(pattern)
}

/** Why `pattern` is refused, or undefined when it can run, quickly. */
function patternProblem(pattern: string): string | undefined {
  let compiled: RE2JS
  try {
    compiled = compilePattern(pattern)
  } catch (err) {
    return `must be a regular expression the linear-time matcher (RE2 syntax: no lookaround, no backreferences) accepts: ${(err as Error).message}`
  }
  const size = compiled.programSize()
  if (size > MAX_PATTERN_INSTRUCTIONS) {
    return `is too large to match long paths quickly (${size} instructions, at most ${MAX_PATTERN_INSTRUCTIONS}): use fewer or smaller counted repetitions`
  }
  return undefined
}

/** A fault to inject, as `POST /_emulator/faults` takes it. */
export const FaultSpec = z.object({
  // An HTTP method token (compared without case).
  method: z
    .string()
    .min(1)
    .max(16)
    .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP method')
    .optional(),
  // A regular expression matched against the request path (no query string), in RE2's syntax.
  path: z
    .string()
    .min(1)
    .max(1000)
    .superRefine((p, ctx) => {
      const problem = patternProblem(p)
      if (problem) ctx.addIssue({ code: 'custom', message: problem })
    }),
  api_key: z.string().min(1).optional(),
  status: z.number().int().min(100).max(599).optional(),
  body: z.unknown().optional(),
  delay_ms: z.number().int().min(0).max(600_000).optional(),
  // Default: unlimited.
  times: z.number().int().min(1).optional(),
  probability: z.number().min(0).max(1).optional(),
  action: z.enum(['error', 'drop_connection', 'exec_timeout', 'fork_partial']).default('error'),
  // fork_partial: how many of the asked-for children fail.
  fail_children: z.number().int().min(1).max(MAX_FORK_COUNT).optional(),
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
  /** Each fault's compiled path pattern, by id (kept off the Fault, which the API lists as JSON). */
  private readonly patterns = new Map<string, RE2JS>()
  private readonly random: () => number

  constructor(random: () => number = Math.random) {
    this.random = random
  }

  /** Adds a fault; throws when its path pattern cannot be compiled (the route's schema says so first). */
  add(spec: FaultSpec): Fault {
    const problem = patternProblem(spec.path)
    if (problem) throw new Error(`fault path pattern ${JSON.stringify(spec.path)} ${problem}`)
    const fault: Fault = { ...spec, id: `fault${randomBytes(6).toString('hex')}`, hits: 0 }
    this.patterns.set(fault.id, compilePattern(spec.path))
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
    this.patterns.delete(id)
    return true
  }

  clear(): number {
    this.patterns.clear()
    return this.faults.splice(0).length
  }

  /** The first fault that matches and fires for this request (its count is taken), if any. */
  match(method: string, path: string, apiKey: string | undefined): Fault | undefined {
    for (const f of this.faults) {
      if (f.method && f.method.toUpperCase() !== method.toUpperCase()) continue
      if (f.api_key && f.api_key !== apiKey) continue
      if (!this.patterns.get(f.id)?.test(path)) continue
      if (f.times !== undefined && f.hits >= f.times) continue
      if (f.probability !== undefined && this.random() >= f.probability) continue
      f.hits++
      return f
    }
    return undefined
  }
}
