import type { IncomingMessage } from 'node:http'
import { posix } from 'node:path'
import { PassThrough, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type Docker from 'dockerode'
import * as tar from 'tar-stream'
import { Errors, UNWRITABLE_WHY } from '../errors.ts'
import type { FileDownload } from '../sandboxes/engine.ts'
import { dockerMessage, translateDockerError } from './errors.ts'
import { runExec } from './exec.ts'

/** Symlinks followed when reading a file, as the kernel's own limit on nested links is of this order. */
const MAX_SYMLINK_HOPS = 8

/**
 * Writes one file through the engine's archive API: a one-entry tar extracted at `/`. Docker creates
 * missing parent directories (0755) while extracting, and the bytes are streamed, never buffered whole.
 * Extracting a file over a directory replaces the directory (and `..` named the container's root), so
 * the path is normalized first and a directory there, or behind a symlink there, is refused.
 */
export async function writeFile(
  docker: Docker,
  containerId: string,
  path: string,
  size: number,
  content: Readable,
): Promise<void> {
  const target = posix.normalize(path).replace(/\/+$/, '')
  if (target === '' || (await isDirectory(docker, containerId, target))) throw Errors.notAFile(path)
  const pack = tar.pack()
  const entry = pack.entry({
    name: target.slice(1),
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
    const unwritable = UNWRITABLE.find((u) => u.pattern.test(dockerMessage(err)))
    if (unwritable) throw Errors.unwritablePath(path, unwritable.why)
    throw translateDockerError(err, () => Errors.runNotFound(containerId))
  }
}

/**
 * Refusals of the container's file system, not faults of the engine: Docker and Podman both quote the
 * kernel's errno when a file cannot be replaced. EBUSY: a file the engine bind-mounts into every
 * container (/etc/hostname, /etc/hosts, /etc/resolv.conf); EROFS and EPERM: /sys, /proc (Podman).
 */
const UNWRITABLE = [
  { pattern: /device or resource busy/, why: UNWRITABLE_WHY.busy },
  { pattern: /read-only file system/, why: UNWRITABLE_WHY.readOnly },
  { pattern: /operation not permitted/, why: UNWRITABLE_WHY.notPermitted },
]

/** Go's os.FileMode bits, as Docker's path stat reports them. */
const MODE_DIR = 2 ** 31
const MODE_SYMLINK = 2 ** 27

/** Whether `path` is a directory, or a symlink (chain) to one; false when nothing is there. */
async function isDirectory(docker: Docker, containerId: string, path: string): Promise<boolean> {
  let current = path
  for (let hop = 0; hop <= MAX_SYMLINK_HOPS; hop++) {
    const stat = await statPath(docker, containerId, current)
    if (!stat) return false
    if (Math.floor(stat.mode / MODE_DIR) % 2 === 1) return true
    if (Math.floor(stat.mode / MODE_SYMLINK) % 2 === 0 || !stat.linkTarget) return false
    current = posix.resolve(posix.dirname(current), stat.linkTarget)
  }
  return false
}

/**
 * Docker's stat of a path in the container (HEAD on the archive endpoint; parent symlinks resolved,
 * the last component not followed); undefined when nothing is there.
 */
async function statPath(
  docker: Docker,
  containerId: string,
  path: string,
): Promise<{ mode: number; linkTarget: string } | undefined> {
  let res: IncomingMessage
  try {
    res = (await docker.getContainer(containerId).infoArchive({ path })) as unknown as IncomingMessage
  } catch (err) {
    const e = err as { statusCode?: number; json?: { message?: string } | null }
    if (e?.statusCode === 404 && !/no such container/i.test(e.json?.message ?? '')) return undefined
    throw translateDockerError(err, () => Errors.runNotFound(containerId))
  }
  res.resume()
  const header = res.headers['x-docker-container-path-stat']
  if (typeof header !== 'string') return undefined
  const stat = JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as {
    mode?: number
    linkTarget?: string
  }
  return { mode: stat.mode ?? 0, linkTarget: stat.linkTarget ?? '' }
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
  const source = archive as Readable
  const done = () => source.destroy()
  const extract = tar.extract()
  return new Promise<ArchiveEntry>((resolve, reject) => {
    let settled = false
    const settle = (outcome: () => void) => {
      if (settled) return
      settled = true
      outcome()
    }
    const fail = (err: unknown) => {
      done()
      settle(() => reject(err))
    }
    extract.on('entry', (header, entryStream, next) => {
      const entry = entryStream as unknown as Readable
      // An archive cut short (Docker stops sending when the file changes size while it reads it) errors
      // the entry being read, whether anyone reads it or not: every entry has a listener.
      entry.on('error', done)
      if (settled) {
        entry.resume()
        return
      }
      if (header.type === 'symlink' && header.linkname) {
        done()
        settle(() => resolve({ kind: 'symlink', target: header.linkname as string }))
        return
      }
      if (header.type !== 'file') {
        fail(Errors.notAFile(askedPath))
        return
      }
      // A Node stream for the client, so that an error before anyone listens is kept (a tar-stream entry
      // is a streamx stream); the chunks pass through, not copied. Once the entry ends, or the client
      // goes away, the archive is done with.
      const out = new PassThrough()
      entry.on('error', () => out.destroy(Errors.fileChanged(askedPath)))
      entry.once('end', () => {
        next()
        done()
      })
      out.once('close', done)
      entry.pipe(out)
      settle(() => resolve({ kind: 'file', download: { size: header.size ?? 0, stream: out } }))
    })
    extract.on('finish', () => fail(Errors.pathNotFound(askedPath)))
    extract.on('error', fail)
    source.on('error', fail)
    source.pipe(extract)
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
