import { chmodSync, type Dirent, mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { DIR_MODE, FILE_MODE } from './files.ts'

/** The data dir's own entries: the only ones whose modes are tightened (the dir may hold other things). */
const OWN_FILES = /^(history\.jsonl|audit\.key|instance\.json)(\.\d+\.tmp)?$/
const OWN_DIRS = new Set(['audit', 'sandboxes', 'snapshots', 'uploads'])

/**
 * Creates the data dir (0700) or, when an older version made it, tightens it: the dir and its
 * subdirectories 0700, its files 0600. They hold the audit key, credential names, audit logs with
 * commands, and snapshots' memory, which no other user of the host may read.
 */
export function secureDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE })
  tighten(join(dir), true)
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory() && OWN_DIRS.has(entry.name)) tightenTree(path)
    else if (entry.isFile() && OWN_FILES.test(entry.name)) tighten(path, false)
  }
}

function tightenTree(dir: string): void {
  tighten(dir, true)
  let entries: Dirent[]
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return
  }
  for (const entry of entries) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) tightenTree(path)
    else if (entry.isFile()) tighten(path, false)
  }
}

function tighten(path: string, isDir: boolean): void {
  try {
    chmodSync(path, isDir ? DIR_MODE : FILE_MODE)
  } catch {
    // Gone meanwhile, or another user's file: the 0700 data dir still keeps others out.
  }
}
