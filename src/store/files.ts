import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs'
import { dirname } from 'node:path'

/**
 * The emulator's durable state is plain files under its data dir: append-only JSON-lines logs (history,
 * audit) and small documents replaced atomically (sandbox state, snapshot records, keys). Every write is
 * a synchronous write(2) before the API call answers, so a crash of the emulator loses nothing that was
 * acknowledged (the page cache outlives the process). With `fsync`, each write, rename and removal is
 * also flushed to the disk, with its directory, before the call returns: then an acknowledged write
 * survives a crash of the whole machine too.
 */
export interface WriteOptions {
  fsync?: boolean
}

/** Files the emulator writes are its own: nobody else on the host may read them (keys, credentials' names). */
export const FILE_MODE = 0o600
export const DIR_MODE = 0o700

/**
 * Appends one JSON line. A last line left without its newline by a crash mid-append is repaired first,
 * so it cannot swallow this record: a complete record gets its newline, a fragment (never acknowledged:
 * the write comes before the answer) is cut off.
 */
export function appendJsonLine(file: string, value: unknown, options: WriteOptions = {}): void {
  const line = Buffer.from(`${JSON.stringify(value)}\n`)
  const fd = openSync(file, 'a+', FILE_MODE)
  try {
    const created = repairTail(fd) === 0
    writeAll(fd, line)
    if (options.fsync) {
      fsyncSync(fd)
      if (created) syncDir(dirname(file))
    }
  } finally {
    closeSync(fd)
  }
}

/** Makes the file end with a newline (or be empty); returns its size before the append. */
function repairTail(fd: number): number {
  const size = fstatSync(fd).size
  if (size === 0) return 0
  const last = Buffer.alloc(1)
  readSync(fd, last, 0, 1, size - 1)
  if (last[0] === 0x0a) return size
  const start = lastNewline(fd, size) + 1
  const fragment = Buffer.alloc(size - start)
  readSync(fd, fragment, 0, fragment.length, start)
  if (parses(fragment.toString('utf8'))) {
    writeAll(fd, Buffer.from('\n'))
    return size + 1
  }
  ftruncateSync(fd, start)
  return start
}

/** The offset of the last newline before `size`, or -1; read backwards in blocks. */
function lastNewline(fd: number, size: number): number {
  const block = Buffer.alloc(64 * 1024)
  let end = size
  while (end > 0) {
    const start = Math.max(0, end - block.length)
    const n = readSync(fd, block, 0, end - start, start)
    const at = block.subarray(0, n).lastIndexOf(0x0a)
    if (at >= 0) return start + at
    end = start
  }
  return -1
}

function parses(text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

function writeAll(fd: number, data: Buffer): void {
  let off = 0
  while (off < data.length) off += writeSync(fd, data, off, data.length - off)
}

/** Reads a JSON-lines file; a torn last line (a crash mid-write) is skipped, not fatal. */
export function readJsonLines<T>(file: string): T[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  const out: T[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    try {
      out.push(JSON.parse(line) as T)
    } catch {
      // torn write: ignore
    }
  }
  return out
}

/** Replaces a JSON document atomically: write a temp file, then rename over the old one. */
export function writeJsonAtomic(file: string, value: unknown, options: WriteOptions = {}): void {
  writeFileAtomic(file, `${JSON.stringify(value)}\n`, options)
}

/**
 * Replaces a file atomically: readers (and a restart after a crash) see the old content or the new, never
 * a part. With fsync, the content is on disk before the rename and the rename before the return.
 */
export function writeFileAtomic(file: string, content: string | Buffer, options: WriteOptions = {}): void {
  mkdirSync(dirname(file), { recursive: true, mode: DIR_MODE })
  const tmp = `${file}.${process.pid}.tmp`
  const fd = openSync(tmp, 'w', FILE_MODE)
  try {
    writeAll(fd, typeof content === 'string' ? Buffer.from(content) : content)
    if (options.fsync) fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
  if (options.fsync) syncDir(dirname(file))
}

/** Removes a file (or a directory tree); with fsync, the removal is on disk before the return. */
export function removeFile(file: string, options: WriteOptions = {}): void {
  rmSync(file, { recursive: true, force: true })
  if (options.fsync) syncDir(dirname(file))
}

/** Flushes a directory's entries (a new, renamed or removed name) to the disk. */
export function syncDir(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T
  } catch {
    return undefined
  }
}
