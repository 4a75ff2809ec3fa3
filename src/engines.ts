import type { Config } from './config.ts'
import { createDockerClient } from './docker/client.ts'
import { DockerEngine } from './docker/docker-engine.ts'
import { Errors } from './errors.ts'
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
  }
  if (config.engine === 'docker') return DockerEngine.connect(createDockerClient(), settings)

  const endpoint = parsePodmanUrl(config.podmanUrl)
  const docker = podmanDockerClient(endpoint)
  try {
    const started = await ensurePodmanService(endpoint, () => docker.ping())
    if (started) log({ endpoint: endpoint.url }, started)
  } catch (err) {
    throw Errors.engineUnavailable(`Podman's API service at ${endpoint.url}: ${(err as Error).message}`)
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
