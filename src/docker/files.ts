import { posix } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type Docker from 'dockerode'
import * as tar from 'tar-stream'
import { Errors } from '../errors.ts'
import type { FileDownload } from '../sandboxes/engine.ts'
import { translateDockerError } from './errors.ts'
import { runExec } from './exec.ts'

/** Symlinks followed when reading a file, as the kernel's own limit on nested links is of this order. */
const MAX_SYMLINK_HOPS = 8

/**
 * Writes one file through the engine's archive API: a one-entry tar extracted at `/`. Docker creates
 * missing parent directories (0755) while extracting, and the bytes are streamed, never buffered whole.
 */
export async function writeFile(
  docker: Docker,
  containerId: string,
  path: string,
  size: number,
  content: Readable,
): Promise<void> {
  const pack = tar.pack()
  const entry = pack.entry({
    name: path.replace(/^\/+/, ''),
    size,
    mode: 0o644,
    mtime: new Date(),
    type: 'file',
  })
  const written = pipeline(content, entry).then(() => pack.finalize())
  written.catch((err) => pack.destroy(err))
  try {
    await Promise.all([
      docker.getContainer(containerId).putArchive(pack as unknown as NodeJS.ReadableStream, { path: '/' }),
      written,
    ])
  } catch (err) {
    const e = err as { statusCode?: number }
    if (e?.statusCode === 400) throw Errors.notAFile(path)
    throw translateDockerError(err, () => Errors.runNotFound(containerId))
  }
}

/** Streams one regular file out of the container, following symlinks. */
export async function readFile(docker: Docker, containerId: string, path: string): Promise<FileDownload> {
  let current = path
  for (let hop = 0; hop <= MAX_SYMLINK_HOPS; hop++) {
    const found = await readArchiveEntry(docker, containerId, current, path)
    if (found.kind === 'file') return found.download
    current = posix.resolve(posix.dirname(current), found.target)
  }
  throw Errors.notAFile(path)
}

type ArchiveEntry = { kind: 'file'; download: FileDownload } | { kind: 'symlink'; target: string }

async function readArchiveEntry(
  docker: Docker,
  containerId: string,
  path: string,
  askedPath: string,
): Promise<ArchiveEntry> {
  let archive: NodeJS.ReadableStream
  try {
    archive = await docker.getContainer(containerId).getArchive({ path })
  } catch (err) {
    throw translateDockerError(err, () => Errors.pathNotFound(askedPath))
  }
  const extract = tar.extract()
  return new Promise<ArchiveEntry>((resolve, reject) => {
    let settled = false
    const fail = (err: unknown) => {
      if (settled) return
      settled = true
      ;(archive as Readable).destroy?.()
      reject(err)
    }
    extract.once('entry', (header, entryStream, next) => {
      settled = true
      if (header.type === 'symlink' && header.linkname) {
        ;(archive as Readable).destroy?.()
        resolve({ kind: 'symlink', target: header.linkname })
        return
      }
      if (header.type !== 'file') {
        ;(archive as Readable).destroy?.()
        reject(Errors.notAFile(askedPath))
        return
      }
      // The entry's own stream goes to the client as it is (no extra copy through a PassThrough); once
      // it ends, or the client goes away, the archive is done with.
      const out = entryStream as unknown as Readable
      out.once('end', () => {
        next()
        ;(archive as Readable).destroy?.()
      })
      out.once('close', () => (archive as Readable).destroy?.())
      resolve({ kind: 'file', download: { size: header.size ?? 0, stream: out } })
    })
    extract.once('finish', () => fail(Errors.pathNotFound(askedPath)))
    extract.once('error', fail)
    ;(archive as Readable).once('error', fail)
    ;(archive as Readable).pipe(extract)
  })
}

/**
 * Lists a directory's entries by name. A shell loop rather than `ls`, so that any name (spaces,
 * newlines) survives, NUL-separated, and so that it needs nothing beyond /bin/sh in the image.
 */
const LIST_DIR = `
[ -e "$1" ] || exit 2
[ -d "$1" ] || exit 3
cd -- "$1" || exit 4
for f in * .[!.]* ..?*; do
  if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\\0' "$f"; fi
done
`

export async function listDir(docker: Docker, containerId: string, path: string): Promise<string[]> {
  const out = await runExec(
    docker,
    containerId,
    { command: 'list-dir', timeoutMs: 30_000, outputLimit: 64 * 1024 * 1024 },
    ['/bin/sh', '-c', LIST_DIR, 'isorun-list-dir', path],
  )
  if (out.exitCode === 2) throw Errors.pathNotFound(path)
  if (out.exitCode === 3) throw Errors.notADirectory(path)
  if (out.exitCode !== 0) throw Errors.engine(`listing ${path} failed: ${out.stderr.toString('utf8').trim()}`)
  return out.stdout
    .toString('utf8')
    .split('\0')
    .filter((name) => name.length > 0)
    .sort()
}
