import type Docker from 'dockerode'
import { dockerMessage } from '../docker/errors.ts'
import { imageHandle } from '../docker/images.ts'
import { Errors } from '../errors.ts'

/**
 * Copies `image` from a Docker engine into Podman's store, the way `docker save | podman load` does,
 * through both APIs. Podman names what it loads from a Docker archive `localhost/<name>`, so the image
 * is also tagged with its canonical name (`docker.io/library/busybox:latest`), which is what the engine
 * is asked for. Returns false when Docker does not have it (or cannot be reached): then it may be pulled.
 */
export async function importFromDocker(
  source: Docker,
  podman: Docker,
  canonical: string,
  image: string,
): Promise<boolean> {
  // A digest names content Podman would not find again by name after a load: left to the pull policy.
  if (canonical.includes('@')) return false
  try {
    await imageHandle(source, canonical).inspect()
  } catch {
    return false
  }
  try {
    const archive = await imageHandle(source, canonical).get()
    const progress = await podman.loadImage(archive, { quiet: true })
    const loaded = await loadedNames(progress)
    const [repo, tag] = splitTag(canonical)
    await imageHandle(podman, loaded[0] ?? canonical).tag({ repo, tag })
  } catch (err) {
    throw Errors.imageUnavailable(
      image,
      `importing it from the local Docker engine failed: ${dockerMessage(err)}`,
    )
  }
  return true
}

/** The names Podman reports having loaded ("Loaded image: localhost/busybox:latest"). */
async function loadedNames(progress: NodeJS.ReadableStream): Promise<string[]> {
  const chunks: Buffer[] = []
  for await (const chunk of progress) chunks.push(Buffer.from(chunk as Buffer))
  const text = Buffer.concat(chunks).toString('utf8')
  const names: string[] = []
  for (const m of text.matchAll(/Loaded image(?:\(s\))?: ([^"\\\n]+)/g)) {
    for (const n of (m[1] ?? '').split(',')) if (n.trim()) names.push(n.trim())
  }
  const error = /"error(?:Detail)?"\s*:\s*"([^"]+)"/.exec(text)?.[1]
  if (error) throw new Error(error)
  return names
}

/** A canonical name's repository and tag. */
function splitTag(name: string): [string, string] {
  const at = name.lastIndexOf(':')
  if (at < 0 || name.slice(at).includes('/')) return [name, 'latest']
  return [name.slice(0, at), name.slice(at + 1)]
}
