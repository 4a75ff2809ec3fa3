import { realpathSync } from 'node:fs'
import type { Duplex } from 'node:stream'
import Docker from 'dockerode'

/**
 * The same work done straight on the Docker Engine API, configured like an emulator sandbox (init,
 * CPU and memory limits, the sleep keep-alive), as the baseline the emulator is compared with.
 */
export class RawDocker {
  readonly docker = new Docker()

  async create(image: string): Promise<Docker.Container> {
    const c = await this.docker.createContainer({
      Image: image,
      Entrypoint: ['sleep', '2147483647'],
      Cmd: [],
      Labels: { 'isorun-emulator.bench': '1' },
      HostConfig: { Init: true, NanoCpus: 1e9, Memory: 1024 * 1024 * 1024, MemorySwap: 1024 * 1024 * 1024 },
    })
    await c.start()
    return c
  }

  /**
   * A container CRIU can restore elsewhere: tini bind-mounted from its real path (Docker's `--init`
   * mounts it through a symlink, which CRIU fails to restore into another container).
   */
  async createCheckpointable(image: string, start = true): Promise<Docker.Container> {
    const c = await this.docker.createContainer({
      Image: image,
      Entrypoint: ['/sbin/docker-init', '--', 'sleep', '2147483647'],
      Cmd: [],
      Labels: { 'isorun-emulator.bench': '1' },
      HostConfig: {
        Binds: [`${realpathSync('/usr/bin/docker-init')}:/sbin/docker-init:ro`],
        NanoCpus: 1e9,
        Memory: 1024 * 1024 * 1024,
        MemorySwap: 1024 * 1024 * 1024,
      },
    })
    if (start) await c.start()
    return c
  }

  /** POST /containers/{id}/start?checkpoint=NAME with no body (dockerode's start() sends one). */
  startFromCheckpoint(c: Docker.Container, name: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.docker.modem.dial(
        {
          path: `/containers/${c.id}/start?`,
          method: 'POST',
          statusCodes: { 204: true, 304: true, 500: 'server error' },
          options: { _query: { checkpoint: name }, _body: {} },
        },
        (err: unknown) => (err ? reject(err) : resolve()),
      )
    })
  }

  async exec(c: Docker.Container, command: string): Promise<{ exitCode: number; bytes: number }> {
    const exec = await c.exec({ Cmd: ['/bin/sh', '-c', command], AttachStdout: true, AttachStderr: true })
    const stream = (await exec.start({ hijack: true, stdin: false })) as Duplex
    let bytes = 0
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (d: Buffer) => {
        bytes += d.length
      })
      stream.once('end', resolve)
      stream.once('close', resolve)
      stream.once('error', reject)
    })
    const info = await exec.inspect()
    return { exitCode: info.ExitCode ?? -1, bytes }
  }

  async destroy(c: Docker.Container): Promise<void> {
    await c.remove({ force: true, v: true })
  }

  async cleanup(): Promise<void> {
    const left = await this.docker.listContainers({
      all: true,
      filters: { label: ['isorun-emulator.bench=1'] },
    })
    await Promise.all(left.map((c) => this.docker.getContainer(c.Id).remove({ force: true })))
  }
}
