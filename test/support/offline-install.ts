import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'

const repoRoot = join(import.meta.dirname, '..', '..')

interface LockEntry {
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
  peerDependenciesMeta?: Record<string, { optional?: boolean }>
  [key: string]: unknown
}

/**
 * Makes `dir` a project depending on `names` at the versions this repo's lockfile pins, with a lockfile
 * of their closure cut from this repo's, and installs it with `npm ci --offline`: every tarball is in
 * npm's cache since this repo's own `npm ci`, and no registry is asked (the packuments are not cached,
 * so a plain `npm install NAME` offline would fail).
 */
export async function installOffline(dir: string, names: string[]): Promise<void> {
  const lock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>
  }
  const all = lock.packages
  const find = (from: string, name: string): string | undefined => {
    let base = from
    for (;;) {
      const path = base ? `${base}/node_modules/${name}` : `node_modules/${name}`
      if (all[path]) return path
      if (!base) return undefined
      const i = base.lastIndexOf('/node_modules/')
      base = i < 0 ? '' : base.slice(0, i)
    }
  }
  const dependencies: Record<string, string> = {}
  const queue: string[] = []
  for (const name of names) {
    const path = find('', name)
    if (!path) throw new Error(`${name} is not in package-lock.json`)
    dependencies[name] = String(all[path]?.version)
    queue.push(path)
  }
  const kept = new Set<string>()
  for (let path = queue.pop(); path !== undefined; path = queue.pop()) {
    if (kept.has(path)) continue
    kept.add(path)
    const entry = all[path] as LockEntry
    const peers = Object.keys(entry.peerDependencies ?? {}).filter(
      (n) => !entry.peerDependenciesMeta?.[n]?.optional,
    )
    for (const name of [
      ...Object.keys(entry.dependencies ?? {}),
      ...Object.keys(entry.optionalDependencies ?? {}),
      ...peers,
    ]) {
      const found = find(path, name)
      if (found) queue.push(found)
    }
  }
  const packages: Record<string, unknown> = { '': { name: 'offline-install', dependencies } }
  for (const path of kept) {
    // Whether a package is dev-only here is npm's to work out again.
    const { dev: _dev, devOptional: _devOptional, peer: _peer, ...entry } = all[path] as LockEntry
    packages[path] = entry
  }
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'offline-install', private: true, type: 'module', dependencies }),
  )
  writeFileSync(
    join(dir, 'package-lock.json'),
    JSON.stringify({ name: 'offline-install', lockfileVersion: 3, requires: true, packages }),
  )
  await npm(dir, ['ci', '--offline', '--no-audit', '--no-fund'])
}

/** npm in `dir`, its output in the error when it fails. */
export async function npm(dir: string, args: string[], timeout = 300_000): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)('npm', args, {
      cwd: dir,
      timeout,
      maxBuffer: 16 * 1024 * 1024,
    })
    return stdout
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string }
    throw new Error(`npm ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`)
  }
}
