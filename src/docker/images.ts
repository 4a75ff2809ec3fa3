import type Docker from 'dockerode'
import { Errors } from '../errors.ts'
import { type ImageReference, InvalidImageReference, parseImageReference } from '../images/reference.ts'
import { dockerMessage, translateDockerError } from './errors.ts'
import { type PullEvent, PullProgress } from './pull-progress.ts'

/**
 * An image by name, its name one encoded segment of the API path: dockerode puts names into paths as
 * they are, so a `?`, `#` or `%` would change the request.
 */
export function imageHandle(docker: Docker, name: string): Docker.Image {
  return docker.getImage(encodeURIComponent(name))
}

/**
 * A tenant's image reference as the engine is given it: canonical (`docker.io/library/busybox:latest`),
 * so Docker can only read it as a name. The HTTP layer refuses anything else first; this is the
 * driver's own check, for whatever else calls it.
 */
export function engineReference(image: string): ImageReference {
  try {
    return parseImageReference(image)
  } catch (err) {
    if (err instanceof InvalidImageReference) throw Errors.validation('image', err.message)
    throw err
  }
}

/** Whether the image is present locally; an engine failure is thrown, translated. */
export async function hasImage(docker: Docker, ref: ImageReference, image: string): Promise<boolean> {
  try {
    await imageHandle(docker, ref.canonical).inspect()
    return true
  } catch (err) {
    const status = (err as { statusCode?: number })?.statusCode
    if (status === 404) return false
    if (status === 400)
      throw Errors.validation('image', `the engine refuses it: ${dockerMessage(err).trim()}`)
    throw translateDockerError(err, () => Errors.imageUnavailable(image, 'not found'))
  }
}

/**
 * Pulls an image, bounded by `timeoutMs`, its progress given to `progress` a line at a time; every
 * failure is image_unavailable naming it (or engine_unavailable).
 */
export async function pullImage(
  docker: Docker,
  ref: ImageReference,
  image: string,
  timeoutMs: number,
  progress: (line: string) => void = () => {},
): Promise<void> {
  const tracker = new PullProgress(image)
  const pulled = new Promise<void>((resolve, reject) => {
    docker.pull(ref.canonical, (err: unknown, stream: NodeJS.ReadableStream) => {
      if (err) return reject(err)
      docker.modem.followProgress(
        stream,
        (doneErr: unknown) => (doneErr ? reject(doneErr) : resolve()),
        (event: PullEvent) => {
          if (event.error) return reject(new Error(event.error))
          const line = tracker.event(event)
          if (line) progress(line)
        },
      )
    })
  })
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`pull did not finish within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    await Promise.race([pulled, timedOut])
    progress(tracker.finished())
  } catch (err) {
    const e = err as { code?: string }
    if (e?.code === 'ECONNREFUSED' || e?.code === 'ENOENT')
      throw translateDockerError(err, () => Errors.engine(''))
    throw Errors.imageUnavailable(image, dockerMessage(err).trim())
  } finally {
    clearTimeout(timer)
  }
}
