import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { normalizeHost } from './policy.ts'

/** How the egress proxy turns a destination name into addresses (injectable: tests pin names). */
export interface HostResolver {
  /** Every address of `host`; rejects when it has none. */
  resolve(host: string): Promise<string[]>
  /** Whether the operator pinned `host` to its address (then the egress guard trusts that address). */
  pinned?(host: string): boolean
}

/**
 * The host's resolver (getaddrinfo: /etc/hosts, then DNS), except for the names in `pinned`, which
 * resolve to their address only and never reach DNS (ISORUN_EMULATOR_EGRESS_HOSTS).
 */
export function hostResolver(pinned: Readonly<Record<string, string>> = {}): HostResolver {
  const map = new Map(Object.entries(pinned).map(([name, ip]) => [normalizeHost(name), ip]))
  return {
    pinned: (host: string) => map.has(normalizeHost(host)),
    async resolve(host: string): Promise<string[]> {
      const name = normalizeHost(host)
      const ip = map.get(name)
      if (ip) return [ip]
      const found = await lookup(name, { all: true, verbatim: true })
      return found.map((a) => a.address)
    },
  }
}

/** Parses `name=ip,name=ip`; throws naming the first bad entry. */
export function parseHostMap(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const entry of text.split(',')) {
    const trimmed = entry.trim()
    if (!trimmed) continue
    const eq = trimmed.indexOf('=')
    const name = trimmed.slice(0, eq).trim()
    const ip = trimmed.slice(eq + 1).trim()
    if (eq <= 0 || !name || isIP(ip) === 0) throw new Error(`"${trimmed}" is not name=ip`)
    out[name.toLowerCase()] = ip
  }
  return out
}
