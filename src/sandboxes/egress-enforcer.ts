import type { EgressAttachment } from './engine.ts'

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

/** What a sandbox with an egress policy is created with. */
export interface EgressSetup {
  /** The isolated network it joins and the name its proxy is reached by. */
  attachment: EgressAttachment
  /** Proxy settings for the guest's environment (HTTP_PROXY and friends). */
  env: Record<string, string>
}

/**
 * What enforces egress policies, as the domain sees it (src/egress/gateway.ts implements it): readies
 * the isolated network and the egress proxy on first use, and cuts a sandbox's proxied connections
 * before a checkpoint. The policy itself (`egress` on a sandbox) travels with the sandbox; the proxy
 * reads it from there.
 */
export interface EgressEnforcer {
  prepare(): Promise<EgressSetup>
  /** Resolves once the guest has closed its side of each connection too (bounded). */
  closeConnections(runId: string): Promise<void>
}
