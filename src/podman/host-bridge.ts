import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', args, { timeout: 15_000 })
  return stdout
}

/**
 * Podman's CNI makes a network's bridge, with the gateway address on it, only when a first container
 * joins; the egress proxy must listen on that address before any sandbox does. So the bridge is made
 * here as CNI would make it (CNI takes an existing bridge of the network's name and keeps its address),
 * or given its address back when it lost it. Podman removes it with the network. Needs root and `ip`.
 */
export async function ensureHostBridge(bridge: string, gateway: string, subnet: string): Promise<void> {
  const prefix = subnet.split('/')[1] ?? '24'
  const exists = await ip('link', 'show', 'dev', bridge).then(
    () => true,
    () => false,
  )
  if (!exists) {
    await ip('link', 'add', 'name', bridge, 'type', 'bridge').catch(async (err) => {
      // Made meanwhile (another emulator of this instance, or CNI): fine if it is there now.
      await ip('link', 'show', 'dev', bridge).catch(() => {
        throw err
      })
    })
  }
  const addresses = await ip('-4', 'addr', 'show', 'dev', bridge)
  if (!addresses.includes(` ${gateway}/`)) await ip('addr', 'add', `${gateway}/${prefix}`, 'dev', bridge)
  await ip('link', 'set', 'dev', bridge, 'up')
}
