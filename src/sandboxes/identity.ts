import { randomBytes } from 'node:crypto'
import { readFileSync, realpathSync } from 'node:fs'
import { join } from 'node:path'
import { secureDataDir } from '../store/data-dir.ts'
import { type WriteOptions, writeFileAtomic } from '../store/files.ts'
import type { InstanceIdentity } from './labels.ts'

/**
 * An emulator instance is its data dir: the id kept there labels every container it makes, so a
 * restart on the same dir adopts them and another instance (another dir) never touches them.
 */
export function loadIdentity(dataDir: string, options: WriteOptions = {}): InstanceIdentity {
  secureDataDir(dataDir)
  const dir = realpathSync(dataDir)
  const file = join(dir, 'instance.json')
  try {
    const { instanceId } = JSON.parse(readFileSync(file, 'utf8')) as { instanceId?: unknown }
    if (typeof instanceId === 'string' && /^[0-9a-f]{16}$/.test(instanceId))
      return { instanceId, dataDir: dir }
  } catch {
    // No identity yet (or an unreadable one): make a new one below.
  }
  const instanceId = randomBytes(8).toString('hex')
  writeFileAtomic(file, `${JSON.stringify({ instanceId }, null, 2)}\n`, options)
  return { instanceId, dataDir: dir }
}
