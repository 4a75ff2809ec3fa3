import type Docker from 'dockerode'
import { imageHandle } from './images.ts'

/** Repository of the images that hold snapshot filesystems; the tag is the snapshot id. */
export const SNAPSHOT_REPO = 'isorun-emulator-snapshot'

/** The image holding a snapshot's file system (the same on every engine). */
export function snapshotImage(snapshotId: string): string {
  return `${SNAPSHOT_REPO}:${snapshotId}`
}

/** Commits a sandbox's file system as its snapshot's image; `pause` freezes it meanwhile. */
export async function commitSnapshot(
  container: Docker.Container,
  snapshotId: string,
  pause: boolean,
): Promise<void> {
  await container.commit({ repo: SNAPSHOT_REPO, tag: snapshotId, pause })
}

/** Removes a half-made snapshot's image, if there is one (cleanup after a failure: never throws). */
export async function discardSnapshotImage(docker: Docker, snapshotId: string): Promise<void> {
  await imageHandle(docker, snapshotImage(snapshotId))
    .remove()
    .catch(() => {})
}

/** The snapshot's own layer, not the base image it shares. */
export async function snapshotLayerSize(docker: Docker, image: string): Promise<number> {
  const history = (await imageHandle(docker, image).history()) as { Size?: number }[]
  return history[0]?.Size ?? 0
}
