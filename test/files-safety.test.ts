import { createServer, type Server } from 'node:http'
import { finished } from 'node:stream/promises'
import { IsorunError, type Sandbox } from 'isorun'
import * as tar from 'tar-stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDockerClient } from '../src/docker/client.ts'
import { readFile } from '../src/docker/files.ts'
import { type EmulatorProcess, launchEmulator } from './support/emulator-process.ts'
import { describeWithDocker, newClient, sandboxTracker } from './support/sdk.ts'

async function writeError(s: Sandbox, path: string): Promise<{ status: number; code: string | undefined }> {
  const err = await s.writeFile(path, 'clobber').then(
    () => new Error(`writeFile(${JSON.stringify(path)}) succeeded`),
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(IsorunError)
  const e = err as IsorunError
  return { status: e.status, code: JSON.parse(e.body ?? '{}').code }
}

describeWithDocker('writeFile never replaces a directory (issue 11 item 8)', () => {
  const isorun = newClient()
  const track = sandboxTracker()
  let s: Sandbox

  beforeAll(async () => {
    s = track(await isorun.create({ image: 'busybox:latest' }))
    await s.exec(
      'mkdir -p /work/sub && echo keep > /tmp/keep.txt && echo keep > /work/sub/f && ln -s /work /worklink',
    )
  })

  it.each(['/tmp', '/tmp/', '/', '/..', '/tmp/..', '/work/sub/.', '/worklink', '/worklink/sub'])(
    'answers writeFile(%j) with 400 not_a_file and leaves the directory as it was',
    async (path) => {
      expect(await writeError(s, path)).toEqual({ status: 400, code: 'not_a_file' })
      const check = await s.exec(
        'test -d /tmp && cat /tmp/keep.txt && test -d /work/sub && cat /work/sub/f && test -L /worklink && echo ok',
      )
      expect(check).toMatchObject({ exitCode: 0, stdout: 'keep\nkeep\nok\n' })
    },
  )

  // Findings 1: the engine bind-mounts these into every container; its archive API cannot replace them.
  it.each(['/etc/hostname', '/etc/hosts', '/etc/resolv.conf'])(
    'answers writeFile(%j), a file the engine mounts, with a 4xx naming the path and keeps the sandbox working',
    async (path) => {
      const before = (await s.exec(`cat ${path}`)).stdout
      const err = await s.writeFile(path, 'clobber').then(
        () => new Error(`writeFile(${path}) succeeded`),
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(IsorunError)
      const e = err as IsorunError
      expect(e.status).toBe(409)
      const body = JSON.parse(e.body ?? '{}')
      expect(body).toMatchObject({ code: 'conflict', details: { path } })
      expect(body.error).toContain(path)
      expect((await s.exec(`cat ${path}`)).stdout).toBe(before)
      expect((await s.exec('echo alive')).stdout).toBe('alive\n')
    },
  )

  it('still writes files, also through a path with dot segments', async () => {
    await s.writeFile('/tmp/../work/./new.txt', 'fresh')
    expect((await s.exec('cat /work/new.txt')).stdout).toBe('fresh')
    await s.writeFile('/tmp/keep.txt', 'replaced')
    expect(await s.readFile('/tmp/keep.txt')).toBe('replaced')
  })
})

describeWithDocker('a file that changes while it is read cannot end the process (issue 11 item 2)', () => {
  let emulator: EmulatorProcess
  beforeAll(async () => {
    emulator = await launchEmulator()
  })
  afterAll(async () => {
    await emulator?.stop()
  })

  it('survives hundreds of downloads of a file a guest loop keeps truncating and replacing', async () => {
    const isorun = emulator.client()
    const s = await isorun.create({ image: 'busybox:latest' })
    // Two writers: one rewrites the file in place (its size changes under a reader), one swaps it.
    await s.exec(
      'head -c 65536 /dev/zero > /tmp/seed; cp /tmp/seed /tmp/flip; ' +
        '(while :; do : > /tmp/flip; cat /tmp/seed > /tmp/flip; usleep 1000; done) >/dev/null 2>&1 & ' +
        '(while :; do head -c 4096 /dev/zero > /tmp/flip.new; mv /tmp/flip.new /tmp/flip; usleep 1000; done) >/dev/null 2>&1 &',
    )
    // Before the fix the process died after 2 to 12 downloads cut short (25 to 200 downloads in all);
    // this reads until it has seen CUT_SHORT of them, or MAX downloads.
    const CUT_SHORT = 10
    const MAX = 300
    const outcomes = { whole: 0, cutShort: 0 }
    const reader = async () => {
      while (
        outcomes.cutShort < CUT_SHORT &&
        outcomes.whole + outcomes.cutShort < MAX &&
        !emulator.exited()
      ) {
        try {
          const text = await s.readFile('/tmp/flip')
          expect([0, 4096, 65536]).toContain(text.length)
          outcomes.whole++
        } catch (err) {
          // A download cut short is an error the client sees (an HTTP error, or the connection closed
          // before the length it was promised), never a short file passed off as whole.
          if (!(err instanceof Error)) throw err
          outcomes.cutShort++
        }
      }
    }
    await Promise.all([reader(), reader(), reader()])
    expect({ exited: emulator.exited(), log: emulator.exited() ? emulator.log().slice(-2000) : '' }).toEqual({
      exited: undefined,
      log: '',
    })
    expect((await fetch(`${emulator.apiUrl}/_emulator/health`)).status).toBe(200)
    // The race did happen (the stand-in engine below makes it happen every time).
    expect(outcomes.cutShort).toBeGreaterThan(0)
    // The sandbox is still fine.
    expect((await s.exec('echo alive')).stdout).toBe('alive\n')
    await s.destroy()
  }, 400_000)
})

describe('an archive the engine cuts short (issue 11 item 2, without Docker)', () => {
  /** A stand-in engine whose archive of any path is a tar entry promising 1000 bytes and giving 10. */
  async function truncatingEngine(): Promise<{ server: Server; port: number }> {
    const pack = tar.pack()
    pack.entry({ name: 'f', size: 1000, type: 'file' }, Buffer.alloc(1000, 'x'))
    pack.finalize()
    const whole: Buffer[] = []
    for await (const chunk of pack) whole.push(chunk as Buffer)
    const cut = Buffer.concat(whole).subarray(0, 512 + 10)
    const server = createServer((req, res) => {
      if (!/\/archive\?/.test(req.url ?? '')) return res.writeHead(404).end('{"message":"no"}')
      res.writeHead(200, { 'content-type': 'application/x-tar' })
      res.end(cut)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address()
    return { server, port: typeof address === 'object' && address ? address.port : 0 }
  }

  it('fails the download, early or late reader alike, and raises nothing unhandled', async () => {
    const engine = await truncatingEngine()
    try {
      const docker = createDockerClient({ host: '127.0.0.1', port: engine.port, protocol: 'http' })
      for (const lateBy of [0, 50]) {
        const download = await readFile(docker, 'cafe', '/f')
        // A reader that attaches only after the archive has ended (a small file arrives whole).
        if (lateBy) await new Promise((r) => setTimeout(r, lateBy))
        // As Fastify reads it: end-of-stream also reports an error that happened before it looked.
        download.stream.resume()
        const read = await finished(download.stream).then(
          () => 'ended',
          (err: unknown) => err,
        )
        expect(read).toBeInstanceOf(Error)
        expect((read as Error).message).toMatch(/changed while it was being read/)
      }
      await new Promise((r) => setTimeout(r, 100))
    } finally {
      engine.server.close()
    }
  })
})
