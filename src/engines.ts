import { join } from 'node:path'
import { GuestAgents } from './agent/guest-agents.ts'
import type { Config } from './config.ts'
import { createDockerClient } from './docker/client.ts'
import { DockerEngine } from './docker/docker-engine.ts'
import { EmulatorError, Errors } from './errors.ts'
import { ensurePodmanService, parsePodmanUrl, podmanDockerClient } from './podman/endpoint.ts'
import { PodmanEngine } from './podman/podman-engine.ts'
import type { SandboxEngine } from './sandboxes/engine.ts'

/** What the engine's wiring reports, before the app's logger exists. */
export type EngineLog = (data: Record<string, unknown>, message: string) => void

/**
 * The one place that chooses the engine (`ISORUN_EMULATOR_ENGINE`) and how to reach it. Podman's API
 * service is started here when its local socket does not answer; the local Docker engine, when there is
 * one, is where Podman finds images its own store lacks.
 */
export async function createEngine(config: Config, log: EngineLog): Promise<SandboxEngine> {
  const settings = {
    network: config.network,
    pullTimeoutMs: config.pullTimeoutMs,
    pull: config.pull,
    criu: config.criu,
    log,
  }
  if (config.engine === 'docker') {
    // Sandbox agents on Docker only: Podman restores a checkpoint with its parent's mounts, which would
    // hand a copy its parent's agent socket (see docs/agent.md).
    const agents = await GuestAgents.create(config.dataDir, config.agent)
    return DockerEngine.connect(createDockerClient(), { ...settings, agents, log }).catch((err: unknown) => {
      throw withProvisionHint(err)
    })
  }

  const endpoint = parsePodmanUrl(config.podmanUrl)
  const docker = podmanDockerClient(endpoint)
  try {
    const started = await ensurePodmanService(endpoint, () => docker.ping())
    if (started) log({ endpoint: endpoint.url }, started)
  } catch (err) {
    throw withProvisionHint(
      Errors.engineUnavailable(`Podman's API service at ${endpoint.url}: ${(err as Error).message}`),
    )
  }
  const source = createDockerClient()
  const imageSource = await source.ping().then(
    () => source,
    () => undefined,
  )
  return PodmanEngine.connect(docker, {
    ...settings,
    endpoint,
    imageSource,
    initPath: config.podmanInit,
    log,
  })
}

/** The script that provisions a bare Debian host (Docker with CRIU, Podman), shipped with the package. */
const PROVISION_SCRIPT = join(import.meta.dirname, '..', 'scripts', 'provision.sh')

/** An engine that cannot be reached at start: the one command that provisions this host, said. */
function withProvisionHint(err: unknown): unknown {
  if (!(err instanceof EmulatorError) || err.code !== 'engine_unavailable') return err
  return new EmulatorError(
    err.code,
    err.status,
    `${err.message}. No container engine here? Provision this host once (Debian; installs Docker with CRIU, and Podman) with: sudo bash ${PROVISION_SCRIPT}`,
    err.details,
  )
}
