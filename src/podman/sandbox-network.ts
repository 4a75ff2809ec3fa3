import type Docker from 'dockerode'
import { dropBetweenMembers } from '../docker/egress-firewall.ts'
import { SANDBOX_NETWORK } from '../docker/sandbox-network.ts'
import type { SandboxNetwork } from '../sandboxes/engine.ts'
import type { Libpod } from './libpod.ts'

/** Docker's own sandbox network has the bridge `isr-sandboxes` on the same host: Podman's is another. */
const BRIDGE = 'isr-psandboxes'
const LABEL = 'isorun-emulator.sandbox-network'
/** Podman's default network, as its compatible API names it. */
const FALLBACK = 'bridge'

/**
 * Podman's counterpart of Docker's sandbox network (docker/sandbox-network.ts): the same name, a bridge
 * of its own, and no traffic between its members. Podman has no switch for that, so the host firewall
 * drops what the bridge would forward from one member to another, which needs the engine on this host
 * and root; otherwise sandboxes use Podman's default network, and the note says they can reach each
 * other. A network named by ISORUN_EMULATOR_NETWORK is used as it is.
 */
export async function ensurePodmanSandboxNetwork(
  docker: Docker,
  libpod: Libpod,
  configured: string | undefined,
  local: boolean,
): Promise<SandboxNetwork> {
  if (configured) {
    return describe(
      docker,
      configured,
      false,
      `${configured} (set by ISORUN_EMULATOR_NETWORK): used as it is`,
    )
  }
  if (!local) {
    return describe(
      docker,
      FALLBACK,
      false,
      `Podman is another host's, where the firewall rule that keeps sandboxes apart would have to be; sandboxes use ${FALLBACK}, where they can reach each other`,
    )
  }
  try {
    await libpod.createNetwork({
      name: SANDBOX_NETWORK,
      networkInterface: BRIDGE,
      internal: false,
      labels: { [LABEL]: '1' },
    })
  } catch (err) {
    // 409: it exists (an earlier start, or another emulator just now).
    if ((err as { statusCode?: number })?.statusCode !== 409) {
      return describe(
        docker,
        FALLBACK,
        false,
        `the network ${SANDBOX_NETWORK} could not be created (${(err as Error).message}); sandboxes use ${FALLBACK}, where they can reach each other`,
      )
    }
  }
  const apart = await dropBetweenMembers(BRIDGE)
  if (!apart.applied) {
    return describe(
      docker,
      FALLBACK,
      false,
      `${apart.note}; sandboxes use ${FALLBACK}, where they can reach each other`,
    )
  }
  return describe(
    docker,
    SANDBOX_NETWORK,
    true,
    `${SANDBOX_NETWORK} (the emulator's own): traffic between sandboxes is off (${apart.note})`,
  )
}

async function describe(
  docker: Docker,
  name: string,
  isolated: boolean,
  note: string,
): Promise<SandboxNetwork> {
  let subnets: string[] = []
  try {
    const info = (await docker.getNetwork(encodeURIComponent(name)).inspect()) as Docker.NetworkInspectInfo
    subnets = (info.IPAM?.Config ?? []).map((c) => c.Subnet).filter((s): s is string => Boolean(s))
  } catch {
    // gone or never made: no subnets to guard
  }
  return { name, subnets, isolated, note }
}
