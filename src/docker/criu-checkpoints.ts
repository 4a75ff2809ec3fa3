import { randomBytes } from 'node:crypto'
import { cp, lstat, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type Docker from 'dockerode'

/**
 * CRIU checkpoints through Docker (experimental API). Docker keeps a container's checkpoints in
 * `<root>/containers/<id>/checkpoints/<name>/` and refuses a custom checkpoint dir when starting, so a
 * checkpoint is moved out to the emulator's data dir when taken and copied into the new container's own
 * checkpoints dir before it is started from it.
 */
export class CriuCheckpoints {
  private readonly docker: Docker
  private readonly rootDir: string

  constructor(docker: Docker, rootDir: string) {
    this.docker = docker
    this.rootDir = rootDir
  }

  dirOf(containerId: string, name: string): string {
    return join(this.rootDir, 'containers', containerId, 'checkpoints', name)
  }

  /** Checkpoints a container; `exit` stops it (hibernate), otherwise it keeps its state (paused stays paused). */
  async create(containerId: string, name: string, exit: boolean): Promise<void> {
    // dockerode implements the experimental checkpoint calls; its type definitions do not declare them.
    const container = this.docker.getContainer(containerId) as unknown as ExperimentalContainer
    await container.createCheckpoint({ CheckpointID: name, Exit: exit })
  }

  /** Moves a container's checkpoint to `dest` (a dir that must not exist yet). */
  async moveOut(containerId: string, name: string, dest: string): Promise<void> {
    const src = this.dirOf(containerId, name)
    await mkdir(join(dest, '..'), { recursive: true })
    try {
      await rename(src, dest)
    } catch {
      // Another filesystem: copy, then drop the original.
      await cp(src, dest, { recursive: true, preserveTimestamps: true })
      await rm(src, { recursive: true, force: true })
    }
  }

  /** Copies a stored checkpoint in as `name` of a (created, not started) container. */
  async copyIn(src: string, containerId: string, name: string): Promise<void> {
    const dest = this.dirOf(containerId, name)
    await mkdir(join(dest, '..'), { recursive: true })
    await cp(src, dest, { recursive: true, preserveTimestamps: true })
  }

  async copyOut(containerId: string, name: string, dest: string): Promise<void> {
    await mkdir(join(dest, '..'), { recursive: true })
    await cp(this.dirOf(containerId, name), dest, { recursive: true, preserveTimestamps: true })
  }

  async startFrom(containerId: string, name: string): Promise<void> {
    // Docker uploads the checkpoint to containerd's content store by its digest, and two uploads of the
    // same content (parallel restores of one fork, or a sandbox hibernated twice without change) fail
    // with "already exists". A file unique to each start gives each its own digest; CRIU ignores it.
    await writeFile(join(this.dirOf(containerId, name), 'isorun-nonce'), randomBytes(16).toString('hex'))
    // Not dockerode's start(): it sends its options as a JSON body too, which Docker refuses on start.
    await new Promise<void>((resolve, reject) => {
      this.docker.modem.dial(
        {
          path: `/containers/${containerId}/start?`,
          method: 'POST',
          statusCodes: { 204: true, 304: true, 404: 'no such container', 500: 'server error' },
          options: { _query: { checkpoint: name }, _body: {} },
        },
        (err: unknown) => (err ? reject(err) : resolve()),
      )
    })
  }

  async remove(containerId: string, name: string): Promise<void> {
    await rm(this.dirOf(containerId, name), { recursive: true, force: true })
  }

  async exists(containerId: string, name: string): Promise<boolean> {
    return stat(this.dirOf(containerId, name)).then(
      () => true,
      () => false,
    )
  }
}

interface ExperimentalContainer {
  createCheckpoint(opts: { CheckpointID: string; Exit: boolean }): Promise<unknown>
}

/** Bytes under a directory (a checkpoint's real size on disk). */
export async function dirSize(dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    if (entry.isDirectory()) total += await dirSize(p)
    else total += (await lstat(p)).size
  }
  return total
}
