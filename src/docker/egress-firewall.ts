import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

/**
 * The host side of an isolated network. Docker's `internal` networks drop forwarded traffic (nothing
 * leaves for other networks or the outside), but the host itself is still reachable on every address
 * it has: a sandbox could talk to any host service listening on all interfaces. This chain, jumped to
 * from INPUT for the network's bridge, lets in only the egress proxy's port on the gateway address and
 * replies to connections the host opened (url(port)), and rejects the rest at once.
 *
 * A network that does not drop forwarded traffic itself (Podman's bridges route out) also gets two
 * FORWARD rules dropping everything in or out of its bridge: nothing leaves, and with the bridge's
 * netfilter hook (which Docker turns on) sandboxes on it cannot reach each other either.
 *
 * Needs root and `iptables` (the same tool Docker drives); without them the emulator says so
 * (capabilities, a warning) and sandboxes can reach host services on all interfaces.
 */
export interface FirewallTarget {
  bridge: string
  chain: string
  gateway: string
  port: number
  /** Also drop everything forwarded to or from the bridge. */
  dropForwarded: boolean
}

/** The FORWARD rules of a bridge whose network forwards on its own. */
function forwardRules(bridge: string): string[][] {
  return [
    ['FORWARD', '-i', bridge, '-j', 'DROP'],
    ['FORWARD', '-o', bridge, '-j', 'DROP'],
  ]
}

export interface FirewallOutcome {
  applied: boolean
  note: string
}

async function iptables(...args: string[]): Promise<string> {
  // -w: wait for the xtables lock, which Docker takes too.
  const { stdout } = await run('iptables', ['-w', ...args], { timeout: 15_000 })
  return stdout
}

/** Installs (or refreshes: flushed and rewritten) the chain and the jump to it; never throws. */
export async function applyHostFirewall(t: FirewallTarget): Promise<FirewallOutcome> {
  try {
    await iptables('-N', t.chain).catch(async (err) => {
      // "Chain already exists": a restart on the same data dir; rewritten below.
      await iptables('-S', t.chain).catch(() => {
        throw err
      })
    })
    await iptables('-F', t.chain)
    await iptables('-A', t.chain, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT')
    await iptables('-A', t.chain, '-p', 'tcp', '-d', t.gateway, '--dport', String(t.port), '-j', 'ACCEPT')
    await iptables('-A', t.chain, '-p', 'tcp', '-j', 'REJECT', '--reject-with', 'tcp-reset')
    await iptables('-A', t.chain, '-j', 'REJECT')
    const jump = ['INPUT', '-i', t.bridge, '-j', t.chain]
    await iptables('-C', ...jump).catch(() => iptables('-I', ...jump))
    if (t.dropForwarded) {
      for (const rule of forwardRules(t.bridge))
        await iptables('-C', ...rule).catch(() => iptables('-I', ...rule))
    }
    return {
      applied: true,
      note:
        `iptables chain ${t.chain}: of the host, only ${t.gateway}:${t.port} (the egress proxy) is reachable` +
        (t.dropForwarded ? `; FORWARD drops everything to and from ${t.bridge}` : ''),
    }
  } catch (err) {
    return { applied: false, note: `host firewall not applied (${firstLine(err)})` }
  }
}

/**
 * Turns traffic between the containers of one bridge off, as Docker's `enable_icc=false` does, for a
 * network whose engine has no such option (Podman): one FORWARD rule, made once and kept.
 */
export async function dropBetweenMembers(bridge: string): Promise<FirewallOutcome> {
  const rule = ['FORWARD', '-i', bridge, '-o', bridge, '-j', 'DROP']
  try {
    await iptables('-C', ...rule).catch(() => iptables('-I', ...rule))
    return { applied: true, note: `iptables: FORWARD -i ${bridge} -o ${bridge} -j DROP` }
  } catch (err) {
    return { applied: false, note: `the rule that keeps them apart was not applied (${firstLine(err)})` }
  }
}

/** Removes the jump, the FORWARD rules and the chain; what is already gone (or never was) is fine. */
export async function removeHostFirewall(bridge: string, chain: string): Promise<void> {
  // A rule may have been added twice by racing emulators; remove until none is left.
  for (const rule of [['INPUT', '-i', bridge, '-j', chain], ...forwardRules(bridge)]) {
    for (let i = 0; i < 5; i++) {
      const removed = await iptables('-D', ...rule).then(
        () => true,
        () => false,
      )
      if (!removed) break
    }
  }
  await iptables('-F', chain).catch(() => {})
  await iptables('-X', chain).catch(() => {})
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: string; message?: string; code?: string }
  if (e?.code === 'ENOENT') return 'iptables not found'
  const text = (e?.stderr || e?.message || String(err)).trim()
  return text.split('\n')[0] ?? text
}
