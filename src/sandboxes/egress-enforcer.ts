import type { EgressAttachment } from './engine.ts'

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
