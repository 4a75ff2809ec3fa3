import type { SandboxEvent } from '../sandboxes/events.ts'

/**
 * An event's `data` as the audit log records it: snake_case, keys in this order. This is the format of
 * every audit file already written (the HMAC chain covers it) and of `GET /v1/runs/:id/audit`, so it
 * stays as it is while the domain's own payloads are free to change: a new field is added here on
 * purpose, never by accident.
 */
export function auditData(e: SandboxEvent): Record<string, unknown> {
  switch (e.event) {
    case 'sandbox.created': {
      const d = e.data
      return {
        image: d.image,
        vcpus: d.vcpus,
        mem_mib: d.memMib,
        disk_mib: d.diskMib,
        timeout: d.timeoutSec,
        credentials: d.credentialNames,
        ...(d.egress ? { network: d.egress } : {}),
      }
    }
    case 'sandbox.destroyed': {
      const d = e.data
      return {
        reason: d.reason,
        status: 'destroyed',
        cpu_ms: d.cpuMs,
        mem_peak_bytes: d.memPeakBytes,
        uptime_ms: d.uptimeMs,
        cost_cents: d.costCents,
        billable_ms: d.billableMs,
      }
    }
    case 'exec.start':
      return { command: e.data.command, timeout: e.data.timeoutSec }
    case 'exec.end': {
      const d = e.data
      return {
        exit_code: d.exitCode,
        timed_out: d.timedOut,
        duration_ms: d.durationMs,
        stdout_bytes: d.stdoutBytes,
        stderr_bytes: d.stderrBytes,
      }
    }
    case 'file.write':
      return { path: e.data.path, size: e.data.size }
    case 'timeout.set':
      return { timeout: e.data.timeoutSec }
    case 'snapshot.created':
      return { snapshot_id: e.data.snapshotId, size_bytes: e.data.sizeBytes, memory: e.data.memory }
    case 'sandbox.restored': {
      const d = e.data
      return 'forkedFrom' in d
        ? { forked_from: d.forkedFrom, memory: d.memory }
        : { snapshot_id: d.snapshotId, memory: d.memory }
    }
    case 'sandbox.forked': {
      const d = e.data
      return { count: d.count, children: d.children, failed: d.failed, memory: d.memory }
    }
    case 'sandbox.hibernated':
      return { memory: e.data.memory }
    case 'sandbox.resumed':
      return {}
    case 'sandbox.exited':
      return { reason: e.data.reason, exit_code: e.data.exitCode ?? null }
    case 'proxy.opened':
      return { port: e.data.port }
    case 'network.blocked': {
      const d = e.data
      return { host: d.host, port: d.port, method: d.method, reason: d.reason }
    }
  }
}
