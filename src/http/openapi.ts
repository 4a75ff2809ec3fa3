import { readFileSync } from 'node:fs'
import { METHODS } from 'node:http'
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify'
import { z } from 'zod'
import { FaultSpec } from '../control/faults.ts'
import { CreateRunBody, ExecBody, ForkBody, PatchRunBody, RestoreBody } from './schemas.ts'
import {
  AuditEntryWire,
  DestroyResultWire,
  DirEntriesWire,
  ErrorWire,
  ExecResultWire,
  ForkResultWire,
  HistoryWire,
  NetworkProfileListWire,
  RunListWire,
  RunRecordWire,
  SnapshotDeletedWire,
  SnapshotListWire,
  SnapshotWire,
  UsageWireSchema,
} from './wire.ts'

/**
 * The OpenAPI 3.1 document of the /v1 surface and of the emulator's own namespace (/_emulator: health,
 * capabilities, this document, the dashboard and the test-double control plane), served at
 * `GET /_emulator/openapi.json`, generated from the routes themselves: each route declares its `params`,
 * `querystring` and `body` schemas (the ones Fastify validates with) and, under `schema.openapi`, what
 * the document says beside them (id, summary, answers with their wire.ts schemas). A route under either
 * prefix without that is an error at generation.
 */

type ObjectSchema = z.ZodObject

export interface ResponseDoc {
  description: string
  schema?: z.ZodType
  /** Default application/json (with a schema) or no body (without). */
  contentType?: string
}

/** What a route says about itself in the document, beside its validation schemas. */
export interface OperationDoc {
  /** For a route of several methods, each gets `<operationId><Method>`. */
  operationId: string
  tag: Tag
  summary: string | ((method: string) => string)
  description?: string
  /** The particular answers; the ones every route of a kind has are added (see responses()). */
  responses: Record<string, ResponseDoc>
  /** A raw request body of any content type instead of JSON: what it is. */
  rawBody?: string
  /**
   * Who may call: `apiKey` (the default, /v1), `none` (url(port), whose URL is the credential, and the
   * emulator's read-only endpoints), `admin` (the control plane: see its security scheme).
   */
  security?: 'apiKey' | 'none' | 'admin'
  /**
   * Which origin serves it (origins.ts): `api` (the default: the document's `servers`) or `admin`, the
   * dashboard's own port, which the operation's own `servers` entry names; the other answers it 404.
   */
  origin?: 'api' | 'admin'
  /** Path parameters the route checks by hand (url(port) forwards its raw URL), for the document only. */
  params?: ObjectSchema
}

declare module 'fastify' {
  interface FastifySchema {
    openapi?: OperationDoc
  }
}

export const noBody = (description: string): ResponseDoc => ({ description })
export const json = (description: string, schema: z.ZodType): ResponseDoc => ({ description, schema })
export const error = (description: string): ResponseDoc => ({ description, schema: ErrorWire })

/** The document's tags, in its order. */
const TAGS = [
  'runs',
  'exec',
  'files',
  'state',
  'accounts',
  'proxy',
  'not implemented',
  'emulator',
  'control',
] as const
type Tag = (typeof TAGS)[number]

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

/** url(port)'s operations: every method, to the sandbox's port; the guest's answer is passed through. */
export function urlPortDoc(operationId: string, params: ObjectSchema): OperationDoc {
  return {
    operationId,
    tag: 'proxy',
    summary: (method) => `url(port): ${method.toUpperCase()} to the sandbox's port, streamed both ways`,
    description:
      'No API key needed: the URL embeds the unguessable run id. A bearer header is accepted and not ' +
      'forwarded. WebSocket upgrades are passed through. The guest answers; errors below are the emulator’s.',
    params,
    security: 'none',
    responses: {
      default: { description: "the guest's answer, as it sent it", contentType: '*/*' },
      400: error('port is not an integer in [1, 65535]'),
      404: error('no such sandbox'),
      409: error('the sandbox is hibernated'),
      502: error('nothing listens on that port (yet)'),
    },
  }
}

// --- generation -------------------------------------------------------------------------------

interface Operation {
  method: Method
  /** Fastify's form: `/v1/runs/:id`, `*` for a wildcard. */
  path: string
  doc: OperationDoc
  operationId: string
  params?: ObjectSchema
  query?: ObjectSchema
  body?: ObjectSchema
}

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
  [FaultSpec, 'FaultSpec'],
])
const REQUEST_SCHEMAS = new Set<z.ZodType>([
  CreateRunBody,
  PatchRunBody,
  ExecBody,
  ForkBody,
  RestoreBody,
  FaultSpec,
])

function ref(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const name = NAMED.get(schema)
  return name ? { $ref: `#/components/schemas/${name}` } : jsonSchema(schema, io)
}

function requestBody(op: Operation): JsonSchema | undefined {
  if (op.doc.rawBody) {
    return {
      required: false,
      description: op.doc.rawBody,
      content: { '*/*': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } },
    }
  }
  if (!op.body) return undefined
  // Required only when some field has neither a default nor `optional()`: an absent body means `{}`.
  const required = ((jsonSchema(op.body, 'input').required as string[] | undefined) ?? []).length > 0
  return { required, content: { 'application/json': { schema: ref(op.body, 'input') } } }
}

function responses(op: Operation): Record<string, JsonSchema> {
  const all: Record<string, ResponseDoc> = { ...op.doc.responses }
  // The failures every operation of a kind can have, so routes list only the particular ones.
  if (op.params || op.query || op.body) all[400] ??= error('validation_failed: details.field names the field')
  const security = op.doc.security ?? 'apiKey'
  if (security === 'apiKey') all[401] ??= error('missing or invalid API key')
  if (security === 'admin') {
    all[401] ??= error('with an admin token set: missing or wrong admin token')
    all[403] ??= error('without an admin token: a peer off loopback; or an Origin not the emulator’s own')
    if (op.method !== 'get') all[415] ??= error('a change without Content-Type: application/json')
  }
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

/** Each kind's `security` requirement, beside the document's default (the API key). */
const SECURITY: Record<NonNullable<OperationDoc['security']>, JsonSchema> = {
  apiKey: {},
  none: { security: [] },
  // Either nothing (loopback, no admin token set) or the admin token.
  admin: { security: [{}, { adminToken: [] }] },
}

/** Where each origin is, as the document names it to whoever asked (see openApiFromRoutes). */
export interface ServerUrls {
  api: string
  admin: string
}

const ORIGIN_NOTES = {
  api: "the API's origin (ISORUN_EMULATOR_PORT): /v1, url(port) and the emulator's read-only endpoints",
  admin:
    "the dashboard's own origin (ISORUN_EMULATOR_ADMIN_PORT): the dashboard and the control plane; " +
    "the API's origin answers these 404",
} as const

function operationObject(op: Operation, servers: ServerUrls): JsonSchema {
  const params = [...parameters(op.params, 'path'), ...parameters(op.query, 'query')]
  const declared = new Set(params.filter((p) => p.in === 'path').map((p) => p.name))
  for (const [, name] of openApiPath(op.path).matchAll(/\{([^}]+)\}/g)) {
    if (!declared.has(name ?? '')) throw new Error(`openapi: ${op.path} has no schema for {${name}}`)
  }
  const body = requestBody(op)
  const { doc } = op
  return {
    operationId: op.operationId,
    tags: [doc.tag],
    summary: typeof doc.summary === 'function' ? doc.summary(op.method) : doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    ...(params.length ? { parameters: params } : {}),
    ...(body ? { requestBody: body } : {}),
    responses: responses(op),
    ...SECURITY[doc.security ?? 'apiKey'],
    ...(doc.origin === 'admin' ? { servers: [{ url: servers.admin, description: ORIGIN_NOTES.admin }] } : {}),
  }
}

/** A route schema's part as the zod object it is, if it is one. */
function objectSchema(part: unknown): ObjectSchema | undefined {
  return part instanceof z.ZodObject ? part : undefined
}

interface DocumentedRoute {
  methods: string[]
  url: string
  schema: FastifySchema | undefined
}

/** A route's operations, one per OpenAPI method, and the methods OpenAPI has no operation for. */
function operationsOf(route: DocumentedRoute): { operations: Operation[]; extra: string[] } {
  const doc = route.schema?.openapi
  if (!doc) throw new Error(`openapi: ${route.methods.join(',')} ${route.url} declares no schema.openapi`)
  const path = route.url
  const several = route.methods.length > 1
  const operations = OPENAPI_METHODS.filter((m) => route.methods.includes(m.toUpperCase())).map((method) => ({
    method,
    path,
    doc,
    operationId: several
      ? `${doc.operationId}${method[0]?.toUpperCase()}${method.slice(1)}`
      : doc.operationId,
    params: doc.params ?? objectSchema(route.schema?.params),
    query: objectSchema(route.schema?.querystring),
    body: objectSchema(route.schema?.body),
  }))
  const extra = METHODS.filter(
    (m) => route.methods.includes(m) && !OPENAPI_METHODS.includes(m.toLowerCase() as Method),
  )
  return { operations, extra }
}

function version(): string {
  // src/http/ and dist/http/ are both two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
  return String(pkg.version)
}

/** The prefixes whose routes the document covers (each must declare `schema.openapi`). */
const DOCUMENTED_PREFIXES = ['/v1/', '/_emulator/']

/** Builds the document from the routes registered under /v1 and /_emulator. */
export function buildOpenApiDocument(routes: readonly DocumentedRoute[], servers: ServerUrls): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {}
  const tags = new Set<Tag>()
  for (const route of routes) {
    const { operations, extra } = operationsOf(route)
    const path = openApiPath(route.url)
    const item = paths[path] ?? {}
    paths[path] = item
    for (const op of operations) {
      if (item[op.method]) throw new Error(`openapi: ${op.method} ${route.url} documented twice`)
      item[op.method] = operationObject(op, servers)
      tags.add(op.doc.tag)
    }
    if (extra.length) item['x-additional-methods'] = extra
  }
  const schemas: Record<string, JsonSchema> = {}
  for (const [schema, name] of NAMED) {
    schemas[name] = jsonSchema(schema, REQUEST_SCHEMAS.has(schema) ? 'input' : 'output')
  }
  return {
    openapi: '3.1.1',
    info: {
      title: 'isorun-emulator',
      version: version(),
      description:
        'The Isorun sandbox runner REST surface (/v1) as served by isorun-emulator, for isorun@1.0.1, and ' +
        'the emulator’s own namespace (/_emulator: health, capabilities, this document, the dashboard, ' +
        'the test-double control plane). Generated from the routes and the zod schemas that validate requests.',
    },
    tags: TAGS.filter((t) => tags.has(t)).map((name) => ({ name })),
    servers: [{ url: servers.api, description: ORIGIN_NOTES.api }],
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
        adminToken: {
          type: 'http',
          scheme: 'bearer',
          description:
            'The control plane’s admin token (--admin-token, ISORUN_EMULATOR_ADMIN_TOKEN). Without one set, ' +
            'the control plane needs none (see docs/security.md).',
        },
      },
      schemas,
    },
  }
}

/**
 * Follows the app's routes as they are registered (call before registering any), and builds the
 * document from the documented ones on first use, when every route is known; again only when the
 * origins it names change (one kept: the host they carry is the asker's).
 */
export function openApiFromRoutes(app: FastifyInstance): (servers: ServerUrls) => JsonSchema {
  const routes: DocumentedRoute[] = []
  app.addHook('onRoute', (route: RouteOptions) => {
    if (!DOCUMENTED_PREFIXES.some((prefix) => route.url.startsWith(prefix))) return
    const methods = [route.method].flat()
    // Fastify adds a HEAD route beside every GET (exposeHeadRoutes): it answers as the GET does.
    const head = methods.length === 1 && methods[0] === 'HEAD'
    if (head && routes.some((r) => r.url === route.url && r.methods.includes('GET'))) return
    routes.push({ methods, url: route.url, schema: route.schema })
  })
  let cached: { key: string; doc: JsonSchema } | undefined
  return (servers) => {
    const key = `${servers.api} ${servers.admin}`
    if (cached?.key !== key) cached = { key, doc: buildOpenApiDocument(routes, servers) }
    return cached.doc
  }
}
