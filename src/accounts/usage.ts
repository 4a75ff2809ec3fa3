import type { PricingConfig } from '../config.ts'
import { costCents } from '../sandboxes/billing.ts'
import { billableMs, type Sandbox } from '../sandboxes/sandbox.ts'
import type { HistoryRecord } from './history.ts'

/** `GET /v1/usage` as the SDK reads it. */
export interface UsageWire {
  active_sandboxes: number
  history_sandboxes: number
  active_cost_cents: number
  history_cost_cents: number
  total_cost_cents: number
  /** vCPU-seconds billed (allocation x billable time), active and destroyed sandboxes together. */
  cpu_seconds: number
  /** GiB-seconds of memory billed, likewise. */
  mem_seconds: number
  as_of: string
}

const round4 = (x: number) => Math.round(x * 10_000) / 10_000

/**
 * One key's usage: active sandboxes costed up to `now` by the same formula destroy uses, plus every
 * destroyed one as its history entry recorded it, so total = active + history exactly.
 */
export function usageOf(
  pricing: PricingConfig,
  active: Sandbox[],
  history: HistoryRecord[],
  now: number,
): UsageWire {
  let activeCost = 0
  let cpuSeconds = 0
  let memSeconds = 0
  for (const s of active) {
    const ms = billableMs(s, now)
    activeCost += costCents(pricing, s.vcpus, s.memMib, ms)
    cpuSeconds += (s.vcpus * ms) / 1000
    memSeconds += ((s.memMib / 1024) * ms) / 1000
  }
  let historyCost = 0
  for (const h of history) {
    historyCost += h.cost_cents
    cpuSeconds += (h.vcpus * h.billable_ms) / 1000
    memSeconds += ((h.mem_mib / 1024) * h.billable_ms) / 1000
  }
  return {
    active_sandboxes: active.length,
    history_sandboxes: history.length,
    active_cost_cents: round4(activeCost),
    history_cost_cents: round4(historyCost),
    total_cost_cents: round4(round4(activeCost) + round4(historyCost)),
    cpu_seconds: round4(cpuSeconds),
    mem_seconds: round4(memSeconds),
    as_of: new Date(now).toISOString(),
  }
}
