import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Validator } from '@seriousme/openapi-schema-validator'
import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { App } from '../src/app.ts'
import { buildOpenApiDocument } from '../src/http/openapi.ts'
import { PENDING } from '../src/http/routes/not-implemented.ts'
import {
  AuditEntryWire,
  CapabilitiesWire,
  ClockAdvancedWire,
  ClockWire,
  DestroyResultWire,
  DirEntriesWire,
  ErrorWire,
  ExecResultWire,
  FaultAddedWire,
  FaultDeletedWire,
  FaultListWire,
  FaultsClearedWire,
  ForkResultWire,
  HealthWire,
  HistoryWire,
  JournalWire,
  NetworkProfileListWire,
  ResetWire,
  RunListWire,
  RunRecordWire,
  SnapshotDeletedWire,
  SnapshotListWire,
  SnapshotWire,
  TenantsWire,
  UsageWireSchema,
} from '../src/http/wire.ts'
import { VirtualClock } from '../src/sandboxes/clock.ts'
import { buildInjectApp } from './support/inject-app.ts'

const dataDir = mkdtempSync(join(tmpdir(), 'isorun-openapi-test-'))

// biome-ignore lint/suspicious/noExplicitAny: a JSON document, navigated freely
type Json = Record<string, any>

/** Every route Fastify registers, as it registers it (before the app is ready, so none is missed). */
const registered: { method: string; url: string }[] = []
let t: App
let doc: Json

beforeAll(async () => {
  t = buildInjectApp(dataDir)
  t.app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) registered.push({ method, url: route.url })
  })
  const res = await t.app.inject({ method: 'GET', url: '/_emulator/openapi.json' })
  expect(res.statusCode).toBe(200)
  doc = res.json()
})
afterAll(async () => {
  await t.app.close()
  rmSync(dataDir, { recursive: true, force: true })
})

const OPENAPI_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']
/** Fastify's `/runs/:id/proxy/:port/*` as an OpenAPI path template. */
const templateOf = (url: string) => url.replace(/:(\w+)/g, '{$1}').replace(/\*$/, '{path}')
const resolve = (schema: Json): Json =>
  schema.$ref ? doc.components.schemas[schema.$ref.replace('#/components/schemas/', '')] : schema
const standalone = (schema: z.ZodType, io: 'input' | 'output') => {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' })
  return rest
}

describe('GET /_emulator/openapi.json', () => {
  it('is an OpenAPI 3.1 document with bearer security, and needs no API key', async () => {
    // Against the official OpenAPI 3.1 JSON Schema, $refs resolved.
    const validator = new Validator()
    expect(await validator.validate(structuredClone(doc))).toEqual({ valid: true })
    expect(validator.version).toBe('3.1')
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/)
    expect(doc.info).toMatchObject({ title: 'isorun-emulator', version: expect.any(String) })
    expect(Object.keys(doc.paths).length).toBeGreaterThan(10)
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(doc.security).toEqual([{ bearerAuth: [] }])
    expect(doc.servers[0].url).toMatch(/^http:\/\//)
    const ids = Object.values<Json>(doc.paths).flatMap((item) =>
      OPENAPI_METHODS.filter((m) => item[m]).map((m) => item[m].operationId),
    )
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('documents every /v1 and /_emulator route Fastify registered, with each of its methods, and nothing else', () => {
    const v1 = registered.filter((r) => r.url.startsWith('/v1/') || r.url.startsWith('/_emulator/'))
    expect(v1.length).toBeGreaterThan(30)
    // The control plane is documented too, so that tools (and test/fuzz.test.ts) reach it.
    for (const path of [
      '/_emulator/faults',
      '/_emulator/reset',
      '/_emulator/clock/advance',
      '/_emulator/health',
    ])
      expect(doc.paths[path], path).toBeDefined()
    const gets = new Set(v1.filter((r) => r.method === 'GET').map((r) => r.url))
    const undocumented: string[] = []
    for (const { method, url } of v1) {
      // Fastify adds a HEAD route beside every GET (exposeHeadRoutes); it answers as the GET does.
      if (method === 'HEAD' && gets.has(url) && !url.includes('/proxy/')) continue
      const item = doc.paths[templateOf(url)]
      const ok = OPENAPI_METHODS.includes(method.toLowerCase())
        ? item?.[method.toLowerCase()]
        : item?.['x-additional-methods']?.includes(method)
      if (!ok) undocumented.push(`${method} ${url}`)
    }
    expect(undocumented).toEqual([])
    // The other way round: no documented operation is a route that does not exist.
    const routes = new Set(v1.map((r) => `${r.method.toLowerCase()} ${templateOf(r.url)}`))
    for (const [path, item] of Object.entries<Json>(doc.paths)) {
      for (const m of OPENAPI_METHODS.filter((x) => item[x])) expect(routes).toContain(`${m} ${path}`)
    }
  })

  it('is made from the routes: a /v1 or /_emulator route that declares nothing for it is refused', () => {
    const servers = { api: 'http://a:1', admin: 'http://a:2' }
    expect(() =>
      buildOpenApiDocument([{ methods: ['GET'], url: '/v1/secret', schema: {} }], servers),
    ).toThrow('openapi: GET /v1/secret declares no schema.openapi')
    expect(() =>
      buildOpenApiDocument([{ methods: ['POST'], url: '/_emulator/x', schema: {} }], servers),
    ).toThrow('openapi: POST /_emulator/x declares no schema.openapi')
  })

  it('names the origin of each operation: the API’s for the document, the dashboard’s for the control plane and the dashboard', () => {
    const servers = { api: 'http://[::1]:1001', admin: 'http://[::1]:1002' }
    const routes = [
      {
        methods: ['GET'],
        url: '/v1/usage',
        schema: { openapi: { operationId: 'usage', tag: 'accounts' as const, summary: 's', responses: {} } },
      },
      {
        methods: ['GET'],
        url: '/_emulator/clock',
        schema: {
          openapi: {
            operationId: 'clock',
            tag: 'control' as const,
            security: 'admin' as const,
            origin: 'admin' as const,
            summary: 's',
            responses: {},
          },
        },
      },
    ]
    const built = buildOpenApiDocument(routes, servers) as Json
    expect(built.servers).toEqual([
      { url: servers.api, description: expect.stringContaining('ISORUN_EMULATOR_PORT') },
    ])
    expect(built.paths['/v1/usage'].get.servers).toBeUndefined()
    expect(built.paths['/_emulator/clock'].get.servers).toEqual([
      { url: servers.admin, description: expect.stringContaining('ISORUN_EMULATOR_ADMIN_PORT') },
    ])
    // In the app: every control operation and the dashboard carry the dashboard's origin, nothing else does.
    for (const [path, item] of Object.entries<Json>(doc.paths)) {
      for (const m of OPENAPI_METHODS.filter((x) => item[x])) {
        const admin = item[m].tags[0] === 'control' || path.startsWith('/_emulator/ui')
        expect(item[m].servers?.length ?? 0, `${m} ${path}`).toBe(admin ? 1 : 0)
      }
    }
    expect(doc.paths['/_emulator/tenants'].get.tags).toEqual(['control'])
  })

  it('declares every path parameter; the API key secures /v1 but url(port), the admin token the control plane', () => {
    expect(doc.components.securitySchemes.adminToken).toMatchObject({ type: 'http', scheme: 'bearer' })
    for (const [path, item] of Object.entries<Json>(doc.paths)) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1])
      for (const m of OPENAPI_METHODS.filter((x) => item[x])) {
        const op = item[m]
        const inPath = (op.parameters ?? []).filter((p: Json) => p.in === 'path').map((p: Json) => p.name)
        expect(inPath.sort(), `${m} ${path}`).toEqual([...names].sort())
        const errorAt = (status: number) => resolve(op.responses[status].content['application/json'].schema)
        // The emulator's read-only endpoints need nothing; its exec-transport, the sandbox's API key.
        if (path.includes('/proxy/') || (op.tags[0] === 'emulator' && !path.includes('/runs/{id}/'))) {
          expect(op.security, `${m} ${path}`).toEqual([])
          expect(op.responses[401]).toBeUndefined()
        } else if (op.tags[0] === 'control') {
          expect(path, `${m} ${path}`).toMatch(/^\/_emulator\//)
          // Nothing (no admin token set) or the admin token; never the API key.
          expect(op.security).toEqual([{}, { adminToken: [] }])
          expect(errorAt(401)).toEqual(doc.components.schemas.Error)
        } else {
          expect(op.security, `${m} ${path}`).toBeUndefined()
          expect(errorAt(401)).toEqual(doc.components.schemas.Error)
        }
        expect(op.responses.default).toBeDefined()
      }
    }
  })

  it('generates request bodies and parameters from the schemas that validate them, SDK defaults included', () => {
    const create = doc.paths['/v1/runs'].post
    expect(create.requestBody.required).toBe(false)
    const body = resolve(create.requestBody.content['application/json'].schema)
    expect(body.type).toBe('object')
    expect(body.required ?? []).toEqual([])
    expect(body.properties.image.default).toBe('node:22-slim')
    expect(body.properties.vcpus).toMatchObject({ type: 'integer', default: 1, minimum: 1 })
    expect(body.properties.mem_mib.default).toBe(1024)
    expect(body.properties.disk_mib.default).toBe(4096)
    expect(body.properties.timeout.default).toBe(300)
    expect(body.properties.credentials.propertyNames.pattern).toBe('^[A-Za-z_][A-Za-z0-9_]*$')

    const exec = doc.paths['/v1/runs/{id}/exec'].post
    expect(exec.requestBody.required).toBe(true)
    const execBody = resolve(exec.requestBody.content['application/json'].schema)
    expect(execBody.required).toEqual(['command'])
    expect(execBody.properties.timeout.default).toBe(30)

    const read = doc.paths['/v1/runs/{id}/files/download'].get
    expect(read.parameters).toContainEqual(
      expect.objectContaining({ name: 'path', in: 'query', required: true }),
    )
    expect(doc.components.schemas.Error).toEqual(standalone(ErrorWire, 'output'))
  })
})

describe('what the routes answer is what the document says', () => {
  const auth = { authorization: 'Bearer openapi-test' }

  /** The response's status is documented for the operation, with this very schema, and the body fits it. */
  function conforms(res: LightMyRequestResponse, method: string, path: string, schema?: z.ZodType): void {
    const op = doc.paths[path]?.[method]
    expect(op, `${method} ${path} documented`).toBeDefined()
    const documented = op.responses[res.statusCode]
    expect(documented, `${method} ${path} documents ${res.statusCode}`).toBeDefined()
    if (!schema) {
      expect(documented.content).toBeUndefined()
      return
    }
    expect(resolve(documented.content['application/json'].schema)).toEqual(standalone(schema, 'output'))
    schema.parse(res.json())
  }

  it('for the lifecycle, exec, files, state and accounts routes, and for errors', async () => {
    const call = (method: string, url: string, payload?: object) =>
      t.app.inject({ method: method as 'GET', url, headers: auth, ...(payload ? { payload } : {}) })

    const created = await call('POST', '/v1/runs', { image: 'busybox:latest' })
    conforms(created, 'post', '/v1/runs', RunRecordWire)
    const id = created.json().id
    conforms(await call('GET', '/v1/runs'), 'get', '/v1/runs', RunListWire)
    conforms(await call('GET', `/v1/runs/${id}`), 'get', '/v1/runs/{id}', RunRecordWire)
    conforms(await call('PATCH', `/v1/runs/${id}`, { timeout: 0 }), 'patch', '/v1/runs/{id}', RunRecordWire)
    const exec = await call('POST', `/v1/runs/${id}/exec`, { command: 'echo hi' })
    conforms(exec, 'post', '/v1/runs/{id}/exec', ExecResultWire)

    const upload = await t.app.inject({
      method: 'POST',
      url: `/v1/runs/${id}/files/upload?path=/a`,
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      payload: Buffer.from('abc'),
    })
    conforms(upload, 'post', '/v1/runs/{id}/files/upload')
    const download = await call('GET', `/v1/runs/${id}/files/download?path=/a`)
    expect(download.statusCode).toBe(200)
    expect(
      doc.paths['/v1/runs/{id}/files/download'].get.responses[200].content['application/octet-stream'],
    ).toBeDefined()
    // The fake engine has no directories: a 404 in the one error shape.
    conforms(await call('GET', `/v1/runs/${id}/files?path=/`), 'get', '/v1/runs/{id}/files', ErrorWire)
    expect(doc.paths['/v1/runs/{id}/files'].get.responses[200].content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/DirEntries',
    })
    expect(doc.components.schemas.DirEntries).toEqual(standalone(DirEntriesWire, 'output'))

    const snap = await call('POST', `/v1/runs/${id}/snapshot`)
    conforms(snap, 'post', '/v1/runs/{id}/snapshot', SnapshotWire)
    conforms(await call('GET', '/v1/snapshots'), 'get', '/v1/snapshots', SnapshotListWire)
    const restored = await call('POST', '/v1/runs/restore', { snapshot_id: snap.json().id })
    conforms(restored, 'post', '/v1/runs/restore', RunRecordWire)
    conforms(
      await call('POST', `/v1/runs/${id}/fork`, { count: 2 }),
      'post',
      '/v1/runs/{id}/fork',
      ForkResultWire,
    )
    conforms(await call('POST', `/v1/runs/${id}/hibernate`), 'post', '/v1/runs/{id}/hibernate', RunRecordWire)
    conforms(
      await call('POST', `/v1/runs/${id}/exec`, { command: 'true' }),
      'post',
      '/v1/runs/{id}/exec',
      ErrorWire,
    )
    conforms(await call('POST', `/v1/runs/${id}/resume`), 'post', '/v1/runs/{id}/resume', RunRecordWire)
    const del = await call('DELETE', `/v1/snapshots/${snap.json().id}`)
    conforms(del, 'delete', '/v1/snapshots/{id}', SnapshotDeletedWire)

    conforms(await call('DELETE', `/v1/runs/${id}`), 'delete', '/v1/runs/{id}', DestroyResultWire)
    conforms(await call('GET', '/v1/usage'), 'get', '/v1/usage', UsageWireSchema)
    conforms(await call('GET', '/v1/runs/history'), 'get', '/v1/runs/history', HistoryWire)
    const audit = await call('GET', `/v1/runs/${id}/audit`)
    expect(audit.statusCode).toBe(200)
    expect(doc.paths['/v1/runs/{id}/audit'].get.responses[200].content['application/x-ndjson']).toBeDefined()
    for (const line of audit.body.trim().split('\n')) AuditEntryWire.parse(JSON.parse(line))

    conforms(await call('GET', `/v1/runs/${id}`), 'get', '/v1/runs/{id}', ErrorWire)
    conforms(await call('POST', '/v1/runs', { vcpus: 0 }), 'post', '/v1/runs', ErrorWire)
    const noKey = await t.app.inject({ method: 'GET', url: '/v1/usage' })
    conforms(noKey, 'get', '/v1/usage', ErrorWire)
    conforms(await call('GET', '/v1/network-profiles'), 'get', '/v1/network-profiles', NetworkProfileListWire)
    for (const [method, url] of PENDING) {
      const res = await call(method, `/v1${url}`)
      expect(res.statusCode).toBe(501)
      conforms(res, method.toLowerCase(), `/v1${templateOf(url)}`, ErrorWire)
    }

    // url(port) needs no key; with nothing listening on the port, a 502 in the error shape.
    const alive = (await call('POST', '/v1/runs', { image: 'busybox:latest' })).json().id
    const proxied = await t.app.inject({ method: 'GET', url: `/v1/runs/${alive}/proxy/1/x` })
    conforms(proxied, 'get', '/v1/runs/{id}/proxy/{port}/{path}', ErrorWire)
    const badPort = await t.app.inject({ method: 'PUT', url: `/v1/runs/${alive}/proxy/0` })
    conforms(badPort, 'put', '/v1/runs/{id}/proxy/{port}', ErrorWire)
    await call('DELETE', `/v1/runs/${alive}`)
  })

  it('for the emulator’s own routes and the control plane', async () => {
    // The control plane's changes carry a JSON content type (what a web page cannot send elsewhere).
    const call = (method: string, url: string, payload?: object) =>
      t.app.inject({
        method: method as 'GET',
        url,
        headers: method === 'GET' ? {} : { 'content-type': 'application/json' },
        ...(payload ? { payload } : method === 'GET' ? {} : { payload: '' }),
      })
    conforms(await call('GET', '/_emulator/health'), 'get', '/_emulator/health', HealthWire)
    conforms(await call('GET', '/_emulator/capabilities'), 'get', '/_emulator/capabilities', CapabilitiesWire)
    const ui = await call('GET', '/_emulator/ui')
    expect(ui.statusCode).toBe(200)
    expect(doc.paths['/_emulator/ui'].get.responses[200].content['text/html']).toBeDefined()

    const added = await call('POST', '/_emulator/faults', { path: '^/v1/nowhere$', status: 503 })
    conforms(added, 'post', '/_emulator/faults', FaultAddedWire)
    expect(doc.paths['/_emulator/faults'].post.requestBody.content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/FaultSpec',
    })
    conforms(await call('GET', '/_emulator/faults'), 'get', '/_emulator/faults', FaultListWire)
    conforms(
      await call('POST', '/_emulator/faults', { path: '(?=x)' }),
      'post',
      '/_emulator/faults',
      ErrorWire,
    )
    const id = added.json().id
    conforms(
      await call('DELETE', `/_emulator/faults/${id}`),
      'delete',
      '/_emulator/faults/{id}',
      FaultDeletedWire,
    )
    conforms(await call('DELETE', `/_emulator/faults/${id}`), 'delete', '/_emulator/faults/{id}', ErrorWire)
    conforms(await call('DELETE', '/_emulator/faults'), 'delete', '/_emulator/faults', FaultsClearedWire)

    conforms(await call('GET', '/_emulator/clock'), 'get', '/_emulator/clock', ClockWire)
    // This app's clock is the real one: advancing it is a conflict.
    conforms(
      await call('POST', '/_emulator/clock/advance', { seconds: 1 }),
      'post',
      '/_emulator/clock/advance',
      ErrorWire,
    )
    conforms(await call('POST', '/_emulator/reset', {}), 'post', '/_emulator/reset', ResetWire)
    conforms(await call('GET', '/_emulator/requests?limit=5'), 'get', '/_emulator/requests', JournalWire)
    conforms(await call('GET', '/_emulator/tenants'), 'get', '/_emulator/tenants', TenantsWire)
    conforms(await call('GET', '/_emulator/requests?limit=0'), 'get', '/_emulator/requests', ErrorWire)
  })

  it('for the virtual clock', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'isorun-openapi-clock-'))
    const v = buildInjectApp(dir, { clock: new VirtualClock(0) })
    try {
      const res = await v.app.inject({
        method: 'POST',
        url: '/_emulator/clock/advance',
        headers: { 'content-type': 'application/json' },
        payload: { seconds: 60 },
      })
      conforms(res, 'post', '/_emulator/clock/advance', ClockAdvancedWire)
      expect(res.json().now).toBe('1970-01-01T00:01:00.000Z')
    } finally {
      await v.app.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
