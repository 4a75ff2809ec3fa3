import { spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type Docker from 'dockerode'
import { createDockerClient } from '../docker/client.ts'

/** Where Podman's API service listens: a unix socket on this host, or a TCP address (maybe another host's). */
export type PodmanEndpoint =
  | { kind: 'unix'; socketPath: string; url: string }
  | { kind: 'tcp'; host: string; port: number; url: string }

/**
 * Podman's own default: `CONTAINER_HOST` (what podman --remote reads), else root's socket, else the
 * user's (rootless) socket under XDG_RUNTIME_DIR.
 */
export function defaultPodmanUrl(env: Record<string, string | undefined> = process.env): string {
  if (env.CONTAINER_HOST) return env.CONTAINER_HOST
  if (process.getuid?.() === 0 || !env.XDG_RUNTIME_DIR) return 'unix:///run/podman/podman.sock'
  return `unix://${env.XDG_RUNTIME_DIR}/podman/podman.sock`
}

/** Parses `unix:///path/to/podman.sock` or `tcp://host:port`; throws a message naming the problem. */
export function parsePodmanUrl(url: string): PodmanEndpoint {
  if (url.startsWith('unix://')) {
    const socketPath = url.slice('unix://'.length)
    if (!socketPath.startsWith('/')) throw new Error(`${url}: a unix socket URL needs an absolute path`)
    return { kind: 'unix', socketPath, url }
  }
  if (url.startsWith('tcp://')) {
    let parsed: URL
    try {
      parsed = new URL(`http://${url.slice('tcp://'.length)}`)
    } catch {
      throw new Error(`${url}: not a tcp://host:port address`)
    }
    if (!parsed.port || (parsed.pathname !== '/' && parsed.pathname !== ''))
      throw new Error(`${url}: a tcp address needs a port and nothing after it (tcp://host:port)`)
    return { kind: 'tcp', host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port), url }
  }
  throw new Error(`${url}: expected unix:///path/to/podman.sock or tcp://host:port`)
}

/** A dockerode client on Podman's Docker-compatible endpoints (hardened like Docker's: client.ts). */
export function podmanDockerClient(endpoint: PodmanEndpoint): Docker {
  return endpoint.kind === 'unix'
    ? createDockerClient({ socketPath: endpoint.socketPath })
    : createDockerClient({ host: endpoint.host, port: endpoint.port, protocol: 'http' })
}

/** How long a service the emulator starts may take to answer. */
const SERVICE_START_MS = 15_000

/**
 * Makes sure Podman's API service answers on a local socket, starting `podman system service` when it
 * does not. It is started detached and without an idle timeout, like a daemon: sandboxes outlive the
 * emulator (they are adopted on the next start), and several emulators share one service. A TCP address
 * is never started: it may be another host's. Returns what was done, for the log.
 */
export async function ensurePodmanService(
  endpoint: PodmanEndpoint,
  ping: () => Promise<unknown>,
): Promise<string | undefined> {
  if (
    await ping().then(
      () => true,
      () => false,
    )
  )
    return undefined
  if (endpoint.kind !== 'unix') return undefined
  mkdirSync(dirname(endpoint.socketPath), { recursive: true })
  let spawnError: Error | undefined
  const child = spawn('podman', ['system', 'service', '--time=0', endpoint.url], {
    detached: true,
    stdio: 'ignore',
  })
  child.once('error', (err) => {
    spawnError = err
  })
  child.unref()
  const deadline = Date.now() + SERVICE_START_MS
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`cannot start podman system service: ${spawnError.message}`)
    if (
      await ping().then(
        () => true,
        () => false,
      )
    )
      return `started podman system service on ${endpoint.url} (pid ${child.pid})`
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`podman system service did not answer on ${endpoint.url} within ${SERVICE_START_MS} ms`)
}
