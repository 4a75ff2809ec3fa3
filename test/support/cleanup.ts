import { engineClient } from './engine.ts'

const docker = engineClient()

/**
 * Force-removes every container carrying all of `labels`; returns how many there were. A container
 * already being removed (409) or gone (404) counts as removed: the emulator may be removing it too.
 */
export async function removeContainers(labels: string[]): Promise<number> {
  const left = await docker.listContainers({ all: true, filters: { label: labels } })
  await Promise.all(
    left.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch((err: { statusCode?: number }) => {
          if (err?.statusCode !== 404 && err?.statusCode !== 409) throw err
        }),
    ),
  )
  return left.length
}
