import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { isWildcardHost } from '../config.ts'

/**
 * The names this emulator answers to in the `Host` header: the guard against DNS rebinding, where a web
 * page on a name of its own makes that name resolve to this machine and then calls the emulator as its
 * own origin. Such a request carries the attacker's name; the emulator's clients use `localhost`, an IP
 * address (no DNS, so nothing to rebind), this machine's host name, the name it was told to listen on,
 * or a name the operator adds (ISORUN_EMULATOR_ALLOWED_HOSTS). The port is not compared: a containerised
 * emulator is reached through whatever port was published.
 */
export class EmulatorNames {
  private readonly names: Set<string>
  private readonly any: boolean

  constructor(listenHost: string, extra: readonly string[] = []) {
    this.any = extra.includes('*')
    this.names = new Set(['localhost', hostname().toLowerCase(), ...extra.map(normalise)])
    const listen = normalise(listenHost.replace(/^\[|\]$/g, ''))
    if (!isIP(listen) && !isWildcardHost(listen)) this.names.add(listen)
  }

  /** Whether a request with this `Host` header is for the emulator; none at all is not a browser's. */
  allows(hostHeader: string | undefined): boolean {
    if (this.any || hostHeader === undefined || hostHeader === '') return true
    const name = hostName(hostHeader)
    return isIP(name) !== 0 || this.names.has(name)
  }
}

/** The name of a `Host` header: the port and brackets off, lower case, no final dot. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase()
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    return end > 0 ? h.slice(1, end) : h
  }
  // More than one colon: an IPv6 address without brackets (not valid in Host, but not a name either).
  const colon = h.indexOf(':')
  const bare = colon >= 0 && h.indexOf(':', colon + 1) < 0 ? h.slice(0, colon) : h
  return normalise(bare)
}

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}
