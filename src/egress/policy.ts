import { BlockList, isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { EgressPolicy } from '../sandboxes/egress-enforcer.ts'

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
 * Where a destination's address lies, as far as the egress proxy is concerned: `sandboxes` is a network
 * the engine puts sandboxes on (other tenants' sandboxes, and the host's side of that network: no rule
 * opens it); `private` is loopback, link-local (cloud metadata), unspecified, RFC 1918, CGNAT, ULA,
 * NAT64, or one of this host's own addresses (opened only by an IP or CIDR rule that contains it, or by
 * a name the operator pinned: ISORUN_EMULATOR_EGRESS_HOSTS). The proxy runs on the emulator's host: its
 * `localhost` and its neighbours are not the guest's, and the network the guest is on closes them.
 */
export type AddressGuard = 'sandboxes' | 'private' | undefined

const PRIVATE_RANGES: [string, number, 'ipv4' | 'ipv6'][] = [
  ['0.0.0.0', 8, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['::1', 128, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['fec0::', 10, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['64:ff9b::', 96, 'ipv6'],
  ['64:ff9b:1::', 48, 'ipv6'],
]

/** How long this host's own addresses are remembered (bridges come and go with Docker networks). */
const LOCAL_ADDRESSES_TTL_MS = 2000

/** Every address of this host's interfaces. */
function hostAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) =>
    (list ?? []).map((a) => a.address.replace(/%.*$/, '')),
  )
}

export class GuardedAddresses {
  private readonly ranges = new BlockList()
  private readonly sandboxNetworks = new BlockList()
  private readonly localAddresses: () => string[]
  private local: { at: number; list: BlockList } | undefined

  constructor(localAddresses: () => string[] = hostAddresses) {
    this.localAddresses = localAddresses
    for (const [addr, bits, fam] of PRIVATE_RANGES) this.ranges.addSubnet(addr, bits, fam)
  }

  /** Adds a network sandboxes are on (no rule opens it). */
  addSandboxNetwork(cidr: string): void {
    const [addr = '', bits = ''] = cidr.split('/')
    if (isIP(addr)) this.sandboxNetworks.addSubnet(addr, Number(bits), family(addr))
  }

  guardOf(ip: string): AddressGuard {
    const fam = family(ip)
    if (this.sandboxNetworks.check(ip, fam)) return 'sandboxes'
    if (this.ranges.check(ip, fam) || this.own().check(ip, fam)) return 'private'
    return undefined
  }

  private own(): BlockList {
    const now = Date.now()
    if (this.local && now - this.local.at < LOCAL_ADDRESSES_TTL_MS) return this.local.list
    const list = new BlockList()
    for (const ip of this.localAddresses()) {
      const plain = normalizeIp(ip)
      if (isIP(plain)) list.addAddress(plain, family(plain))
    }
    this.local = { at: now, list }
    return list
  }
}

/** What `decide` needs besides the policy: how names resolve, and which the operator pinned. */
export interface DecideContext {
  resolve: (host: string) => Promise<string[]>
  guarded: GuardedAddresses
  /** Whether the operator mapped this name to its address (ISORUN_EMULATOR_EGRESS_HOSTS). */
  pinned?: (host: string) => boolean
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
  context: DecideContext,
): Promise<Decision> {
  const { resolve, guarded } = context
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

  const pinned = name !== undefined && context.pinned?.(name) === true
  const guards = candidates.map((c) => guarded.guardOf(c.ip))
  const open = candidates.find((c, i) => {
    const guard = guards[i]
    if (guard === 'sandboxes') return false
    if (guard === 'private') return pinned || rulesByIp(compiled, c.ip)
    return true
  })
  if (!open) {
    const i = guards.indexOf('sandboxes')
    const ip = candidates[Math.max(0, i)]?.ip ?? host
    return {
      allowed: false,
      reason:
        i >= 0
          ? `${describe(host, ip)} is on the sandboxes' network: other sandboxes are never reachable through the egress proxy`
          : `${describe(host, ip)} is a loopback, link-local, private or this host's own address, which only an IP or CIDR rule containing it can allow (not a name, not "*", not a deny-only policy)`,
    }
  }
  return { allowed: true, address: open.ip }
}

/** Whether an IP or CIDR allow rule contains `ip` (what opens a private address). */
function rulesByIp(compiled: CompiledPolicy, ip: string): boolean {
  return compiled.allow.some((r) => r.kind === 'ip' && matchesIp(r, ip))
}

function describe(host: string, ip: string): string {
  return host === ip ? host : `${host} (${ip})`
}

function notAllowed(compiled: CompiledPolicy): string {
  const shown = compiled.policy.allow.slice(0, 10).join(', ')
  const more = compiled.policy.allow.length > 10 ? `, ... (${compiled.policy.allow.length} rules)` : ''
  return `not in the allow list (${shown}${more})`
}
