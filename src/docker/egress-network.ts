import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import type Docker from 'dockerode'
import { EmulatorError, Errors } from '../errors.ts'
import type { EgressAttachment, IsolatedNetwork, IsolatedNetworkRequest } from '../sandboxes/engine.ts'
import { FS_VIEW, FS_VIEW_LABEL, sameFilesystemView } from '../sandboxes/fs-view.ts'
import { applyHostFirewall, removeHostFirewall } from './egress-firewall.ts'
import { dockerMessage } from './errors.ts'

/** Labels on the isolated networks the emulator makes, so stale ones can be found and removed. */
const NET_LABEL = {
  app: 'isorun-emulator.egress-network',
  instance: 'isorun-emulator.instance',
  dataDir: 'isorun-emulator.data-dir',
  bridge: 'isorun-emulator.bridge',
  chain: 'isorun-emulator.firewall-chain',
} as const

/**
 * One network per emulator instance (per data dir), named after it, so instances never share one and
 * a restart finds its own again. The bridge and the firewall chain get short names derived from the
 * instance id (Linux allows 15 characters for an interface, iptables 28 for a chain).
 */
export interface EgressNames {
  network: string
  bridge: string
  chain: string
}

function names(instanceId: string): EgressNames {
  const short = instanceId.slice(0, 12)
  return {
    network: `isorun-emulator-egress-${instanceId}`,
    bridge: `isr${short}`,
    chain: `ISORUN-EGRESS-${short}`,
  }
}

/**
 * How an engine makes the isolated network: a bridge named `names.bridge`, carrying `labels`. A 409
 * (made meanwhile by another call of this instance) is fine. `dropsForwarded`: the network itself
 * forwards nothing to or from other networks; otherwise the host firewall drops it.
 */
export interface IsolationFlavour {
  create(names: EgressNames, labels: Record<string, string>): Promise<void>
  dropsForwarded: boolean
  /**
   * Makes sure the bridge exists with the gateway address on it, where the egress proxy listens, for an
   * engine that makes it only when a first container joins (Podman's CNI); undefined when the engine
   * makes it with the network (Docker).
   */
  ensureBridge?(bridge: string, gateway: string, subnet: string): Promise<void>
}

/**
 * Docker's `internal` bridge network: no route out (Docker drops forwarded traffic to and from other
 * networks), inter-container traffic off (sandboxes on it cannot reach each other), IPv4 only.
 */
export function dockerInternalNetwork(docker: Docker): IsolationFlavour {
  return {
    dropsForwarded: true,
    async create(n, labels) {
      await docker.createNetwork({
        Name: n.network,
        Driver: 'bridge',
        Internal: true,
        CheckDuplicate: true,
        Labels: labels,
        Options: {
          'com.docker.network.bridge.name': n.bridge,
          'com.docker.network.bridge.enable_icc': 'false',
        },
      })
    },
  }
}

/**
 * The isolated network, made by the engine's flavour, and the host firewall (egress-firewall.ts), which
 * closes the host's own ports to it but the proxy's (and, where the network does not, drops everything
 * it would forward).
 */
export async function ensureIsolatedNetwork(
  docker: Docker,
  request: IsolatedNetworkRequest,
  flavour: IsolationFlavour = dockerInternalNetwork(docker),
): Promise<Omit<IsolatedNetwork, 'sandboxSubnets'>> {
  await reapOrphanNetworks(docker)
  const n = names(request.instanceId)
  let info = await inspect(docker, n.network)
  if (!info) {
    try {
      await flavour.create(n, {
        [NET_LABEL.app]: '1',
        [NET_LABEL.instance]: request.instanceId,
        [NET_LABEL.dataDir]: request.dataDir,
        [FS_VIEW_LABEL]: FS_VIEW,
        [NET_LABEL.bridge]: n.bridge,
        [NET_LABEL.chain]: n.chain,
      })
    } catch (err) {
      // 409: created meanwhile (another call of this instance); use it.
      if ((err as { statusCode?: number })?.statusCode !== 409) {
        throw Errors.engine(`cannot create the isolated network for egress policies: ${dockerMessage(err)}`)
      }
    }
    info = await inspect(docker, n.network)
  }
  const ipam = info?.IPAM?.Config?.[0]
  if (!info || !ipam?.Gateway || !ipam.Subnet) {
    throw Errors.engine(`the isolated network ${n.network} has no IPv4 gateway`)
  }
  const bridge = info.Options?.['com.docker.network.bridge.name'] ?? n.bridge
  await flavour.ensureBridge?.(bridge, ipam.Gateway, ipam.Subnet)
  const firewall = await applyHostFirewall({
    bridge,
    chain: n.chain,
    gateway: ipam.Gateway,
    port: request.proxyPort,
    dropForwarded: !flavour.dropsForwarded,
  })
  if (!flavour.dropsForwarded && !firewall.applied) {
    // Without its firewall such a network routes out: a policy would be recorded but not enforced.
    await removeIfUnused(docker, info)
    throw new EmulatorError(
      'capability_unavailable',
      409,
      `egress policies cannot be enforced: this engine's network routes out and the host firewall that would stop it could not be applied (${firewall.note})`,
    )
  }
  return {
    name: n.network,
    gateway: ipam.Gateway,
    subnet: ipam.Subnet,
    hostFirewall: firewall.applied,
    hostFirewallNote: firewall.note,
  }
}

/** Removes this instance's network and firewall unless a sandbox is attached; then reaps orphans. */
export async function releaseIsolatedNetwork(docker: Docker, instanceId: string): Promise<void> {
  const n = names(instanceId)
  const info = await inspect(docker, n.network)
  if (info) await removeIfUnused(docker, info)
  await reapOrphanNetworks(docker)
}

/** Networks of emulators whose data dir is gone (a finished test run, say): nothing can adopt them. */
async function reapOrphanNetworks(docker: Docker): Promise<void> {
  let found: Docker.NetworkInspectInfo[]
  try {
    found = await docker.listNetworks({ filters: { label: [`${NET_LABEL.app}=1`] } })
  } catch {
    return
  }
  for (const net of found) {
    const dir = net.Labels?.[NET_LABEL.dataDir]
    // Only where that emulator's files are visible can "gone" be told (see fs-view.ts).
    if (!dir || !sameFilesystemView(net.Labels) || existsSync(dir)) continue
    const info = await inspect(docker, net.Id)
    if (info) await removeIfUnused(docker, info)
  }
}

async function removeIfUnused(docker: Docker, info: Docker.NetworkInspectInfo): Promise<void> {
  if (Object.keys(info.Containers ?? {}).length > 0) return
  try {
    await docker.getNetwork(info.Id).remove()
  } catch {
    // In use after all (a sandbox attached meanwhile) or already gone: it stays, with its firewall.
    return
  }
  const bridge = info.Labels?.[NET_LABEL.bridge]
  const chain = info.Labels?.[NET_LABEL.chain]
  if (bridge && chain) await removeHostFirewall(bridge, chain)
}

async function inspect(docker: Docker, idOrName: string): Promise<Docker.NetworkInspectInfo | undefined> {
  try {
    return (await docker.getNetwork(idOrName).inspect()) as Docker.NetworkInspectInfo
  } catch (err) {
    if ((err as { statusCode?: number })?.statusCode === 404) return undefined
    throw Errors.engine(`cannot inspect network ${idOrName}: ${dockerMessage(err)}`)
  }
}

/**
 * The container settings of a sandbox with an egress policy: on the isolated network, the proxy's name
 * in its /etc/hosts (a name, not an address in HTTP_PROXY, so a restore onto a recreated network still
 * finds it), and without CAP_NET_RAW, which would let it forge another sandbox's source address (the
 * proxy knows sandboxes by it) or ARP replies on the bridge. Docker's DNS cannot forward queries off the
 * isolated network, so outside names never resolve in the guest: one short try makes a lookup fail in
 * about a second instead of ten.
 */
export function egressHostConfig(attachment: EgressAttachment) {
  return {
    NetworkMode: attachment.network,
    ExtraHosts: [`${attachment.proxyHost}:${attachment.proxyAddress}`],
    CapDrop: ['NET_RAW'],
    DnsOptions: ['timeout:1', 'attempts:1'],
  }
}

/**
 * Docker's DNS on a user-defined network answers reverse lookups with container names, so a sandbox on
 * the isolated network could list its neighbours' names: they must not carry run ids (a run id is the
 * credential of url(port)). The label still says which run a container is.
 */
export function egressContainerName(runId: string): string {
  return `isorun-egress-${createHash('sha256').update(runId).digest('hex').slice(0, 24)}`
}
