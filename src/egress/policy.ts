import { BlockList, isIP } from 'node:net'

/**
 * What a sandbox may reach. Rules are hostnames (`registry.npmjs.org`), wildcards (`*.github.com`: any
 * subdomain, not the apex; `*`: everything), IP addresses and CIDR ranges. Deny wins; a non-empty allow
 * list denies whatever it does not match; an empty allow list is no allow list (so a profile can be
 * deny-only). A policy with no rules at all restricts nothing.
 */
export interface EgressPolicy {
  /** The named profile it came from, if any (for the record and the audit log). */
  profile?: string
  allow: string[]
  deny: string[]
}

export function isRestrictive(p: EgressPolicy | undefined): p is EgressPolicy {
  return p !== undefined && (p.allow.length > 0 || p.deny.length > 0)
}

type Rule =
  | { kind: 'any'; text: string }
  | { kind: 'host'; text: string; host: string }
  /** `*.example.com`, kept as `.example.com`. */
  | { kind: 'suffix'; text: string; suffix: string }
  | { kind: 'ip'; text: string; range: BlockList }

const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?'
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`)

/** Lower case, no trailing dot, no IPv6 brackets, IPv4-mapped IPv6 as plain IPv4. */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h.endsWith('.') && h.length > 1) h = h.slice(0, -1)
  return normalizeIp(h)
}

function normalizeIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  return mapped?.[1] ?? ip
}

function family(ip: string): 'ipv4' | 'ipv6' {
  return isIP(ip) === 6 ? 'ipv6' : 'ipv4'
}

/** Parses one rule; throws an Error saying what is wrong with it. */
export function parseRule(text: string): Rule {
  const t = normalizeHost(text)
  if (t === '*') return { kind: 'any', text }
  if (t.includes('/')) {
    const [addr = '', bits = '', ...rest] = t.split('/')
    const ip = normalizeIp(addr)
    const version = isIP(ip)
    const prefix = Number(bits)
    const max = version === 6 ? 128 : 32
    if (rest.length > 0 || version === 0 || !/^\d{1,3}$/.test(bits) || prefix > max) {
      throw new Error(`"${text}" is not a valid CIDR range (e.g. 10.0.0.0/8, fd00::/8)`)
    }
    const range = new BlockList()
    range.addSubnet(ip, prefix, family(ip))
    return { kind: 'ip', text, range }
  }
  if (isIP(t)) {
    const range = new BlockList()
    range.addAddress(t, family(t))
    return { kind: 'ip', text, range }
  }
  const wildcard = t.startsWith('*.')
  const name = wildcard ? t.slice(2) : t
  if (name.length > 253 || !HOSTNAME.test(name)) {
    throw new Error(
      `"${text}" is not a hostname, a *.wildcard, an IP address or a CIDR range (no scheme, port, path or user)`,
    )
  }
  return wildcard ? { kind: 'suffix', text, suffix: `.${name}` } : { kind: 'host', text, host: name }
}

function matchesName(rule: Rule, name: string): boolean {
  switch (rule.kind) {
    case 'any':
      return true
    case 'host':
      return rule.host === name
    case 'suffix':
      return name.endsWith(rule.suffix)
    case 'ip':
      return false
  }
}

function matchesIp(rule: Rule, ip: string): boolean {
  if (rule.kind === 'any') return true
  return rule.kind === 'ip' && rule.range.check(ip, family(ip))
}

/** A policy parsed once, ready to judge destinations. */
export interface CompiledPolicy {
  policy: EgressPolicy
  allow: Rule[]
  deny: Rule[]
}

/** Throws `{ list, index, message }` for the first invalid rule, so the caller can name the field. */
export function compilePolicy(policy: EgressPolicy): CompiledPolicy {
  const parse = (list: 'allow' | 'deny') =>
    policy[list].map((text, index) => {
      try {
        return parseRule(text)
      } catch (err) {
        throw new InvalidRule(list, index, (err as Error).message)
      }
    })
  return { policy, allow: parse('allow'), deny: parse('deny') }
}

export class InvalidRule extends Error {
  readonly list: 'allow' | 'deny'
  readonly index: number

  constructor(list: 'allow' | 'deny', index: number, message: string) {
    super(message)
    this.list = list
    this.index = index
  }
}

export type Decision = { allowed: true; address: string } | { allowed: false; reason: string }

/**
 * Addresses a broad rule must not open: the egress proxy runs on the emulator's host, so `localhost`,
 * link-local (cloud metadata) and the isolated network itself (other sandboxes, the host's side of it)
 * are reachable only through a rule that names them (a hostname, a wildcard other than `*`, an IP or a
 * CIDR), never through `*` or a deny-only policy.
 */
export class GuardedAddresses {
  private readonly list = new BlockList()

  constructor() {
    this.list.addSubnet('127.0.0.0', 8, 'ipv4')
    this.list.addSubnet('0.0.0.0', 8, 'ipv4')
    this.list.addSubnet('169.254.0.0', 16, 'ipv4')
    this.list.addAddress('::1', 'ipv6')
    this.list.addAddress('::', 'ipv6')
    this.list.addSubnet('fe80::', 10, 'ipv6')
  }

  /** Adds a range (the isolated network's subnet, once it exists). */
  add(cidr: string): void {
    const [addr = '', bits = ''] = cidr.split('/')
    if (isIP(addr)) this.list.addSubnet(addr, Number(bits), family(addr))
  }

  has(ip: string): boolean {
    return this.list.check(ip, family(ip))
  }
}

/**
 * Judges `host` (a name or an IP literal) for a sandbox under `compiled`. Names are resolved only when
 * the answer depends on the address (IP rules, the guard), never for a name already denied. Returns the
 * address to connect to: one that was checked, so a second lookup cannot swap it (DNS rebinding).
 * A failed lookup rejects (the proxy answers 502, not 403).
 */
export async function decide(
  compiled: CompiledPolicy,
  rawHost: string,
  resolve: (host: string) => Promise<string[]>,
  guarded: GuardedAddresses,
): Promise<Decision> {
  const host = normalizeHost(rawHost)
  const literal = isIP(host) !== 0
  const name = literal ? undefined : host

  const deniedByName = name === undefined ? undefined : compiled.deny.find((r) => matchesName(r, name))
  if (deniedByName) return { allowed: false, reason: `denied by rule "${deniedByName.text}"` }

  const hasAllowList = compiled.allow.length > 0
  const allowedByName = name === undefined ? undefined : compiled.allow.find((r) => matchesName(r, name))
  const allowsAddresses = compiled.allow.some((r) => r.kind === 'ip' || r.kind === 'any')
  if (hasAllowList && !allowedByName && !allowsAddresses) {
    return { allowed: false, reason: notAllowed(compiled) }
  }

  const addresses = (literal ? [host] : await resolve(host)).map(normalizeIp)
  for (const ip of addresses) {
    const rule = compiled.deny.find((r) => matchesIp(r, ip))
    if (rule) return { allowed: false, reason: `${describe(host, ip)} is denied by rule "${rule.text}"` }
  }

  // Each candidate address with the rule that lets it through (undefined: no allow list).
  const candidates: { ip: string; rule: Rule | undefined }[] = []
  for (const ip of addresses) {
    if (!hasAllowList) candidates.push({ ip, rule: undefined })
    else if (allowedByName) candidates.push({ ip, rule: allowedByName })
    else {
      const rule = compiled.allow.find((r) => matchesIp(r, ip))
      if (rule) candidates.push({ ip, rule })
    }
  }
  if (candidates.length === 0) return { allowed: false, reason: notAllowed(compiled) }

  const open = candidates.find((c) => !guarded.has(c.ip) || (c.rule !== undefined && c.rule.kind !== 'any'))
  if (!open) {
    const ip = candidates[0]?.ip ?? host
    return {
      allowed: false,
      reason: `${describe(host, ip)} is a loopback, link-local or sandbox-network address, which only a rule naming it (not "*", not a deny-only policy) can allow`,
    }
  }
  return { allowed: true, address: open.ip }
}

function describe(host: string, ip: string): string {
  return host === ip ? host : `${host} (${ip})`
}

function notAllowed(compiled: CompiledPolicy): string {
  const shown = compiled.policy.allow.slice(0, 10).join(', ')
  const more = compiled.policy.allow.length > 10 ? `, ... (${compiled.policy.allow.length} rules)` : ''
  return `not in the allow list (${shown}${more})`
}
