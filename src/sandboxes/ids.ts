import { createHash, randomBytes } from 'node:crypto'

/** Run ids look like the real service's: `run` + 20 lowercase hex characters. */
export function newRunId(): string {
  return `run${randomBytes(10).toString('hex')}`
}

export function newSnapshotId(): string {
  return `snap${randomBytes(10).toString('hex')}`
}

/** Keys are never stored or logged; sandboxes are owned by a hash of the key. */
export function hashApiKey(apiKey: string): string {
  return createHash('sha256').update(apiKey).digest('hex')
}
