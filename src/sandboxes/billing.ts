import type { PricingConfig } from '../config.ts'

const MIB_PER_GIB = 1024

/**
 * Cost of a sandbox, billed like the real service: by allocated size and billable (not hibernated)
 * time, in US cents, rounded to 1/10000 of a cent so that short sandboxes still show a cost.
 */
export function costCents(pricing: PricingConfig, vcpus: number, memMib: number, billableMs: number): number {
  const seconds = billableMs / 1000
  const cents = seconds * (vcpus * pricing.vcpuSecondCents + (memMib / MIB_PER_GIB) * pricing.gibSecondCents)
  return Math.round(cents * 10_000) / 10_000
}
