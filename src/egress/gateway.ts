import { EmulatorError } from '../errors.ts'
import type { EgressEnforcer, EgressSetup } from '../sandboxes/egress-enforcer.ts'
import type { IsolatedNetwork, SandboxEngine } from '../sandboxes/engine.ts'
import type { InstanceIdentity } from '../sandboxes/labels.ts'
import type { Logger } from '../sandboxes/logger.ts'
import type { Sandbox } from '../sandboxes/sandbox.ts'
import { GuardedAddresses } from './policy.ts'
import { type BlockedRequest, EgressProxy } from './proxy.ts'
import type { HostResolver } from './resolver.ts'

/** The name guests reach the egress proxy by: an /etc/hosts entry the engine writes into each sandbox. */
export const PROXY_HOST = 'isorun-egress'

/** Guest loopback stays local: it is the sandbox's own, never egress (and never the host's). */
const NO_PROXY = 'localhost,127.0.0.1,::1'

export interface EgressGatewayOptions {
  engine: SandboxEngine
  identity: InstanceIdentity
  /** The proxy's port on the isolated network's gateway address; fixed, since guests keep it in their env. */
  port: number
  resolver: HostResolver
  logger: Logger
  /** The domain: which sandbox is at a source address, and where a refusal is recorded. */
  sandboxes: {
    at(address: string): Promise<Sandbox | undefined>
    blocked(sandbox: Sandbox, blocked: BlockedRequest): void
  }
}

/** What GET /_emulator/capabilities says about egress, as of now. */
export interface EgressStatus {
  /** Whether this engine can enforce policies at all. */
  available: boolean
  /** The isolated network, once the first sandbox with a policy made it (null before). */
  network: string | null
  proxy: string
  /** null until the network exists. */
  host_firewall: boolean | null
  note: string
}

/**
 * Egress enforcement, started on first use so that sandboxes without a policy pay nothing: the
 * engine's isolated network, then the egress proxy on the host's address on it. Sandboxes with a policy
 * join that network and get the proxy in their environment; the proxy is their only way out.
 */
export class EgressGateway implements EgressEnforcer {
  private readonly opts: EgressGatewayOptions
  private readonly guarded = new GuardedAddresses()
  private readonly proxy: EgressProxy
  private ready: Promise<IsolatedNetwork> | undefined
  private network: IsolatedNetwork | undefined
  private closed = false

  constructor(opts: EgressGatewayOptions) {
    this.opts = opts
    this.proxy = new EgressProxy({
      identify: (address) => opts.sandboxes.at(address),
      resolver: opts.resolver,
      guarded: this.guarded,
      onBlocked: (sandbox, blocked) => opts.sandboxes.blocked(sandbox, blocked),
      logger: opts.logger,
    })
  }

  async prepare(): Promise<EgressSetup> {
    if (this.closed) throw new EmulatorError('engine_unavailable', 503, 'the emulator is shutting down')
    this.ready ??= this.start().catch((err) => {
      // Not remembered: the next sandbox with a policy tries again.
      this.ready = undefined
      throw err
    })
    const network = await this.ready
    const url = `http://${PROXY_HOST}:${this.opts.port}`
    return {
      attachment: { network: network.name, proxyHost: PROXY_HOST, proxyAddress: network.gateway },
      env: {
        HTTP_PROXY: url,
        HTTPS_PROXY: url,
        http_proxy: url,
        https_proxy: url,
        NO_PROXY,
        no_proxy: NO_PROXY,
      },
    }
  }

  closeConnections(runId: string): Promise<void> {
    return this.proxy.closeConnections(runId)
  }

  status(): EgressStatus {
    const available = typeof this.opts.engine.isolatedNetwork === 'function'
    return {
      available,
      network: this.network?.name ?? null,
      proxy: `${PROXY_HOST}:${this.opts.port}${this.network ? ` (${this.network.gateway}:${this.opts.port})` : ''}`,
      host_firewall: this.network ? this.network.hostFirewall : null,
      note: !available
        ? `${this.cannotIsolate()}: network and network_profile are refused (409)`
        : this.network
          ? this.network.hostFirewallNote
          : 'the isolated network and the proxy start with the first sandbox that has a policy',
    }
  }

  private cannotIsolate(): string {
    const why = this.opts.engine.isolationUnavailable
    return `this engine cannot isolate sandboxes${why ? ` (${why})` : ''}`
  }

  /** Stops the proxy and removes the network unless sandboxes still use it (they keep it for the next start). */
  async close(): Promise<void> {
    this.closed = true
    await this.proxy.close()
    const ready = this.ready
    if (!ready) return
    await ready.catch(() => undefined)
    await this.opts.engine
      .releaseIsolatedNetwork?.(this.opts.identity.instanceId)
      .catch((err) => this.opts.logger.warn({ err }, 'could not remove the isolated network'))
  }

  private async start(): Promise<IsolatedNetwork> {
    const { engine, identity, port, logger } = this.opts
    if (!engine.isolatedNetwork) {
      throw new EmulatorError(
        'capability_unavailable',
        409,
        `${this.cannotIsolate()}, so egress policies (network, network_profile) cannot be enforced`,
      )
    }
    const network = await engine.isolatedNetwork({ ...identity, proxyPort: port })
    try {
      await this.proxy.listen(network.gateway, port)
    } catch (err) {
      // Refused: no sandbox will join the network made for it (close() knows nothing of a failed start).
      await engine
        .releaseIsolatedNetwork?.(identity.instanceId)
        .catch((e) => logger.warn({ err: e }, 'could not remove the isolated network'))
      throw new EmulatorError(
        'capability_unavailable',
        409,
        `the egress proxy cannot listen on ${network.gateway}:${port} (${(err as Error).message}): ` +
          (isAddressUnavailable(err)
            ? 'the emulator is not on the Docker host (in a container, run it with --network host to enforce egress policies)'
            : 'set ISORUN_EMULATOR_EGRESS_PORT to a free port'),
      )
    }
    for (const subnet of network.sandboxSubnets) this.guarded.addSandboxNetwork(subnet)
    this.network = network
    if (network.hostFirewall) logger.info({ network: network.name }, network.hostFirewallNote)
    else
      logger.warn(
        { network: network.name },
        `${network.hostFirewallNote}: sandboxes with an egress policy can reach host services listening on all interfaces`,
      )
    logger.info(
      { network: network.name, proxy: `${network.gateway}:${port}` },
      'egress enforcement ready: isolated network and egress proxy',
    )
    return network
  }
}

/** EADDRNOTAVAIL: the gateway address is not one of this machine's, i.e. the emulator is not on the Docker host. */
function isAddressUnavailable(err: unknown): boolean {
  return (err as { code?: string })?.code === 'EADDRNOTAVAIL'
}
