import { z } from 'zod'
import type { HistoryRecord } from '../accounts/history.ts'
import type { UsageWire } from '../accounts/usage.ts'
import type { AuditEntry } from '../audit/chain.ts'
import type { Capabilities } from '../capabilities.ts'
import { type Fault, FaultSpec } from '../control/faults.ts'
import type { JournalEntry } from '../control/journal.ts'
import type { ResetResult } from '../control/reset.ts'
import type { Tenant } from '../control/tenants.ts'
import type { NetworkProfile } from '../egress/profiles.ts'
import type { ForkResult } from '../sandboxes/checkpoints.ts'
import type { ExecResult } from '../sandboxes/guest-operations.ts'
import { hashApiKey } from '../sandboxes/ids.ts'
import type { DestroyResult } from '../sandboxes/lifecycle.ts'
import type { Sandbox } from '../sandboxes/sandbox.ts'
import type { SnapshotRecord } from '../sandboxes/snapshot-store.ts'
import { SAMPLE_API_KEY } from './auth.ts'
import type { ErrorBody } from './error-handler.ts'
import { jsonStringBytes } from './json-bytes.ts'
import { RunParams } from './schemas.ts'

/**
 * The wire format, in one place: response bodies as zod schemas (for the OpenAPI document; strict,
 * because they are exactly what the emulator sends: test/openapi.test.ts parses real answers with them),
 * and below them the functions that turn the domain's camelCase into those bodies. Each function's
 * return type is its schema's, so tsc fails when the two drift apart; the checks at the bottom do the
 * same for the few types that other modules keep in wire form (history, usage, audit entries).
 */

export const ErrorWire = z
  .strictObject({
    error: z.string().meta({
      description:
        'the readable message; first, as the SDK expects (IsorunError.message shows the first 200 bytes of the body)',
    }),
    code: z.string().meta({
      description:
        'stable: unauthorized, validation_failed, not_found, route_not_found, conflict, image_unavailable, payload_too_large, not_a_file, not_a_directory, capability_unavailable, not_implemented, bad_gateway, engine_unavailable, engine_error, internal, ...',
    }),
    details: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({ description: 'e.g. `field` for validation_failed, `id` for not_found' }),
  })
  .meta({ description: 'The one error shape of every failure.' })

export const RunRecordWire = z.strictObject({
  id: z.string(),
  status: z
    .enum(['running', 'hibernated', 'exited'])
    .meta({ description: '`exited`: its container stopped without being asked to (docs/api.md)' }),
  image: z.string(),
  vcpus: z.number().int(),
  mem_mib: z.number().int(),
  disk_mib: z.number().int(),
  create_ms: z.number(),
  created_at: z.string(),
  timeout: z.number().meta({ description: 'idle seconds before auto-destroy; 0 = never' }),
})

export const RunListWire = z.strictObject({ runs: z.array(RunRecordWire) })

export const ExecResultWire = z.strictObject({
  exit_code: z.number().int().meta({ description: '124 when the timeout killed the command' }),
  stdout: z.string(),
  stderr: z.string(),
})

export const DestroyResultWire = z.strictObject({
  status: z.literal('destroyed'),
  cpu_ms: z.number(),
  mem_peak_bytes: z.number(),
  uptime_ms: z.number(),
  cost_cents: z.number(),
})

export const DirEntriesWire = z.strictObject({ entries: z.array(z.string()) })

export const SnapshotWire = z.strictObject({
  snapshot_id: z.string(),
  id: z.string(),
  run_id: z.string(),
  size_bytes: z.number(),
  created_at: z.string(),
  memory: z.boolean().meta({ description: 'whether processes and memory were captured (CRIU)' }),
})

export const SnapshotListWire = z.strictObject({ snapshots: z.array(SnapshotWire) })

export const SnapshotDeletedWire = z.strictObject({ status: z.literal('deleted'), snapshot_id: z.string() })

export const ForkFailureWire = z.strictObject({
  index: z.number().int(),
  code: z.string(),
  message: z.string(),
})

export const ForkResultWire = z.strictObject({
  forks: z.array(RunRecordWire),
  failed: z.array(ForkFailureWire),
})

export const UsageWireSchema = z.strictObject({
  active_sandboxes: z.number().int(),
  history_sandboxes: z.number().int(),
  active_cost_cents: z.number(),
  history_cost_cents: z.number(),
  total_cost_cents: z.number(),
  cpu_seconds: z.number(),
  mem_seconds: z.number(),
  as_of: z.string(),
})

export const HistoryEntryWire = z.strictObject({
  id: z.string(),
  image: z.string(),
  vcpus: z.number().int(),
  mem_mib: z.number().int(),
  create_ms: z.number(),
  created_at: z.string(),
  destroyed_at: z.string(),
  uptime_ms: z.number(),
  cpu_ms: z.number(),
  mem_peak_bytes: z.number(),
  cost_cents: z.number(),
  billable_ms: z.number(),
})

export const HistoryWire = z.strictObject({ sandboxes: z.array(HistoryEntryWire) })

/** One line of `GET /v1/runs/:id/audit` (application/x-ndjson). */
export const AuditEntryWire = z.strictObject({
  seq: z.number().int(),
  ts: z.string(),
  sandbox_id: z.string(),
  event: z.string(),
  data: z.record(z.string(), z.unknown()),
  hmac: z.string(),
})

/** `GET /v1/network-profiles`: a bare array, as the SDK reads it. */
export const NetworkProfileWire = z.strictObject({
  name: z.string(),
  description: z.string().optional(),
  allow: z.array(z.string()),
  deny: z.array(z.string()),
})

export const NetworkProfileListWire = z.array(NetworkProfileWire)

// --- the emulator's own namespace, /_emulator --------------------------------------------------

export const HealthWire = z.strictObject({ status: z.literal('ok') })

const section = (description: string) => z.looseObject({}).meta({ description })

/** By section; the sections' fields are what src/capabilities.ts describes (docs/api.md). */
export const CapabilitiesWire = z.strictObject({
  engine: section('what the engine said at start (null: not asked)').nullable(),
  engines: section('what each engine can do on this host and on another'),
  limits: section('which resource limits are enforced; per sandbox and per key'),
  exec: section('exec output limit, what a timeout kills'),
  memory_state: section('whether checkpoints keep processes and memory (CRIU) or files only'),
  egress: section('how egress policies are enforced here, as of now'),
  proxy_fast_lane: z.boolean(),
  cdp_root_discovery: section('DevTools discovery at the root'),
  image_map: z.array(z.strictObject({ requested: z.string(), image: z.string(), from: z.string() })).meta({
    description: 'what each requested image runs as here (the image map), and where that came from',
  }),
})

export const FaultWire = FaultSpec.extend({
  id: z.string(),
  hits: z.number().int().meta({ description: 'times it has fired' }),
}).strict()
export const FaultListWire = z.strictObject({ faults: z.array(FaultWire) })
export const FaultAddedWire = z.strictObject({ id: z.string() })
export const FaultDeletedWire = z.strictObject({ deleted: z.string() })
export const FaultsClearedWire = z.strictObject({
  deleted: z.number().int().meta({ description: 'how many faults there were' }),
})

export const ClockWire = z.strictObject({ mode: z.enum(['virtual', 'real']), now: z.string() })
export const ClockAdvancedWire = z.strictObject({ now: z.string() })

export const ResetWire = z.strictObject({
  destroyed: z.number().int(),
  snapshots_deleted: z.number().int(),
})

export const JournalEntryWire = z.strictObject({
  at: z.string(),
  method: z.string(),
  path: z.string(),
  key_hash: z.string().nullable(),
  status: z.number().int(),
  duration_ms: z.number(),
  body: z.unknown().optional().meta({
    description: 'the JSON body (absent without one), credential values masked; its head past 4 KiB',
  }),
  body_truncated: z.literal(true).optional(),
  body_bytes: z.number().int().optional(),
})
export const JournalWire = z.strictObject({ requests: z.array(JournalEntryWire) })

/** `GET /_emulator/tenants` (toTenantWire below). */
export const TenantsWire = z.strictObject({
  now: z.string(),
  tenants: z.array(
    z.strictObject({
      tenant: z.string().meta({ description: 'the API key’s SHA-256' }),
      label: z.string(),
      snapshots: z.number().int(),
      destroyed: z.number().int(),
      last_created_at: z.string().nullable(),
      sandboxes: z.array(
        z.strictObject({
          id: z.string(),
          last_activity_at: z.string(),
          idle_deadline_at: z.string().nullable(),
          busy: z.boolean(),
          network: z
            .strictObject({
              profile: z.string().nullable(),
              allow: z.array(z.string()).optional(),
              deny: z.array(z.string()).optional(),
            })
            .nullable(),
        }),
      ),
    }),
  ),
})

/** `GET /_emulator/runs/:id/exec-transport`. */
export const ExecTransportWire = z.strictObject({
  transport: z.string().meta({ description: 'agent, docker-exec or engine-exec (docs/agent.md)' }),
  reason: z.string(),
})

/** url(port)'s path parameters: validated in routes/proxy.ts by hand (the raw URL is forwarded as is). */
export const ProxyParams = z.object({
  id: RunParams.shape.id,
  port: z.number().int().min(1).max(65535),
})

export const ProxyRestParams = ProxyParams.extend({
  path: z.string().meta({
    description: 'the rest of the path (slashes included) and query, forwarded to the guest as sent',
  }),
})

// --- the domain, as the wire says it ---------------------------------------------------------

type Wire<S extends z.ZodType> = z.output<S>

/** A sandbox as the SDK reads it; one being destroyed still shows as running until it is gone. */
export function toRunWire(s: Sandbox): Wire<typeof RunRecordWire> {
  return {
    id: s.id,
    status: s.status === 'destroying' ? 'running' : s.status,
    image: s.image,
    vcpus: s.vcpus,
    mem_mib: s.memMib,
    disk_mib: s.diskMib,
    create_ms: s.createMs,
    created_at: new Date(s.createdAt).toISOString(),
    timeout: s.timeoutSec,
  }
}

/**
 * An exec's answer as JSON bytes: `ExecResultWire`, its output decoded as UTF-8. Written by hand rather
 * than through JSON.stringify, which costs several times more on megabytes of output (json-bytes.ts).
 */
export function toExecWireJson(r: ExecResult): Buffer {
  const head = `{"exit_code":${JSON.stringify(r.exitCode satisfies Wire<typeof ExecResultWire>['exit_code'])},"stdout":`
  return Buffer.concat([
    Buffer.from(head),
    jsonStringBytes(r.stdout),
    Buffer.from(',"stderr":'),
    jsonStringBytes(r.stderr),
    Buffer.from('}'),
  ])
}

export function toDestroyWire(r: DestroyResult): Wire<typeof DestroyResultWire> {
  return {
    status: 'destroyed',
    cpu_ms: r.cpuMs,
    mem_peak_bytes: r.memPeakBytes,
    uptime_ms: r.uptimeMs,
    cost_cents: r.costCents,
  }
}

/** The snapshot as the SDK reads it; `memory` says whether processes were captured too. */
export function toSnapshotWire(r: SnapshotRecord): Wire<typeof SnapshotWire> {
  return {
    snapshot_id: r.id,
    id: r.id,
    run_id: r.runId,
    size_bytes: r.sizeBytes,
    created_at: new Date(r.createdAt).toISOString(),
    memory: r.memory,
  }
}

/** Children that failed are reported beside the ones that started, never swallowed. */
export function toForkWire(r: ForkResult): Wire<typeof ForkResultWire> {
  return {
    forks: r.forks.map(toRunWire),
    failed: r.failed.map((f) => ({ index: f.index, code: f.code, message: f.message })),
  }
}

/** `POST /_emulator/reset` (and startEmulator()'s reset()). */
export function toResetWire(r: ResetResult): Wire<typeof ResetWire> {
  return { destroyed: r.destroyed, snapshots_deleted: r.snapshotsDeleted }
}

// --- drift checks: each schema must describe the type kept in wire form, field for field ---------

type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false
/** The schema's output is assignable to the domain type and has exactly its keys. */
type Describes<S extends z.ZodType, T> = [z.output<S>] extends [T] ? SameKeys<z.output<S>, T> : false
type Holds<T extends true> = T

export type WireDriftChecks = [
  Holds<Describes<typeof ErrorWire, ErrorBody>>,
  Holds<Describes<typeof UsageWireSchema, UsageWire>>,
  Holds<Describes<typeof HistoryEntryWire, Omit<HistoryRecord, 'owner' | 'reason'>>>,
  Holds<Describes<typeof AuditEntryWire, AuditEntry>>,
  Holds<Describes<typeof NetworkProfileWire, NetworkProfile>>,
  Holds<Describes<typeof JournalEntryWire, JournalEntry>>,
  Holds<SameKeys<z.output<typeof FaultWire>, Fault>>,
  Holds<SameKeys<z.output<typeof CapabilitiesWire>, Capabilities>>,
]

/** `GET /_emulator/tenants`: a tenant is an API key by its SHA-256; `label` names the banner's sample key. */
export function toTenantWire(t: Tenant): Wire<typeof TenantsWire>['tenants'][number] {
  return {
    tenant: t.owner,
    label: t.owner === SAMPLE_KEY_HASH ? SAMPLE_API_KEY : `key ${t.owner.slice(0, 12)}`,
    snapshots: t.snapshots,
    destroyed: t.destroyed,
    last_created_at: t.lastCreatedAt ? new Date(t.lastCreatedAt).toISOString() : null,
    sandboxes: t.sandboxes.map((s) => ({
      id: s.id,
      last_activity_at: new Date(s.lastActivityAt).toISOString(),
      idle_deadline_at: s.idleDeadlineAt === undefined ? null : new Date(s.idleDeadlineAt).toISOString(),
      busy: s.busy,
      network: s.egress
        ? { profile: s.egress.profile ?? null, allow: s.egress.allow, deny: s.egress.deny }
        : null,
    })),
  }
}

const SAMPLE_KEY_HASH = hashApiKey(SAMPLE_API_KEY)
