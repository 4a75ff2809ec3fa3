import Docker from 'dockerode'
import { loadConfig } from '../../src/config.ts'
import { parsePodmanUrl, podmanDockerClient } from '../../src/podman/endpoint.ts'

/**
 * The engine the suite runs against, chosen as the emulator chooses it (ISORUN_EMULATOR_ENGINE, docker by
 * default): CI runs the whole suite once per engine.
 */
export const testEngine: 'docker' | 'podman' = loadConfig(engineEnv()).engine

/** The settings that pick and reach the engine, for tests that start an emulator with an explicit env. */
export function engineEnv(): Record<string, string> {
  const keys = ['ISORUN_EMULATOR_ENGINE', 'ISORUN_EMULATOR_PODMAN_URL', 'ISORUN_EMULATOR_PODMAN_INIT']
  return Object.fromEntries(keys.flatMap((k) => (process.env[k] ? [[k, process.env[k] as string]] : [])))
}

/** A Docker Engine API client on the engine under test (Podman's compatible endpoints for podman). */
export function engineClient(): Docker {
  if (testEngine === 'docker') return new Docker()
  return podmanDockerClient(parsePodmanUrl(loadConfig(engineEnv()).podmanUrl))
}

/** `describe`'s skip reason for a test of one engine only, or '' when it runs on this one. */
export function onlyOn(engine: 'docker' | 'podman', why: string): string {
  return testEngine === engine ? '' : `${engine} only: ${why}`
}
