import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Docker from 'dockerode'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PullProgress } from '../src/docker/pull-progress.ts'
import { type EmulatorProcess, launchEmulator } from './support/emulator-process.ts'
import { describeOnEngine } from './support/sdk.ts'

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * A registry of one image on loopback (Docker talks plain HTTP to 127.0.0.0/8), serving its layer
 * slowly, so a pull takes a few seconds: busybox, with a few MB of noise beside it.
 */
async function slowRegistry(repo: string): Promise<{ server: Server; port: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'isorun-registry-'))
  try {
    const root = join(dir, 'root')
    mkdirSync(join(root, 'bin'), { recursive: true })
    copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'))
    for (const applet of ['sh', 'sleep', 'echo', 'cat']) symlinkSync('busybox', join(root, 'bin', applet))
    writeFileSync(join(root, 'noise'), randomBytes(4 * 1024 * 1024))
    execFileSync('tar', ['-cf', join(dir, 'layer.tar'), '-C', root, '.'])
    const tar = readFileSync(join(dir, 'layer.tar'))
    execFileSync('gzip', ['-1', join(dir, 'layer.tar')])
    const layer = readFileSync(join(dir, 'layer.tar.gz'))
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Env: ['PATH=/bin'], Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      }),
    )
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        config: {
          mediaType: 'application/vnd.docker.container.image.v1+json',
          size: config.length,
          digest: sha256(config),
        },
        layers: [
          {
            mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
            size: layer.length,
            digest: sha256(layer),
          },
        ],
      }),
    )
    const blobs = new Map([
      [sha256(config), config],
      [sha256(layer), layer],
    ])
    const server = createServer(async (req, res) => {
      const url = req.url ?? ''
      if (url === '/v2/' || url === '/v2')
        return res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      if (url.startsWith(`/v2/${repo}/manifests/`)) {
        res.writeHead(200, {
          'content-type': 'application/vnd.docker.distribution.manifest.v2+json',
          'docker-content-digest': sha256(manifest),
          'content-length': manifest.length,
        })
        return res.end(req.method === 'HEAD' ? undefined : manifest)
      }
      const blob = blobs.get(url.slice(`/v2/${repo}/blobs/`.length))
      if (!url.startsWith(`/v2/${repo}/blobs/`) || !blob) return res.writeHead(404).end()
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length })
      if (req.method === 'HEAD') return res.end()
      // About 3 s for the layer: progress has time to be seen.
      const chunk = Math.ceil(blob.length / 30)
      for (let at = 0; at < blob.length; at += chunk) {
        if (res.destroyed) return
        res.write(blob.subarray(at, at + chunk))
        await sleep(100)
      }
      res.end()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address()
    return { server, port: typeof address === 'object' && address ? address.port : 0 }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('pull progress lines', () => {
  it('sum the layers, at most one line every 2 s, and a closing line', () => {
    let t = 0
    const p = new PullProgress('acme/app:1', () => t)
    expect(p.event({ status: 'Pulling from acme/app', id: '1' })).toBe(
      'pulling acme/app:1: 0 of 0 layers done',
    )
    expect(p.event({ status: 'Pulling fs layer', id: 'a' })).toBeUndefined()
    p.event({ status: 'Pulling fs layer', id: 'b' })
    t = 2_500
    expect(p.event({ status: 'Downloading', id: 'a', progressDetail: { current: 1e6, total: 4e6 } })).toBe(
      'pulling acme/app:1: 0 of 2 layers done, 1.0 of 4.0 MB downloaded',
    )
    p.event({ status: 'Downloading', id: 'b', progressDetail: { current: 5e5, total: 1e6 } })
    t = 5_000
    expect(p.event({ status: 'Pull complete', id: 'a' })).toBe(
      'pulling acme/app:1: 1 of 2 layers done, 4.5 of 5.0 MB downloaded',
    )
    p.event({ status: 'Pull complete', id: 'b' })
    t = 6_000
    expect(p.finished()).toBe('pulled acme/app:1 in 6.0 s (2 layers, 5.0 MB)')
  })
})

describeOnEngine(
  'docker',
  'Podman pulls from a plain-HTTP registry only when told it is insecure',
  'pull progress from a reachable registry',
  () => {
    const repo = `isorun-pull-${randomBytes(4).toString('hex')}/tiny`
    let registry: { server: Server; port: number }
    let emulator: EmulatorProcess | undefined
    let image = ''
    beforeAll(async () => {
      registry = await slowRegistry(repo)
      image = `127.0.0.1:${registry.port}/${repo}:1`
    })
    afterAll(async () => {
      await emulator?.stop()
      registry?.server.close()
      await new Docker()
        .getImage(image)
        .remove({ force: true })
        .catch(() => undefined)
    })

    it('logs the pull as it goes, then runs the image', async () => {
      emulator = await launchEmulator({ ISORUN_EMULATOR_PULL_REGISTRIES: `127.0.0.1:${registry.port}` })
      const isorun = emulator.client()
      const s = await isorun.create({ image })
      try {
        expect((await s.exec('echo pulled')).stdout).toBe('pulled\n')
      } finally {
        await s.destroy()
        isorun.close()
      }
      const log = emulator.log()
      expect(log).toMatch(
        new RegExp(
          `pulling ${image.replace(/[.]/g, '\\.')}: \\d of 1 layers done, [\\d.]+ of [\\d.]+ MB downloaded`,
        ),
      )
      expect(log).toContain(`pulled ${image} in `)
    })
  },
)
