import { createServer } from 'node:net'
import type Docker from 'dockerode'
import type { SandboxNetwork } from '../sandboxes/engine.ts'
import { dockerMessage } from './errors.ts'

/**
 * The network sandboxes without an egress policy join: a bridge with inter-container traffic off, so a
 * sandbox reaches the outside and the host, never another sandbox (whoever owns it). One per host,
 * shared by every emulator on it (with no traffic between its members there is nothing to keep apart),
 * created on first use and left in place like Docker's own `bridge`: a network per emulator would take a
 * subnet from Docker's small default pools each.
 */
export const SANDBOX_NETWORK = 'isorun-emulator-sandboxes'
const BRIDGE = 'isr-sandboxes'
const LABEL = 'isorun-emulator.sandbox-network'

/** Docker's default bridge, used when isolation is not possible here (see ensureSandboxNetwork). */
const FALLBACK = 'bridge'

/**
 * The network to put sandboxes on. `configured` (ISORUN_EMULATOR_NETWORK) is the operator's choice and is
 * used as it is; otherwise the emulator's own. The emulator reaches sandboxes (url(port)) at their
 * address from its own network stack: with inter-container traffic off, only from the host's, so an
 * emulator that runs in a container (the network's gateway is not one of its addresses) keeps Docker's
 * default bridge, shared with its own container, and says that sandboxes are not isolated there.
 */
export async function ensureSandboxNetwork(
  docker: Docker,
  configured: string | undefined,
): Promise<SandboxNetwork> {
  if (configured) return describe(docker, configured, 'set by ISORUN_EMULATOR_NETWORK')
  try {
    await docker.createNetwork({
      Name: SANDBOX_NETWORK,
      Driver: 'bridge',
      CheckDuplicate: true,
      Labels: { [LABEL]: '1' },
      Options: {
        'com.docker.network.bridge.name': BRIDGE,
        'com.docker.network.bridge.enable_icc': 'false',
      },
    })
  } catch (err) {
    // 409: it exists (made by an earlier start, or by another emulator just now).
    if ((err as { statusCode?: number })?.statusCode !== 409) {
      return fallback(
        docker,
        `the network ${SANDBOX_NETWORK} could not be created (${dockerMessage(err).trim()})`,
      )
    }
  }
  const own = await describe(docker, SANDBOX_NETWORK, "the emulator's own")
  if (!own.isolated) return own
  const gateways = await gatewaysOf(docker, SANDBOX_NETWORK)
  const reachable = await Promise.all(gateways.map(isOwnAddress))
  if (gateways.length > 0 && !reachable.some(Boolean)) {
    return fallback(
      docker,
      `the emulator is not on the Docker host's network (in a container?), so it could not reach sandboxes on ${SANDBOX_NETWORK}, where traffic between containers is off; run it on the host, or its container with --network host, for isolated sandboxes`,
    )
  }
  return own
}

async function fallback(docker: Docker, why: string): Promise<SandboxNetwork> {
  const bridge = await describe(docker, FALLBACK, 'fallback')
  return {
    ...bridge,
    isolated: false,
    note: `${why}; sandboxes use ${FALLBACK}, where they can reach each other`,
  }
}

async function describe(docker: Docker, name: string, origin: string): Promise<SandboxNetwork> {
  let info: Docker.NetworkInspectInfo | undefined
  try {
    info = (await docker.getNetwork(encodeURIComponent(name)).inspect()) as Docker.NetworkInspectInfo
  } catch {
    info = undefined
  }
  const subnets = (info?.IPAM?.Config ?? []).map((c) => c.Subnet).filter((s): s is string => Boolean(s))
  const icc = info?.Options?.['com.docker.network.bridge.enable_icc']
  const isolated = info?.Driver === 'bridge' && icc === 'false'
  return {
    name,
    subnets,
    isolated,
    note: isolated
      ? `${name} (${origin}): traffic between sandboxes is off`
      : `${name} (${origin}): ${info ? 'traffic between containers is on' : 'not found'}, so sandboxes can reach each other`,
  }
}

/**
 * Whether `ip` is one of this machine's addresses: it can bind to it. (A bridge with no container is
 * down, and os.networkInterfaces() leaves out interfaces that are down.)
 */
function isOwnAddress(ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer()
    probe.once('error', () => resolve(false))
    probe.listen({ host: ip, port: 0, exclusive: true }, () => probe.close(() => resolve(true)))
  })
}

async function gatewaysOf(docker: Docker, name: string): Promise<string[]> {
  const info = (await docker.getNetwork(encodeURIComponent(name)).inspect()) as Docker.NetworkInspectInfo
  return (info.IPAM?.Config ?? []).map((c) => c.Gateway).filter((g): g is string => Boolean(g))
}
