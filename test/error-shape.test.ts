import { connect } from 'node:net'
import { IsorunError } from 'isorun'
import { afterAll, expect, it } from 'vitest'
import { adminUrl, apiUrl, describeWithDocker, newApiKey, newClient, sandboxTracker } from './support/sdk.ts'

/**
 * The SDK's own shape for errors: `{"error": "<readable message>", "code", "details"}`, `error` first.
 * IsorunError.message is `HTTP <status>: ` and the body's first 200 bytes, so the readable message must
 * come first for SDK users (and the SDK's MCP tools and adapters, which show err.message) to read it.
 */
async function sdkError(p: Promise<unknown>): Promise<IsorunError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!(err instanceof IsorunError)) throw new Error(`expected an IsorunError, got ${String(err)}`)
  return err
}

/** The body is the SDK's shape, and err.message shows the readable message right after the status. */
function expectSdkShape(err: IsorunError, status: number, code: string): { error: string; details?: object } {
  expect(err.status).toBe(status)
  const body = JSON.parse(err.body ?? '') as { error: string; code: string; details?: object }
  expect(Object.keys(body)[0]).toBe('error')
  expect(typeof body.error).toBe('string')
  expect(body.code).toBe(code)
  expect(err.message.startsWith(`HTTP ${status}: {"error":${JSON.stringify(body.error).slice(0, 150)}`)).toBe(
    true,
  )
  return body
}

describeWithDocker('errors in the SDK’s shape, through the real SDK', () => {
  const apiKey = newApiKey()
  const isorun = newClient(apiKey)
  const track = sandboxTracker()
  const faults: string[] = []
  afterAll(async () => {
    for (const id of faults)
      await fetch(`${adminUrl}/_emulator/faults/${id}`, {
        method: 'DELETE',
        headers: { 'content-type': 'application/json' },
      })
  })

  it('puts the readable message first, so IsorunError.message carries it', async () => {
    const invalid = await sdkError(isorun.create({ image: 'busybox:latest', vcpus: 0 }))
    const body = expectSdkShape(invalid, 400, 'validation_failed')
    expect(body.error).toBe('body.vcpus: Too small: expected number to be >=1')
    expect(body.details).toEqual({ field: 'body.vcpus' })
    expect(invalid.message).toContain('body.vcpus: Too small: expected number to be >=1')

    const s = track(await isorun.create({ image: 'busybox:latest' }))
    await s.destroy()
    const gone = await sdkError(s.exec('true'))
    expect(expectSdkShape(gone, 404, 'not_found').error).toBe(`sandbox ${s.id} not found`)
    expect(gone.message).toContain(`sandbox ${s.id} not found`)

    // A long message (an image from a registry pulls may not reach, and what to do): its start is there.
    const missing = await sdkError(isorun.create({ image: 'registry.invalid.test/hh/nothing:never' }))
    const long = expectSdkShape(missing, 400, 'image_unavailable')
    expect(missing.message).toContain(long.error.slice(0, 150))
  })

  it('answers an injected fault in the same shape', async () => {
    const res = await fetch(`${adminUrl}/_emulator/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ path: '^/v1/usage$', status: 503, api_key: apiKey, times: 1 }),
    })
    expect(res.status).toBe(201)
    const { id } = (await res.json()) as { id: string }
    faults.push(id)
    const injected = await sdkError(isorun.usage())
    const body = expectSdkShape(injected, 503, 'injected_fault')
    expect(body.error).toBe(`injected by fault ${id}`)
    expect(body.details).toEqual({ fault: id })
  })

  it('answers in the same shape from the error handler, Fastify’s own refusals and raw replies', async () => {
    const auth = { authorization: `Bearer ${apiKey}` }
    const shape = async (res: Response, status: number, code: string) => {
      expect(res.status).toBe(status)
      const text = await res.text()
      expect(text.startsWith('{"error":"')).toBe(true)
      expect(JSON.parse(text)).toMatchObject({ error: expect.any(String), code })
    }
    await shape(await fetch(`${apiUrl}/v1/nothing`, { headers: auth }), 404, 'route_not_found')
    await shape(
      await fetch(`${apiUrl}/v1/runs`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'a=1',
      }),
      415,
      'unsupported_media_type',
    )
    await shape(
      await fetch(`${apiUrl}/v1/runs`, { headers: { authorization: 'Basic x' } }),
      401,
      'unauthorized',
    )
    // A path parameter longer than the router takes: Fastify's own answer, in the one shape too.
    await shape(await fetch(`${apiUrl}/v1/runs/${'a'.repeat(200)}`, { headers: auth }), 414, 'uri_too_long')

    const s = track(await isorun.create({ image: 'busybox:latest' }))
    // url(port) with nothing listening: the routes' 502, the fast lane's and an upgrade's raw one.
    await shape(await fetch(s.url(1)), 502, 'bad_gateway')
    const upgraded = await rawUpgrade(new URL(s.url(1)))
    expect(upgraded).toMatch(/^HTTP\/1\.1 502 /)
    const body = upgraded.slice(upgraded.indexOf('\r\n\r\n') + 4)
    expect(body.startsWith('{"error":"')).toBe(true)
    expect(JSON.parse(body)).toMatchObject({ code: 'bad_gateway', details: { id: s.id, port: 1 } })
  })
})

/** A WebSocket upgrade request on a raw socket; resolves with everything the emulator answered. */
function rawUpgrade(url: URL): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname.replace(/^\[|\]$/g, ''))
    let answer = ''
    socket.on('data', (d) => {
      answer += d.toString('latin1')
    })
    socket.on('end', () => resolve(answer))
    socket.on('error', reject)
    socket.write(
      `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    )
  })
}
