import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import fc from 'fast-check'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { LABEL } from '../src/sandboxes/labels.ts'
import { apiUrlIn } from './support/banner.ts'
import { removeContainers } from './support/cleanup.ts'
import { DASHBOARD_URL } from './support/emulator-process.ts'
import { describeWithDocker, waitFor } from './support/sdk.ts'

/**
 * Property-based fuzzing of every operation the emulator's own OpenAPI document lists (so a new route is
 * fuzzed as soon as it is documented), every parameter and body field, against a real engine: a
 * sandbox that exists, so file, exec and proxy routes reach Docker. Values are valid ones mixed with
 * hostile ones (path traversal, NUL, CR/LF, %-encodings, unicode, huge, wrong types), sent byte for byte
 * over a raw socket. Properties: no 5xx (but the 502 url(port) documents for a guest that does not
 * answer), an answer within the time limit, the process stays up, its memory stays bounded.
 * ISORUN_FUZZ_RUNS sets the number of requests; a failure prints fast-check's seed to replay it.
 *
 * The control plane is fuzzed too, for real, on a virtual clock (so that advancing it does work). What
 * it does to later requests is kept from making the properties meaningless:
 * - a reset, or a clock advance past the sandbox's idle timeout, destroys the sandbox and snapshot the
 *   requests aim at: they are made again before the next request (ensureLive), as after a fuzzed
 *   DELETE, so later requests still reach a live sandbox;
 * - a fault is added as fuzzed but with `probability: 0` (see inert()): it is validated, stored, listed
 *   and its pattern is matched against every later request, yet it never fires. A fired fault answers
 *   a 5xx, drops the connection or waits up to 10 minutes on purpose, which would either fail the
 *   properties for doing its job or, excused, leave the requests it hit unchecked. What faults do when
 *   they fire is tested by test/control.test.ts and test/error-shape.test.ts.
 */

const cli = join(import.meta.dirname, '..', 'src', 'cli.ts')
const KEY = 'isorun_fuzz_key'
const RUNS = Number(process.env.ISORUN_FUZZ_RUNS ?? 300)
const ANSWER_WITHIN_MS = 30_000
/** ISORUN_FUZZ_REPORT=1: go on after a failure and list them all at the end (to survey, not to gate). */
const REPORT_ALL = process.env.ISORUN_FUZZ_REPORT === '1'
/** RSS may grow this much over the fuzzing (journal, caches, V8 heap growth), never with what is sent. */
const RSS_GROWTH_LIMIT = 160 * 1024 * 1024
const IMAGE = 'busybox:latest'
const GUEST_PORT = 8080

// --- the OpenAPI document ------------------------------------------------------------------------

interface Schema {
  $ref?: string
  type?: string | string[]
  enum?: unknown[]
  const?: unknown
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  minLength?: number
  maxLength?: number
  properties?: Record<string, Schema>
  additionalProperties?: boolean | Schema
  items?: Schema
  anyOf?: Schema[]
  oneOf?: Schema[]
  allOf?: Schema[]
  required?: string[]
  format?: string
}
interface Parameter {
  name: string
  in: 'path' | 'query' | 'header'
  required?: boolean
  schema?: Schema
}
interface Operation {
  method: string
  path: string
  /** The operation's own server (the dashboard's origin, for the control plane), else the document's. */
  server?: string
  parameters: Parameter[]
  body?: { contentType: string; schema?: Schema }
}
interface OpenApiDoc {
  paths: Record<
    string,
    Record<
      string,
      {
        parameters?: Parameter[]
        requestBody?: { content: Record<string, { schema?: Schema }> }
        servers?: { url: string }[]
      }
    >
  >
  components?: { schemas?: Record<string, Schema> }
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

function operationsOf(doc: OpenApiDoc): Operation[] {
  const ops: Operation[] = []
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!HTTP_METHODS.includes(method)) continue
      const content = op.requestBody?.content ?? {}
      const contentType = Object.keys(content)[0]
      ops.push({
        method: method.toUpperCase(),
        path,
        server: op.servers?.[0]?.url,
        parameters: op.parameters ?? [],
        body: contentType ? { contentType, schema: content[contentType]?.schema } : undefined,
      })
    }
  }
  return ops
}

// --- values --------------------------------------------------------------------------------------

/** Strings that end up in engine paths, shell commands, headers, file names and logs. */
const HOSTILE_STRINGS = [
  '',
  ' ',
  '.',
  '..',
  '/',
  '/..',
  '/.',
  '//',
  '/tmp',
  '/tmp/',
  '/proc/self/environ',
  '/dev/zero',
  '/etc/passwd',
  '../../etc/passwd',
  '/tmp/../../../etc/shadow',
  '..%2f..%2fetc%2fpasswd',
  '%2e%2e%2f',
  '%00',
  '%0d%0a',
  '%zz',
  '%',
  '\0',
  '/tmp/a\0b',
  'a\0=b',
  '=',
  'A=B',
  '\r\n',
  'x\r\nX-Injected: 1',
  '\n',
  '\t',
  '\u202e\u0635\u0648\u0631\u0629',
  '\u{1F600}',
  '\uFFFF',
  '\uD800',
  'é/ü/ß',
  '\u00a0',
  '$(id)',
  '`id`',
  '$' + '{PATH}',
  '; echo injected',
  '|| true',
  '*',
  '?',
  '#',
  '~',
  '-rf',
  '--help',
  'C:\\Windows\\system32',
  '\\\\server\\share',
  'null',
  'undefined',
  'true',
  '0',
  '-1',
  '1e309',
  'NaN',
  '[]',
  '{}',
  '<script>alert(1)</script>',
  "'",
  '"',
  '../../127.0.0.1:1/x',
  'localhost:1/x',
  '127.0.0.1:1/x',
  'busybox:latest',
  'busybox@sha256:0000',
  'UPPER/Case:Tag',
  'a'.repeat(256),
  'a'.repeat(5000),
]

const hugeString = fc.constantFrom('x'.repeat(70_000), 'y'.repeat(1024 * 1024))
const hostileString = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  {
    weight: 1,
    arbitrary: fc.string({
      unit: fc.constantFrom('\0', '\r', '\n', '/', '.', '%', 'a', '\u00ff'),
      maxLength: 20,
    }),
  },
  { weight: 1, arbitrary: hugeString },
)
const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, [], {}, [1, 'a'], { a: 1 }),
  fc.integer(),
  fc.double(),
)
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: hostileString },
  { weight: 2, arbitrary: wrongType },
)

function resolve(schema: Schema | undefined, doc: OpenApiDoc): Schema {
  let s = schema ?? {}
  for (let i = 0; s.$ref && i < 10; i++) {
    const name = s.$ref.split('/').pop() ?? ''
    s = doc.components?.schemas?.[name] ?? {}
  }
  return s
}

/** Values the schema allows (small ones for counts and sizes: each real fork child is a container). */
function validValue(
  schema: Schema | undefined,
  doc: OpenApiDoc,
  name: string,
  depth = 0,
): fc.Arbitrary<unknown> {
  const s = resolve(schema, doc)
  if (s.const !== undefined) return fc.constant(s.const)
  if (s.enum) return fc.constantFrom(...s.enum)
  const alternatives = s.anyOf ?? s.oneOf
  if (alternatives?.length) return fc.oneof(...alternatives.map((a) => validValue(a, doc, name, depth + 1)))
  if (s.allOf?.length) return validValue(s.allOf[0], doc, name, depth + 1)
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type
  switch (type) {
    case 'string':
      return fc.oneof(
        fc.constantFrom(...samplesFor(name)),
        fc.string({ minLength: s.minLength ?? 0, maxLength: Math.min(s.maxLength ?? 30, 30) }),
      )
    case 'integer':
    case 'number': {
      const min = s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : 0)
      const max = s.maximum ?? min + 100
      const small = [min, min + 1, Math.min(min + 2, max)]
      return fc.constantFrom(...(name === 'count' ? small : [...small, max]))
    }
    case 'boolean':
      return fc.boolean()
    case 'array':
      return depth > 3 ? fc.constant([]) : fc.array(anyValue(s.items, doc, name, depth + 1), { maxLength: 3 })
    case 'object': {
      if (depth > 3) return fc.constant({})
      const props = s.properties ?? {}
      const record = fc.record(
        Object.fromEntries(Object.entries(props).map(([k, v]) => [k, anyValue(v, doc, k, depth + 1)])),
        { requiredKeys: [] },
      )
      const extra = fc.dictionary(
        hostileString.filter((k) => k.length < 100),
        anyValue(
          s.additionalProperties === true || s.additionalProperties === undefined
            ? {}
            : (s.additionalProperties as Schema),
          doc,
          'extra',
          depth + 1,
        ),
        { maxKeys: 2 },
      )
      return fc.tuple(record, extra).map(([r, e]) => ({ ...e, ...r }))
    }
    default:
      return fc.oneof(fc.string({ maxLength: 10 }), fc.integer({ min: 0, max: 5 }), fc.boolean())
  }
}

/** Realistic values by field name, so valid requests do real work. */
function samplesFor(name: string): string[] {
  switch (name) {
    case 'image':
      return [IMAGE, 'node:22-slim', 'nosuch/image:1']
    case 'command':
      return ['echo fuzz', 'true', 'cat /etc/hostname', 'ls /tmp', 'exit 3', 'echo -n x >&2']
    case 'path':
      // The /etc files are the engine's bind mounts: a write there is refused with a 409.
      return [
        '/tmp/fuzz.txt',
        '/tmp',
        '/',
        '/etc/passwd',
        '/w/index.html',
        '/etc/hostname',
        '/etc/hosts',
        '/etc/resolv.conf',
      ]
    case 'network_profile':
      return ['default', 'none', 'web-dev']
    default:
      return ['fuzz', 'a', 'FUZZ_VALUE']
  }
}

function anyValue(
  schema: Schema | undefined,
  doc: OpenApiDoc,
  name: string,
  depth = 0,
): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 3, arbitrary: validValue(schema, doc, name, depth) },
    { weight: 2, arbitrary: hostileValue },
  )
}

/** Percent-encodes every byte of the UTF-8 text but the unreserved ones (lone surrogates included). */
function percentEncode(text: string): string {
  let out = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** A string as it may appear in a URL: encoded, raw, or half-encoded. */
function urlPart(value: fc.Arbitrary<unknown>): fc.Arbitrary<string> {
  return fc.tuple(value, fc.constantFrom('encoded', 'encoded', 'raw', 'json')).map(([v, how]) => {
    const text = typeof v === 'string' ? v : (JSON.stringify(v) ?? '')
    if (how === 'raw') return text
    if (how === 'json') return percentEncode(JSON.stringify(v) ?? '')
    return percentEncode(text)
  })
}

// --- requests ------------------------------------------------------------------------------------

interface FuzzRequest {
  method: string
  target: string
  headers: [string, string][]
  body: Buffer
  op: string
  /** Where to send it: the operation's own server, else the API's origin. */
  server?: string
}

interface Live {
  runId: string
  snapshotId: string
  /** An inert fault, for the routes that name one. */
  faultId: string
}

const SAFE_METHODS = ['GET', 'HEAD', 'OPTIONS']

/** A fuzzed fault that can never fire (see the top of this file): its JSON object with probability 0. */
function inert(op: Operation, body: Buffer): Buffer {
  if (op.method !== 'POST' || op.path !== '/_emulator/faults') return body
  let spec: unknown
  try {
    spec = JSON.parse(body.toString('utf8'))
  } catch {
    return body
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) return body
  return Buffer.from(JSON.stringify({ ...spec, probability: 0 }))
}

function requestFor(op: Operation, doc: OpenApiDoc, live: () => Live): fc.Arbitrary<FuzzRequest> {
  const pathParams = op.parameters.filter((p) => p.in === 'path')
  const queryParams = op.parameters.filter((p) => p.in === 'query')
  const paramArbs = Object.fromEntries(
    pathParams.map((p) => {
      let valid: fc.Arbitrary<unknown>
      if (p.name === 'id' && op.path.startsWith('/v1/snapshots'))
        valid = fc.constant(null).map(() => live().snapshotId)
      else if (p.name === 'id' && op.path.startsWith('/_emulator/faults'))
        valid = fc.constant(null).map(() => live().faultId)
      else if (p.name === 'id') valid = fc.constant(null).map(() => live().runId)
      else if (p.name === 'port') valid = fc.constantFrom(String(GUEST_PORT), '9999', '0', '65536', '1')
      else valid = validValue(p.schema, doc, p.name)
      return [
        p.name,
        urlPart(fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: hostileValue })),
      ]
    }),
  )
  const queryArbs = Object.fromEntries(
    queryParams.map((p) => [
      p.name,
      fc.option(urlPart(anyValue(p.schema, doc, p.name)), { nil: undefined, freq: p.required ? 10 : 3 }),
    ]),
  )
  const bodyArb: fc.Arbitrary<Buffer> = !op.body
    ? fc.constant(Buffer.alloc(0))
    : op.body.contentType === 'application/json'
      ? fc.oneof(
          {
            weight: 6,
            arbitrary: anyValue(op.body.schema, doc, 'body').map((v) => Buffer.from(JSON.stringify(v) ?? '')),
          },
          {
            weight: 1,
            arbitrary: fc
              .constantFrom('{', '{"a":', 'nul', '[1,2', '\0', '{"image":"busybox:latest"}}')
              .map((t) => Buffer.from(t)),
          },
          { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
        )
      : fc.oneof(
          { weight: 4, arbitrary: fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)) },
          { weight: 1, arbitrary: fc.constant(Buffer.alloc(2 * 1024 * 1024, 'z')) },
        )
  const contentType =
    op.body?.contentType === 'application/json'
      ? fc.oneof(
          { weight: 6, arbitrary: fc.constant('application/json') },
          {
            weight: 1,
            arbitrary: fc.constantFrom(
              'text/plain',
              'application/json; charset=latin1',
              'multipart/form-data',
              'application/json\0',
            ),
          },
        )
      : op.body
        ? fc.constantFrom('application/octet-stream', 'text/plain', 'application/json')
        : // No body: mostly a JSON type all the same, which the control plane asks of every change.
          fc.constantFrom('application/json', 'application/json', 'application/json', '')
  const auth = fc.oneof(
    { weight: 12, arbitrary: fc.constant(`Bearer ${KEY}`) },
    { weight: 1, arbitrary: hostileString.map((s) => `Bearer ${s}`) },
    { weight: 1, arbitrary: hostileString },
  )
  const extraHeader = fc.option(
    fc.tuple(
      fc.constantFrom(
        'X-Fuzz',
        'Accept',
        'Accept-Encoding',
        'Origin',
        'Cookie',
        'X-Forwarded-For',
        'Range',
        'If-None-Match',
      ),
      hostileString.filter((s) => s.length < 10_000),
    ),
    { nil: undefined },
  )
  return fc
    .record({
      params: fc.record(paramArbs),
      query: fc.record(queryArbs),
      body: bodyArb,
      contentType,
      auth,
      extraHeader,
    })
    .map(({ params, query, body, contentType, auth, extraHeader }) => {
      const path = op.path.replace(/\{(\w+)\}/g, (_, name: string) => params[name] ?? '')
      const qs = Object.entries(query)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${v}`)
        .join('&')
      const headers: [string, string][] = [['Authorization', auth]]
      if (contentType && (op.body || !SAFE_METHODS.includes(op.method)))
        headers.push(['Content-Type', contentType])
      if (extraHeader) headers.push(extraHeader)
      return {
        method: op.method,
        target: qs ? `${path}?${qs}` : path,
        headers,
        body: inert(op, body),
        op: `${op.method} ${op.path}`,
        server: op.server,
      }
    })
}

/** Sends a request byte for byte; resolves with the status (0: the connection ended without one). */
function send(r: FuzzRequest, apiPort: number): Promise<{ status: number; text: string }> {
  const port = r.server ? Number(new URL(r.server).port) : apiPort
  return new Promise((resolvePromise, reject) => {
    const socket = connect({ host: '::1', port })
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms`))
    }, ANSWER_WITHIN_MS)
    socket.on('data', (d: Buffer) => {
      chunks.push(d)
      // The head is enough: some answers (downloads, proxied streams) may be long.
      const text = Buffer.concat(chunks).toString('latin1')
      if (text.includes('\r\n\r\n') && Buffer.concat(chunks).length > 2048) socket.destroy()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('utf8')
      resolvePromise({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text: text.slice(0, 600) })
    })
    const head =
      `${r.method} ${r.target} HTTP/1.1\r\nHost: [::1]:${port}\r\nConnection: close\r\n` +
      r.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('') +
      (r.body.length || r.method !== 'GET' ? `Content-Length: ${r.body.length}\r\n` : '') +
      '\r\n'
    socket.write(Buffer.concat([Buffer.from(head, 'utf8'), r.body]))
  })
}

function describeRequest(r: FuzzRequest): string {
  const body = r.body.length > 300 ? `${r.body.length} bytes` : JSON.stringify(r.body.toString('utf8'))
  const target = r.target.length > 300 ? `${r.target.slice(0, 300)}... (${r.target.length} chars)` : r.target
  const headers = r.headers.map(([k, v]) => [k, v.length > 100 ? `${v.slice(0, 100)}... (${v.length})` : v])
  return `${r.op}: ${r.method} ${JSON.stringify(target)} headers ${JSON.stringify(headers)} body ${body}`
}

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m)
  return Number(line?.[1] ?? 0) * 1024
}

// --- the run -------------------------------------------------------------------------------------

describeWithDocker('fuzzing every documented route and field against a real engine', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-fuzz-'))
  let child: ChildProcessByStdio<null, Readable, Readable> | undefined
  let port = 0
  /** The dashboard's origin, where the control plane is (the API's port answers it 404). */
  let adminUrl = ''
  let log = ''
  let doc: OpenApiDoc
  const live: Live = { runId: '', snapshotId: 'snap-none', faultId: 'fault-none' }
  const base = () => `http://[::1]:${port}`
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${path.startsWith('/_emulator/') ? adminUrl : base()}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...init.headers },
    })

  /**
   * What the requests aim at, made again when gone (deleted, reset, expired on the advanced clock): a
   * running sandbox with a server on GUEST_PORT, a snapshot of it, an inert fault.
   */
  async function ensureLive(): Promise<void> {
    const faults = (await (await api('/_emulator/faults')).json()) as { faults: { id: string }[] }
    if (!faults.faults.some((f) => f.id === live.faultId)) {
      const added = await api('/_emulator/faults', {
        method: 'POST',
        body: JSON.stringify({ path: '^/v1/never$', probability: 0 }),
      })
      expect(added.status).toBe(201)
      live.faultId = ((await added.json()) as { id: string }).id
    }
    await ensureSandbox()
    const snapshots = (await (await api('/v1/snapshots')).json()) as { snapshots: { id: string }[] }
    if (snapshots.snapshots.some((s) => s.id === live.snapshotId) || snapshotsMade >= MAX_SNAPSHOTS) return
    snapshotsMade++
    const snap = await api(`/v1/runs/${live.runId}/snapshot`, { method: 'POST' })
    if (snap.status === 201) live.snapshotId = ((await snap.json()) as { snapshot_id: string }).snapshot_id
  }
  /** Each snapshot is a CRIU checkpoint and an image: made again after a delete or reset, up to this. */
  const MAX_SNAPSHOTS = 15
  let snapshotsMade = 0

  async function ensureSandbox(): Promise<void> {
    if (live.runId) {
      const res = await api(`/v1/runs/${live.runId}`)
      const status = res.ok ? ((await res.json()) as { status: string }).status : 'gone'
      if (status === 'running') return
      if (status === 'hibernated' && (await api(`/v1/runs/${live.runId}/resume`, { method: 'POST' })).ok)
        return
    }
    const created = await api('/v1/runs', {
      method: 'POST',
      body: JSON.stringify({ image: IMAGE, timeout: 600 }),
    })
    expect(created.status, await created.clone().text()).toBe(201)
    live.runId = ((await created.json()) as { id: string }).id
    const started = await api(`/v1/runs/${live.runId}/exec`, {
      method: 'POST',
      body: JSON.stringify({
        command: `mkdir -p /w && echo served > /w/index.html && (httpd -f -p ${GUEST_PORT} -h /w >/dev/null 2>&1 &)`,
      }),
    })
    expect(started.status).toBe(200)
  }

  beforeAll(async () => {
    child = spawn(
      process.execPath,
      [
        cli,
        ...['--port', '0', '--data-dir', dataDir, '--api-key', KEY, '--pool', '0', '--log-level', 'warn'],
        // So that the fuzzed clock advances do work (expiring sandboxes, history) rather than a 409.
        ...['--clock', 'virtual'],
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        // No pulls: a fuzzed image name must never reach a registry (and waiting on one is no test).
        env: { ...process.env, ISORUN_EMULATOR_PULL: 'never' },
      },
    )
    child.stdout.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-200_000)
    })
    child.stderr.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-200_000)
    })
    const found = await waitFor(
      async () => {
        const api = /^http:\/\/\[::1\]:(\d+)$/.exec(apiUrlIn(log) ?? '')?.[1]
        const admin = DASHBOARD_URL.exec(log)?.[1]
        return api && admin ? { api, admin } : undefined
      },
      60_000,
      50,
    )
    if (!found) throw new Error(`the emulator did not start: ${log}`)
    port = Number(found.api)
    adminUrl = found.admin
    doc = (await (await fetch(`${base()}/_emulator/openapi.json`)).json()) as OpenApiDoc
    await ensureLive()
  }, 120_000)

  afterAll(async () => {
    if (child && child.exitCode === null) {
      // Snapshot images live in Docker: the reset removes them with every sandbox.
      await fetch(`${adminUrl}/_emulator/reset`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
      }).catch(() => undefined)
      const exited = new Promise((r) => child?.once('exit', r))
      child.kill('SIGTERM')
      await exited
    }
    let instanceId = ''
    try {
      instanceId = JSON.parse(readFileSync(join(dataDir, 'instance.json'), 'utf8')).instanceId
    } catch {
      // never started
    }
    if (instanceId) await removeContainers([`${LABEL.instance}=${instanceId}`])
    rmSync(dataDir, { recursive: true, force: true })
  }, 120_000)

  it(`answers ${RUNS} fuzzed requests without a 5xx, stays up, and keeps its memory bounded`, async () => {
    const ops = operationsOf(doc)
    expect(ops.length).toBeGreaterThan(10)
    // The control plane is sent where the document says it is served: the dashboard's origin.
    const control = ops.filter((op) => op.path.startsWith('/_emulator/') && op.server)
    expect(control.length).toBeGreaterThan(8)
    for (const op of control) expect(op.server, `${op.method} ${op.path}`).toBe(adminUrl)
    // Each documented path as likely as any other (url(port) alone documents every method twice).
    const byPath = [...new Set(ops.map((op) => op.path))].map((path) => ops.filter((op) => op.path === path))
    const request = fc
      .constantFrom(...byPath)
      .chain((sameRoute) => fc.constantFrom(...sameRoute))
      .chain((op) => requestFor(op, doc, () => live))
    const pid = child?.pid ?? 0
    const rssBefore = rssBytes(pid)
    const statuses = new Map<number, number>()
    const failures: string[] = []
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const { status, text } = await send(r, port).catch((err: Error) => {
          throw new Error(`${err.message}: ${describeRequest(r)}`)
        })
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        // Through url(port) the guest answers for itself (busybox httpd refuses TRACE with its own 501);
        // the emulator's own answers carry its error body, and 502 is documented (guest unreachable).
        const proxied = r.op.includes('/proxy/')
        const ours = !proxied || text.includes('{"error":"')
        if (status === 0 || (status >= 500 && ours && !(proxied && status === 502))) {
          const problem = `answered ${status || 'nothing'} to ${describeRequest(r)}\n${text}`
          if (REPORT_ALL) {
            failures.push(problem)
            return
          }
          throw new Error(`${problem}\n--- emulator log (tail) ---\n${log.slice(-3000)}`)
        }
        if (child?.exitCode !== null)
          throw new Error(`the emulator exited after ${describeRequest(r)}:\n${log.slice(-3000)}`)
        await ensureLive()
      }),
      { numRuns: RUNS, endOnFailure: true },
    )
    const rssAfter = rssBytes(pid)
    console.log(
      `[fuzz] ${RUNS} requests over ${ops.length} operations; statuses ${JSON.stringify(Object.fromEntries(statuses))}; ` +
        `RSS ${Math.round(rssBefore / 2 ** 20)} -> ${Math.round(rssAfter / 2 ** 20)} MiB`,
    )
    if (failures.length) console.log(`[fuzz] ${failures.length} failures:\n\n${failures.join('\n\n')}`)
    expect(failures).toEqual([])
    expect(rssAfter - rssBefore).toBeLessThan(RSS_GROWTH_LIMIT)
    expect((await fetch(`${base()}/_emulator/health`)).status).toBe(200)
  }, 900_000)
})
