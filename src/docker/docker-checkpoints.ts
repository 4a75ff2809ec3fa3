import { join } from 'node:path'
import type Docker from 'dockerode'
import { Errors } from '../errors.ts'
import type { SandboxSpec, SnapshotOutcome, SnapshotRequest, StoredSnapshot } from '../sandboxes/engine.ts'
import { type ContainerSettings, createSandboxContainer, startSandboxContainer } from './containers.ts'
import { CriuCheckpoints, dirSize } from './criu-checkpoints.ts'
import { checkpointFailure } from './criu-log.ts'
import { dockerMessage, translateDockerError } from './errors.ts'
import { commitSnapshot, discardSnapshotImage, snapshotImage, snapshotLayerSize } from './snapshot-images.ts'

/** The checkpoint a hibernated sandbox resumes from. */
export const HIBERNATE_CHECKPOINT = 'hibernate'
/** The name a stored checkpoint is given inside the container restored from it. */
const RESTORE_CHECKPOINT = 'restore'

/**
 * Snapshot, restore, hibernate and resume on Docker: `docker commit` for the filesystem, CRIU
 * checkpoints (Docker's experimental API) for processes and memory.
 */
export class DockerCheckpoints {
  private readonly docker: Docker
  private readonly criu: CriuCheckpoints

  constructor(docker: Docker, rootDir: string) {
    this.docker = docker
    this.criu = new CriuCheckpoints(docker, rootDir)
  }

  /**
   * A running sandbox is paused first, so the commit (files) and the checkpoint (memory) come from the
   * same instant; CRIU checkpoints a paused container and leaves it paused. Then it is unpaused: it
   * never stops. A hibernated sandbox is captured as it lies: its commit plus its hibernation checkpoint.
   */
  async snapshot(containerId: string, req: SnapshotRequest): Promise<SnapshotOutcome> {
    const container = this.docker.getContainer(containerId)
    const image = snapshotImage(req.snapshotId)
    const checkpointDir = req.withMemory ? join(req.artifactDir, 'checkpoint') : null
    try {
      if (req.hibernated) {
        await commitSnapshot(container, req.snapshotId, false)
        if (checkpointDir) await this.criu.copyOut(containerId, HIBERNATE_CHECKPOINT, checkpointDir)
      } else {
        await container.pause()
        try {
          if (req.withMemory) await this.criu.create(containerId, req.snapshotId, false)
          await commitSnapshot(container, req.snapshotId, false)
        } finally {
          await container.unpause().catch(() => {})
        }
        if (checkpointDir) await this.criu.moveOut(containerId, req.snapshotId, checkpointDir)
      }
    } catch (err) {
      await this.criu.remove(containerId, req.snapshotId)
      await discardSnapshotImage(this.docker, req.snapshotId)
      throw await checkpointFailure(err, containerId)
    }
    const stored: StoredSnapshot = { image, checkpointDir }
    return { stored, sizeBytes: await this.sizeOf(stored) }
  }

  /** A new container from the snapshot's image; started from its checkpoint when it has one. */
  async restore(stored: StoredSnapshot, spec: SandboxSpec, settings: ContainerSettings): Promise<string> {
    const container = await createSandboxContainer(this.docker, spec, stored.image, settings)
    if (!stored.checkpointDir) {
      await startSandboxContainer(container, spec)
      return container.id
    }
    try {
      await this.criu.copyIn(stored.checkpointDir, container.id, RESTORE_CHECKPOINT)
      await this.criu.startFrom(container.id, RESTORE_CHECKPOINT)
    } catch (err) {
      await container.remove({ force: true, v: true }).catch(() => {})
      throw Errors.engine(`restoring the checkpoint into a new sandbox failed: ${dockerMessage(err)}`)
    }
    return container.id
  }

  async hibernate(containerId: string, withMemory: boolean): Promise<void> {
    try {
      if (withMemory) {
        await this.criu.create(containerId, HIBERNATE_CHECKPOINT, true)
        await this.untilStopped(containerId)
      } else {
        await this.docker.getContainer(containerId).pause()
      }
    } catch (err) {
      throw await checkpointFailure(err, containerId)
    }
  }

  async resume(containerId: string, withMemory: boolean): Promise<void> {
    try {
      if (withMemory) {
        await this.criu.startFrom(containerId, HIBERNATE_CHECKPOINT)
        await this.criu.remove(containerId, HIBERNATE_CHECKPOINT)
      } else {
        await this.docker.getContainer(containerId).unpause()
      }
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
  }

  /**
   * Docker answers a checkpoint with exit before its own record of the container has caught up (it
   * still lists it as paused for a moment); wait until it is stopped, so hibernate returns with the
   * memory really released and a resume right after finds a stopped container.
   */
  private async untilStopped(containerId: string): Promise<void> {
    const container = this.docker.getContainer(containerId)
    for (let i = 0; i < 100; i++) {
      const { State } = await container.inspect()
      if (!State.Running && !State.Paused) return
      await new Promise((r) => setTimeout(r, 20))
    }
    throw Errors.engine(`sandbox container ${containerId.slice(0, 12)} did not stop after its checkpoint`)
  }

  isHibernatedWithMemory(containerId: string): Promise<boolean> {
    return this.criu.exists(containerId, HIBERNATE_CHECKPOINT)
  }

  /** The snapshot's own layer (not the base image it shares) plus its checkpoint files. */
  private async sizeOf(stored: StoredSnapshot): Promise<number> {
    const layer = await snapshotLayerSize(this.docker, stored.image)
    const checkpoint = stored.checkpointDir ? await dirSize(stored.checkpointDir) : 0
    return layer + checkpoint
  }
}
