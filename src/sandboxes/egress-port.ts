import type { EgressAttachment } from './engine.ts'

/** What a sandbox with an egress policy is created with. */
export interface EgressSetup {
  /** The isolated network it joins and the name its proxy is reached by. */
  attachment: EgressAttachment
  /** Proxy settings for the guest's environment (HTTP_PROXY and friends). */
  env: Record<string, string>
}

/**
 * The domain's view of egress enforcement (src/egress/gateway.ts implements it): readies the isolated
 * network and the egress proxy on first use, and cuts a sandbox's proxied connections before a
 * checkpoint. The policy itself travels with the sandbox; the proxy reads it from there.
 */
export interface EgressPort {
  prepare(): Promise<EgressSetup>
  closeConnections(runId: string): void
}
