import { maskSecrets } from '../audit/mask.ts'

export interface JournalEntry {
  at: string
  method: string
  path: string
  key_hash: string | null
  status: number
  duration_ms: number
  body: unknown
}

/**
 * The recent API requests, newest first, for tests that assert what their code sent. Bounded: the
 * oldest entries fall off. Request bodies are kept with credential values masked.
 */
export class RequestJournal {
  private readonly entries: JournalEntry[] = []
  private readonly capacity: number

  constructor(capacity = 1000) {
    this.capacity = capacity
  }

  record(entry: JournalEntry): void {
    this.entries.push({ ...entry, body: maskBody(entry.body) })
    if (this.entries.length > this.capacity) this.entries.shift()
  }

  query(filter: { path?: string; method?: string; limit?: number }): JournalEntry[] {
    const out: JournalEntry[] = []
    for (let i = this.entries.length - 1; i >= 0 && out.length < (filter.limit ?? 100); i--) {
      const e = this.entries[i] as JournalEntry
      if (filter.method && e.method !== filter.method.toUpperCase()) continue
      if (filter.path && !e.path.includes(filter.path)) continue
      out.push(e)
    }
    return out
  }

  clear(): void {
    this.entries.length = 0
  }
}

/** Credentials in a create body are replaced wholesale; raw bytes (uploads) are not kept. */
function maskBody(body: unknown): unknown {
  if (!body || typeof body !== 'object' || typeof (body as { pipe?: unknown }).pipe === 'function')
    return undefined
  const b = body as Record<string, unknown>
  if (b.credentials && typeof b.credentials === 'object') {
    const creds = b.credentials as Record<string, string>
    return maskSecrets(
      { ...b, credentials: Object.fromEntries(Object.keys(creds).map((k) => [k, '***'])) },
      Object.values(creds),
    )
  }
  return b
}
