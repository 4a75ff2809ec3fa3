import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { PassThrough, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import * as tar from 'tar-stream'

/**
 * Podman's checkpoint archives, as `podman container checkpoint --export` writes them: CRIU's images
 * under `checkpoint/`, the container's libpod configuration (`config.dump`) and OCI spec (`spec.dump`),
 * and the file-system changes (`rootfs-diff.tar`). The emulator keeps them in its own data dir, so a
 * snapshot never depends on the engine's files, and rewrites two things on the way back in.
 */

/** The part of an export the emulator does not keep: files come from the snapshot's committed image. */
const ROOTFS_DIFF = 'rootfs-diff.tar'
const CONFIG = 'config.dump'

/** Stores an exported archive at `file` without its file-system changes; returns the bytes stored. */
export async function saveCheckpointArchive(exported: Readable, file: string): Promise<number> {
  const extract = tar.extract()
  const pack = tar.pack()
  extract.on('entry', (header, stream, next) => {
    if (header.name.replace(/^\.\//, '') === ROOTFS_DIFF) {
      stream.resume()
      stream.once('end', next)
      return
    }
    stream.pipe(pack.entry(header, next))
  })
  extract.once('finish', () => pack.finalize())
  extract.once('error', (err) => pack.destroy(err))
  await Promise.all([pipeline(exported, extract), pipeline(pack, createWriteStream(file))])
  return (await stat(file)).size
}

/** What a restored sandbox must not inherit from its snapshot's parent. */
export interface ArchiveRewrite {
  /** The new sandbox's labels (its own run id, owner, ...), not the parent's. */
  labels: Record<string, string>
  /** The image the new container starts from (the snapshot's committed file system) and its id. */
  imageName: string
  imageId: string
}

/**
 * The stored archive as a stream for libpod's import, with the container's configuration rewritten:
 * libpod creates the new container from `config.dump`, labels and root image included, and offers no
 * option to change them on import.
 */
export function archiveForImport(file: string, rewrite: ArchiveRewrite): Readable {
  const out = new PassThrough()
  const extract = tar.extract()
  const pack = tar.pack()
  extract.on('entry', (header, stream, next) => {
    if (header.name.replace(/^\.\//, '') !== CONFIG) {
      stream.pipe(pack.entry(header, next))
      return
    }
    const chunks: Buffer[] = []
    stream.on('data', (c: unknown) => chunks.push(c as Buffer))
    stream.once('end', () => {
      try {
        const config = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>
        config.labels = rewrite.labels
        config.rootfsImageName = rewrite.imageName
        config.rootfsImageID = rewrite.imageId.replace(/^sha256:/, '')
        config.RawImageName = rewrite.imageName
        const body = Buffer.from(JSON.stringify(config))
        pack.entry({ ...header, size: body.length }, body, next)
      } catch (err) {
        next(err as Error)
      }
    })
  })
  extract.once('finish', () => pack.finalize())
  const fail = (err: Error) => out.destroy(err)
  extract.once('error', fail)
  pack.once('error', fail)
  pipeline(createReadStream(file), extract).catch(fail)
  pack.pipe(out)
  return out
}
