import { readFileSync } from 'node:fs'
import { METHODS } from 'node:http'
import { z } from 'zod'
import { PENDING } from './routes/not-implemented.ts'
import {
  CreateRunBody,
  ExecBody,
  ForkBody,
  PatchRunBody,
  PathQuery,
  RestoreBody,
  RunParams,
  SnapshotParams,
} from './schemas.ts'
import {
  AuditEntryWire,
  DestroyResultWire,
  DirEntriesWire,
  ErrorWire,
  ExecResultWire,
  ForkResultWire,
  HistoryWire,
  NetworkProfileListWire,
  ProxyParams,
  ProxyRestParams,
  RunListWire,
  RunRecordWire,
  SnapshotDeletedWire,
  SnapshotListWire,
  SnapshotWire,
  UsageWireSchema,
} from './wire.ts'

/**
 * The OpenAPI 3.1 document of the /v1 surface, served at `GET /_emulator/openapi.json`. Request bodies,
 * query and path parameters are generated from the very zod schemas the routes validate with
 * (schemas.ts), responses from wire.ts; the table below only says which schema goes with which route.
 * test/openapi.test.ts fails when Fastify has a /v1 route this table does not document.
 */

type Method = 'get' | 'put' | 'post' | 'delete' | 'options' | 'head' | 'patch' | 'trace'
const OPENAPI_METHODS: readonly Method[] = [
  'get',
  'put',
  'post',
  'delete',
  'options',
  'head',
  'patch',
  'trace',
]

type ObjectSchema = z.ZodObject

interface Response {
  description: string
  schema?: z.ZodType
  /** Default application/json (with a schema) or no body (without). */
  contentType?: string
}

interface Operation {
  method: Method
  /** Fastify's form, under /v1: `/runs/:id`, `*` for a wildcard. */
  path: string
  operationId: string
  tag: string
  summary: string
  params?: ObjectSchema
  query?: ObjectSchema
  body?: ObjectSchema
  /** A raw (octet-stream) request body instead of JSON. */
  rawBody?: string
  responses: Record<string, Response>
  /** url(port): the URL is the credential. */
  public?: boolean
  description?: string
}

const noBody = (description: string): Response => ({ description })
const json = (description: string, schema: z.ZodType): Response => ({ description, schema })
const error = (description: string): Response => ({ description, schema: ErrorWire })

const OPERATIONS: Operation[] = [
  {
    method: 'post',
    path: '/runs',
    operationId: 'create',
    tag: 'runs',
    summary: 'Create a sandbox (a container with an init as PID 1, CPU and memory limits)',
    body: CreateRunBody,
    responses: { 201: json('the new sandbox', RunRecordWire) },
  },
  {
    method: 'get',
    path: '/runs',
    operationId: 'list',
    tag: 'runs',
    summary: "The calling key's sandboxes",
    responses: { 200: json('active sandboxes', RunListWire) },
  },
  {
    method: 'get',
    path: '/runs/:id',
    operationId: 'get',
    tag: 'runs',
    summary: 'One sandbox (counts as activity for the idle timer)',
    params: RunParams,
    responses: { 200: json('the sandbox', RunRecordWire) },
  },
  {
    method: 'patch',
    path: '/runs/:id',
    operationId: 'setTimeout',
    tag: 'runs',
    summary: 'Set the idle timeout (0 disables auto-destroy)',
    params: RunParams,
    body: PatchRunBody,
    responses: { 200: json('the sandbox', RunRecordWire) },
  },
  {
    method: 'delete',
    path: '/runs/:id',
    operationId: 'destroy',
    tag: 'runs',
    summary: 'Destroy a sandbox; returns what it used and cost',
    params: RunParams,
    responses: { 200: json('usage of the destroyed sandbox', DestroyResultWire) },
  },
  {
    method: 'post',
    path: '/runs/:id/exec',
    operationId: 'exec',
    tag: 'exec',
    summary: 'Run a command with /bin/sh -c; a timeout kills the whole process tree (exit code 124)',
    params: RunParams,
    body: ExecBody,
    responses: {
      200: json('the command finished (any exit code)', ExecResultWire),
      409: error('the sandbox is hibernated'),
    },
  },
  {
    method: 'post',
    path: '/runs/:id/files/upload',
    operationId: 'writeFile',
    tag: 'files',
    summary: 'Write a file (raw bytes of any content type, streamed)',
    params: RunParams,
    query: PathQuery,
    rawBody: 'the file content',
    responses: {
      204: noBody('written'),
      409: error('the sandbox is hibernated'),
      413: error('larger than ISORUN_EMULATOR_UPLOAD_LIMIT'),
    },
  },
  {
    method: 'get',
    path: '/runs/:id/files/download',
    operationId: 'readFile',
    tag: 'files',
    summary: 'Read a file',
    params: RunParams,
    query: PathQuery,
    responses: {
      200: { description: 'the file content', contentType: 'application/octet-stream' },
      409: error('the sandbox is hibernated'),
    },
  },
  {
    method: 'get',
    path: '/runs/:id/files',
    operationId: 'readdir',
    tag: 'files',
    summary: "A directory's entry names",
    params: RunParams,
    query: PathQuery,
    responses: { 200: json('entry names', DirEntriesWire), 409: error('the sandbox is hibernated') },
  },
  {
    method: 'post',
    path: '/runs/:id/snapshot',
    operationId: 'snapshot',
    tag: 'state',
    summary: "Snapshot files (docker commit) and, with CRIU, processes' memory; the sandbox keeps running",
    params: RunParams,
    responses: {
      201: json('the snapshot', SnapshotWire),
      409: error('hibernated, or (strict mode) memory cannot be kept'),
    },
  },
  {
    method: 'get',
    path: '/snapshots',
    operationId: 'listSnapshots',
    tag: 'state',
    summary: "The calling key's snapshots",
    responses: { 200: json('snapshots', SnapshotListWire) },
  },
  {
    method: 'delete',
    path: '/snapshots/:id',
    operationId: 'deleteSnapshot',
    tag: 'state',
    summary: 'Delete a snapshot',
    params: SnapshotParams,
    responses: { 200: json('deleted', SnapshotDeletedWire), 404: error('no such snapshot') },
  },
  {
    method: 'post',
    path: '/runs/restore',
    operationId: 'restore',
    tag: 'state',
    summary: 'A new sandbox from a snapshot; with CRIU its processes carry on',
    body: RestoreBody,
    responses: { 201: json('the new sandbox', RunRecordWire), 404: error('no such snapshot') },
  },
  {
    method: 'post',
    path: '/runs/:id/fork',
    operationId: 'fork',
    tag: 'state',
    summary: 'One checkpoint, `count` children started in parallel; failed children are listed',
    params: RunParams,
    body: ForkBody,
    responses: {
      201: json('the children that started, and those that did not', ForkResultWire),
      409: error('hibernated, or (strict mode) memory cannot be kept'),
    },
  },
  {
    method: 'post',
    path: '/runs/:id/hibernate',
    operationId: 'hibernate',
    tag: 'state',
    summary: 'Checkpoint to disk and stop (memory released); not billed while hibernated',
    params: RunParams,
    responses: { 200: json('the sandbox', RunRecordWire), 409: error('already hibernated') },
  },
  {
    method: 'post',
    path: '/runs/:id/resume',
    operationId: 'resume',
    tag: 'state',
    summary: 'Start a hibernated sandbox from its checkpoint: same id, same processes',
    params: RunParams,
    responses: { 200: json('the sandbox', RunRecordWire), 409: error('not hibernated') },
  },
  {
    method: 'get',
    path: '/usage',
    operationId: 'usage',
    tag: 'accounts',
    summary: 'Active sandboxes costed up to now, plus every destroyed one',
    responses: { 200: json('usage', UsageWireSchema) },
  },
  {
    method: 'get',
    path: '/runs/history',
    operationId: 'history',
    tag: 'accounts',
    summary: 'Every destroyed sandbox, newest first',
    responses: { 200: json('destroyed sandboxes', HistoryWire) },
  },
  {
    method: 'get',
    path: '/runs/:id/audit',
    operationId: 'auditLog',
    tag: 'accounts',
    summary: "A sandbox's HMAC-chained audit log, kept after destroy",
    params: RunParams,
    responses: {
      200: {
        description: 'one AuditEntry JSON object per line',
        contentType: 'application/x-ndjson',
        schema: z.string(),
      },
    },
  },
  {
    method: 'get',
    path: '/network-profiles',
    operationId: 'networkProfiles',
    tag: 'runs',
    summary: 'The named egress policies a create may ask for (network_profile)',
    responses: { 200: json('the profiles', NetworkProfileListWire) },
  },
  ...proxyOperations('/runs/:id/proxy/:port', ProxyParams, 'proxy'),
  ...proxyOperations('/runs/:id/proxy/:port/*', ProxyRestParams, 'proxyPath'),
]

/** url(port): every method Fastify routes, to the sandbox's port; the guest's answer is passed through. */
function proxyOperations(path: string, params: ObjectSchema, idPrefix: string): Operation[] {
  return OPENAPI_METHODS.map((method) => ({
    method,
    path,
    operationId: `${idPrefix}${method[0]?.toUpperCase()}${method.slice(1)}`,
    tag: 'proxy',
    summary: `url(port): ${method.toUpperCase()} to the sandbox's port, streamed both ways`,
    description:
      'No API key needed: the URL embeds the unguessable run id. A bearer header is accepted and not ' +
      'forwarded. WebSocket upgrades are passed through. The guest answers; errors below are the emulator’s.',
    params,
    public: true,
    responses: {
      default: { description: "the guest's answer, as it sent it", contentType: '*/*' },
      400: error('port is not an integer in [1, 65535]'),
      404: error('no such sandbox'),
      409: error('the sandbox is hibernated'),
      502: error('nothing listens on that port (yet)'),
    },
  }))
}

/** Methods the proxy also routes that OpenAPI 3.1 has no operation for (WebDAV and the like). */
const PROXY_EXTRA_METHODS = METHODS.filter(
  (m) => m !== 'CONNECT' && !OPENAPI_METHODS.includes(m.toLowerCase() as Method),
)

// --- generation -------------------------------------------------------------------------------

/** `/runs/:id/proxy/:port/*` → `/runs/{id}/proxy/{port}/{path}` */
export function openApiPath(fastifyPath: string): string {
  return fastifyPath.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}').replace(/\*$/, '{path}')
}

type JsonSchema = Record<string, unknown>

/** A standalone JSON Schema (2020-12, the dialect of OpenAPI 3.1) without the document-level keys. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _s, $id: _i, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' })
  return rest
}

/** What a parameter's schema cannot say (zod refinements do not become JSON Schema). */
const PARAMETER_NOTES: Record<string, string> = {
  path: 'an absolute path inside the sandbox',
}

interface Parameter {
  name: string
  in: 'path' | 'query'
  required: boolean
  schema: JsonSchema
  description?: string
}

function parameters(schema: ObjectSchema | undefined, where: 'path' | 'query'): Parameter[] {
  if (!schema) return []
  const s = jsonSchema(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] }
  return Object.entries(s.properties ?? {}).map(([name, prop]) => {
    const { description = where === 'query' ? PARAMETER_NOTES[name] : undefined, ...rest } = prop
    return {
      name,
      in: where,
      required: where === 'path' || (s.required ?? []).includes(name),
      schema: rest,
      ...(typeof description === 'string' ? { description } : {}),
    }
  })
}

/** Schemas that get a name under components (and are $ref'd), by identity. */
const NAMED = new Map<z.ZodType, string>([
  [CreateRunBody, 'CreateRunBody'],
  [PatchRunBody, 'PatchRunBody'],
  [ExecBody, 'ExecBody'],
  [ForkBody, 'ForkBody'],
  [RestoreBody, 'RestoreBody'],
  [ErrorWire, 'Error'],
  [RunRecordWire, 'RunRecord'],
  [RunListWire, 'RunList'],
  [ExecResultWire, 'ExecResult'],
  [DestroyResultWire, 'DestroyResult'],
  [DirEntriesWire, 'DirEntries'],
  [SnapshotWire, 'Snapshot'],
  [SnapshotListWire, 'SnapshotList'],
  [SnapshotDeletedWire, 'SnapshotDeleted'],
  [ForkResultWire, 'ForkResult'],
  [UsageWireSchema, 'Usage'],
  [HistoryWire, 'History'],
  [AuditEntryWire, 'AuditEntry'],
  [NetworkProfileListWire, 'NetworkProfileList'],
])
const REQUEST_SCHEMAS = new Set<z.ZodType>([CreateRunBody, PatchRunBody, ExecBody, ForkBody, RestoreBody])

function ref(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const name = NAMED.get(schema)
  return name ? { $ref: `#/components/schemas/${name}` } : jsonSchema(schema, io)
}

function requestBody(op: Operation): JsonSchema | undefined {
  if (op.rawBody) {
    return {
      required: false,
      description: op.rawBody,
      content: { '*/*': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } },
    }
  }
  if (!op.body) return undefined
  // Required only when some field has neither a default nor `optional()`: an absent body means `{}`.
  const required = ((jsonSchema(op.body, 'input').required as string[] | undefined) ?? []).length > 0
  return { required, content: { 'application/json': { schema: ref(op.body, 'input') } } }
}

function responses(op: Operation): Record<string, JsonSchema> {
  const all: Record<string, Response> = { ...op.responses }
  // The failures every operation of a kind can have, so the table lists only the particular ones.
  if (op.params || op.query || op.body) all[400] ??= error('validation_failed: details.field names the field')
  if (!op.public) all[401] ??= error('missing or invalid API key')
  if (op.path.includes(':id')) all[404] ??= error('no such sandbox (or not this key’s)')
  all.default ??= error('any other failure (500 internal, 503 engine_unavailable, ...)')
  const out: Record<string, JsonSchema> = {}
  for (const [status, r] of Object.entries(all)) {
    const contentType = r.contentType ?? (r.schema ? 'application/json' : undefined)
    const content = contentType ? { [contentType]: r.schema ? { schema: ref(r.schema, 'output') } : {} } : {}
    out[status] = { description: r.description, ...(contentType ? { content } : {}) }
  }
  return out
}

function operationObject(op: Operation): JsonSchema {
  const params = [...parameters(op.params, 'path'), ...parameters(op.query, 'query')]
  const declared = new Set(params.filter((p) => p.in === 'path').map((p) => p.name))
  for (const [, name] of openApiPath(op.path).matchAll(/\{([^}]+)\}/g)) {
    if (!declared.has(name ?? '')) throw new Error(`openapi: ${op.path} has no schema for {${name}}`)
  }
  const body = requestBody(op)
  return {
    operationId: op.operationId,
    tags: [op.tag],
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    ...(params.length ? { parameters: params } : {}),
    ...(body ? { requestBody: body } : {}),
    responses: responses(op),
    ...(op.public ? { security: [] } : {}),
  }
}

/** The routes not built yet (routes/not-implemented.ts), documented as what they answer: 501. */
function pendingOperations(): Operation[] {
  return PENDING.map(([method, path, feature]) => ({
    method: method.toLowerCase() as Method,
    path,
    operationId: `pending_${method.toLowerCase()}${path.replace(/[^A-Za-z0-9]+/g, '_')}`,
    tag: 'not implemented',
    summary: `${feature}: not implemented yet`,
    responses: { 501: error(`not_implemented: ${feature}`) },
  }))
}

function version(): string {
  // src/http/ and dist/http/ are both two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
  return String(pkg.version)
}

let cached: JsonSchema | undefined

/** The document (built once; it depends on nothing but the schemas). */
export function openApiDocument(): JsonSchema {
  if (cached) return cached
  const paths: Record<string, Record<string, unknown>> = {}
  for (const op of [...OPERATIONS, ...pendingOperations()]) {
    const path = `/v1${openApiPath(op.path)}`
    const item = paths[path] ?? {}
    paths[path] = item
    if (item[op.method]) throw new Error(`openapi: ${op.method} ${op.path} documented twice`)
    item[op.method] = operationObject(op)
  }
  for (const [path, item] of Object.entries(paths)) {
    if (path.includes('/proxy/')) item['x-additional-methods'] = PROXY_EXTRA_METHODS
  }
  const schemas: Record<string, JsonSchema> = {}
  for (const [schema, name] of NAMED) {
    schemas[name] = jsonSchema(schema, REQUEST_SCHEMAS.has(schema) ? 'input' : 'output')
  }
  cached = {
    openapi: '3.1.1',
    info: {
      title: 'isorun-emulator',
      version: version(),
      description:
        'The Isorun sandbox runner REST surface (/v1) as served by isorun-emulator, for isorun@1.0.1. ' +
        'Generated from the zod schemas that validate requests.',
    },
    tags: [...new Set([...OPERATIONS, ...pendingOperations()].map((op) => op.tag))].map((name) => ({ name })),
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description:
            'The API key. Without --api-key any non-empty key is accepted; each key sees only its own sandboxes.',
        },
      },
      schemas,
    },
  }
  return cached
}
