import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

/**
 * The emulator's durable state is plain files under its data dir: append-only JSON-lines logs (history,
 * audit) and small JSON documents replaced atomically (sandbox state). Every write is a synchronous
 * write(2) before the API call answers, so a SIGKILL loses nothing that was acknowledged (the page cache
 * outlives the process); a power cut could lose the last writes, which an emulator accepts.
 */

/** Appends one JSON line. */
export function appendJsonLine(file: string, value: unknown): void {
  appendFileSync(file, `${JSON.stringify(value)}\n`)
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
export function writeJsonAtomic(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify(value)}\n`)
  renameSync(tmp, file)
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T
  } catch {
    return undefined
  }
}
