import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type Docker from 'dockerode'
import {
  type ContainerSettings,
  containerName,
  createSandboxContainer,
  startSandboxContainer,
} from '../docker/containers.ts'
import { checkpointFailure } from '../docker/criu-log.ts'
import { dockerMessage, translateDockerError } from '../docker/errors.ts'
import {
  commitSnapshot,
  discardSnapshotImage,
  snapshotImage,
  snapshotLayerSize,
} from '../docker/snapshot-images.ts'
import { Errors } from '../errors.ts'
import type { SandboxSpec, SnapshotOutcome, SnapshotRequest, StoredSnapshot } from '../sandboxes/engine.ts'
import { archiveForImport, saveCheckpointArchive } from './checkpoint-archive.ts'
import type { Libpod } from './libpod.ts'

/** The checkpoint archive's file name inside a snapshot's checkpoint dir. */
const ARCHIVE = 'checkpoint.tar'

/**
 * Snapshot, restore, hibernate and resume on Podman: `commit` (Docker-compatible) for the file system,
 * libpod's checkpoints for processes and memory. A snapshot's checkpoint is exported over the API into
 * the emulator's data dir and imported over the API into each new container: the emulator never reads
 * or writes the engine's files, so this works as well against a Podman on another host.
 */
export class PodmanCheckpoints {
  private readonly docker: Docker
  private readonly libpod: Libpod

  constructor(docker: Docker, libpod: Libpod) {
    this.docker = docker
    this.libpod = libpod
  }

  /**
   * Running: the checkpoint is exported with the container left running (CRIU freezes it while it
   * dumps), then the file system is committed with the container paused. A hibernated sandbox is
   * restored in place and checkpointed again with exit (Podman cannot export a checkpoint it already
   * holds), so its files are committed with no process running.
   */
  async snapshot(containerId: string, req: SnapshotRequest): Promise<SnapshotOutcome> {
    const image = snapshotImage(req.snapshotId)
    const checkpointDir = req.withMemory ? join(req.artifactDir, 'checkpoint') : null
    let checkpointBytes = 0
    try {
      if (checkpointDir) {
        await mkdir(checkpointDir, { recursive: true })
        if (req.hibernated) await this.libpod.restore(containerId)
        const exported = await this.libpod.exportCheckpoint(containerId, {
          leaveRunning: !req.hibernated,
          keep: req.hibernated,
        })
        checkpointBytes = await saveCheckpointArchive(exported, join(checkpointDir, ARCHIVE))
      }
      // A hibernated sandbox is stopped (memory) or already paused (no memory): nothing to pause.
      await commitSnapshot(this.docker.getContainer(containerId), req.snapshotId, !req.hibernated)
    } catch (err) {
      if (checkpointDir) await rm(checkpointDir, { recursive: true, force: true })
      await discardSnapshotImage(this.docker, req.snapshotId)
      throw await checkpointFailure(err, containerId)
    }
    const stored: StoredSnapshot = { image, checkpointDir }
    return { stored, sizeBytes: (await snapshotLayerSize(this.docker, image)) + checkpointBytes }
  }

  /** A new container from the snapshot's image; with a checkpoint, imported from it with its processes. */
  async restore(stored: StoredSnapshot, spec: SandboxSpec, settings: ContainerSettings): Promise<string> {
    if (!stored.checkpointDir) {
      const container = await createSandboxContainer(this.docker, spec, stored.image, settings)
      await startSandboxContainer(container, spec)
      return container.id
    }
    const name = containerName(spec)
    let image: Docker.ImageInspectInfo
    try {
      image = await this.docker.getImage(stored.image).inspect()
    } catch (err) {
      throw translateDockerError(err, () =>
        Errors.engine(`the snapshot's image ${stored.image} is gone from the engine`),
      )
    }
    try {
      return await this.libpod.importCheckpoint(
        name,
        archiveForImport(join(stored.checkpointDir, ARCHIVE), {
          labels: spec.labels,
          imageName: image.RepoTags?.[0] ?? stored.image,
          imageId: image.Id,
        }),
      )
    } catch (err) {
      // A failed import can leave a created container holding the name.
      await this.docker
        .getContainer(name)
        .remove({ force: true, v: true })
        .catch(() => {})
      throw Errors.engine(`restoring the checkpoint into a new sandbox failed: ${dockerMessage(err)}`)
    }
  }

  async hibernate(containerId: string, withMemory: boolean): Promise<void> {
    try {
      if (withMemory) await this.libpod.checkpoint(containerId)
      else await this.docker.getContainer(containerId).pause()
    } catch (err) {
      throw await checkpointFailure(err, containerId)
    }
  }

  async resume(containerId: string, withMemory: boolean): Promise<void> {
    try {
      if (withMemory) await this.libpod.restore(containerId)
      else await this.docker.getContainer(containerId).unpause()
    } catch (err) {
      throw translateDockerError(err, () => Errors.runNotFound(containerId))
    }
  }

  async isHibernatedWithMemory(containerId: string): Promise<boolean> {
    try {
      return (await this.libpod.state(containerId)).Checkpointed === true
    } catch {
      return false
    }
  }
}
