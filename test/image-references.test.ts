import { createServer as createHttpServer } from 'node:http'
import { createServer, type Server } from 'node:net'
import { type Isorun, IsorunError } from 'isorun'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDockerClient } from '../src/docker/client.ts'
import { type EmulatorProcess, launchEmulator } from './support/emulator-process.ts'
import { describeWithDocker, docker, newClient, sandboxTracker } from './support/sdk.ts'

/** A TCP listener that counts the connections made to it: anything that reaches it was contacted. */
async function listener(): Promise<{ server: Server; port: number; connections: () => number }> {
  let count = 0
  const server = createServer((socket) => {
    count++
    socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return {
    server,
    port: typeof address === 'object' && address ? address.port : 0,
    connections: () => count,
  }
}

interface ErrorBody {
  error?: string
  code?: string
  details?: { field?: string }
}

async function createError(isorun: Isorun, image: string): Promise<{ status: number; body: ErrorBody }> {
  const err = await isorun.create({ image }).then(
    async (s) => {
      await s.destroy()
      throw new Error(`create({ image: ${JSON.stringify(image)} }) succeeded`)
    },
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(IsorunError)
  const e = err as IsorunError
  return { status: e.status, body: JSON.parse(e.body ?? '{}') }
}

describeWithDocker('image references: a create names an image, nothing else (issue 11 item 1)', () => {
  let emulator: EmulatorProcess
  let target: Awaited<ReturnType<typeof listener>>

  beforeAll(async () => {
    target = await listener()
    emulator = await launchEmulator()
  })
  afterAll(async () => {
    await emulator?.stop()
    target?.server.close()
  })

  const bad = () => [
    '../../etc/passwd',
    `../../127.0.0.1:${target.port}/x`,
    `busybox/../../../127.0.0.1:${target.port}/x`,
    '/busybox',
    'busybox/',
    'x//y',
    'a%00b',
    'busybox\u0000',
    ' ',
    'busybox latest',
    'Busybox:latest',
    'busybox:',
    'busybox:latest?x=1',
    'busybox#frag',
    `${'a'.repeat(300)}:latest`,
  ]

  it('answers each reference outside the grammar with a 400 naming body.image, and the process lives on', async () => {
    const isorun = emulator.client()
    for (const image of bad()) {
      const { status, body } = await createError(isorun, image)
      expect({ image, status, code: body.code, field: body.details?.field }).toEqual({
        image,
        status: 400,
        code: 'validation_failed',
        field: 'body.image',
      })
    }
    // Give a stray redirect time to be followed, as it was before the fix.
    await new Promise((r) => setTimeout(r, 500))
    expect(emulator.exited()).toBeUndefined()
    const health = await fetch(`${emulator.apiUrl}/_emulator/health`)
    expect(health.status).toBe(200)
    expect(target.connections()).toBe(0)
  })
})

describeWithDocker('the Docker client never leaves the engine, whatever the engine answers', () => {
  let target: Awaited<ReturnType<typeof listener>>
  beforeAll(async () => {
    target = await listener()
  })
  afterAll(() => target?.server.close())

  it('does not follow a redirect Docker answers to an unclean path, and reports an error instead', async () => {
    const client = createDockerClient()
    for (const name of [`../../127.0.0.1:${target.port}/x`, '../../etc/passwd', 'a/../../b']) {
      const err = await client
        .getImage(name)
        .inspect()
        .catch((e: unknown) => e)
      expect(String((err as Error).message)).toMatch(/refused to send an unclean path/)
    }
    await new Promise((r) => setTimeout(r, 500))
    expect(target.connections()).toBe(0)
  })

  it('treats an engine that answers with a redirect as an error, and follows it nowhere', async () => {
    const engine = createHttpServer((_req, res) => {
      res.writeHead(301, { location: `http://127.0.0.1:${target.port}/v1.41/images/x/json` })
      res.end()
    })
    await new Promise<void>((resolve) => engine.listen(0, '127.0.0.1', resolve))
    const address = engine.address()
    const port = typeof address === 'object' && address ? address.port : 0
    try {
      const client = createDockerClient({ host: '127.0.0.1', port, protocol: 'http' })
      const err = await client
        .getImage('busybox:latest')
        .inspect()
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(Error)
      expect(String((err as Error).message)).toMatch(/redirect|301/i)
      await new Promise((r) => setTimeout(r, 500))
      expect(target.connections()).toBe(0)
    } finally {
      engine.close()
    }
  })
})

describeWithDocker('images do not cross tenants (issue 12 item 1)', () => {
  const owner = newClient()
  const other = newClient()
  const track = sandboxTracker()

  it('another key cannot start a sandbox from a snapshot image by its tag, its id or an id prefix', async () => {
    const s = track(await owner.create({ image: 'busybox:latest', credentials: { OWNER_SECRET: 'hunter2' } }))
    await s.writeFile('/root/private.txt', 'owner only')
    const snap = await s.snapshot()
    const tag = `isorun-emulator-snapshot:${snap.id}`
    const id = (await docker.getImage(tag).inspect()).Id
    const hex = id.replace(/^sha256:/, '')
    for (const image of [tag, `docker.io/library/${tag}`, id, hex, `${tag}@${id}`]) {
      const { status, body } = await createError(other, image)
      expect({ image, status, code: body.code, field: body.details?.field }).toEqual({
        image,
        status: 400,
        code: 'validation_failed',
        field: 'body.image',
      })
    }
    // A short id prefix is a well-formed name: it is looked up as a name, never as an id.
    for (const image of [hex.slice(0, 12), hex.slice(0, 6)]) {
      const { status, body } = await createError(other, image)
      expect({ image, status, code: body.code }).toEqual({
        image,
        status: 400,
        code: 'image_unavailable',
      })
    }
    // The owner restores it as usual.
    const restored = track(await owner.restore(snap.id))
    expect(await restored.readFile('/root/private.txt')).toBe('owner only')
    await owner.deleteSnapshot(snap.id)
  })
})

describe('image reference grammar (distribution/reference)', async () => {
  const { parseImageReference } = await import('../src/images/reference.ts')

  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:latest', 'docker.io/library/busybox:latest'],
    ['node:22-slim', 'docker.io/library/node:22-slim'],
    ['library/node:22', 'docker.io/library/node:22'],
    ['docker.io/library/busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['index.docker.io/library/busybox', 'docker.io/library/busybox:latest'],
    ['someone/some_image.with-seps__x:v1.2_3', 'docker.io/someone/some_image.with-seps__x:v1.2_3'],
    ['ghcr.io/owner/repo/sub:tag', 'ghcr.io/owner/repo/sub:tag'],
    ['localhost/thing', 'localhost/thing:latest'],
    ['localhost:5000/thing:1', 'localhost:5000/thing:1'],
    ['Registry.Example.com:443/a/b', 'Registry.Example.com:443/a/b:latest'],
    [`busybox@sha256:${'a'.repeat(64)}`, `docker.io/library/busybox@sha256:${'a'.repeat(64)}`],
    [`busybox:1@sha256:${'b'.repeat(64)}`, `docker.io/library/busybox:1@sha256:${'b'.repeat(64)}`],
  ])('accepts %s as %s', (text, canonical) => {
    expect(parseImageReference(text).canonical).toBe(canonical)
  })

  it.each([
    ['', /empty/],
    ['Busybox', /lowercase/],
    ['upper/Case', /lowercase/],
    ['a'.repeat(64), /image id/],
    [`sha256:${'a'.repeat(64)}`, /image id|not a valid/],
    ['busybox:-tag', /not a valid/],
    [`busybox:${'t'.repeat(129)}`, /not a valid/],
    ['busybox@sha256:abc', /not a valid/],
    ['a..b', /not a valid/],
    ['a__-b', /not a valid/],
    ['-a', /not a valid/],
    ['a-', /not a valid/],
    ['host:port/x', /not a valid/],
    ['[::1]:5000/a', /not a valid/],
    [`${'a/'.repeat(128)}b`, /255/],
    ['isorun-emulator-snapshot:abc', /reserved/],
    ['isorun-emulator:local', /reserved/],
  ])('refuses %j', (text, why) => {
    expect(() => parseImageReference(text)).toThrow(why)
  })
})
