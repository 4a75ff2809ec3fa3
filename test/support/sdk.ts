import { randomBytes } from 'node:crypto'
import type Docker from 'dockerode'
import { Isorun, type Sandbox } from 'isorun'
import { afterAll, describe, inject } from 'vitest'
import { LABEL } from '../../src/sandboxes/labels.ts'
import { engineClient, onlyOn } from './engine.ts'

export const apiUrl = inject('apiUrl')
export const adminUrl = inject('adminUrl')
export const dockerSkipReason = inject('dockerSkipReason')
export const instanceId = inject('instanceId')
export const dataDir = inject('dataDir')

/**
 * `describe` for tests that need the emulator on a real Docker engine. Without Docker they are skipped,
 * and the title says why (CI sets ISORUN_REQUIRE_DOCKER=1, so there they always run).
 */
export const describeWithDocker = (name: string, fn: () => void) =>
  dockerSkipReason ? describe.skip(`${name} [skipped: ${dockerSkipReason}]`, fn) : describe(name, fn)

/** `describeWithDocker` for what only one engine has: on the other, skipped with the reason in its title. */
export const describeOnEngine = (engine: 'docker' | 'podman', why: string, name: string, fn: () => void) => {
  const reason = onlyOn(engine, why)
  return reason ? describe.skip(`${name} [skipped: ${reason}]`, fn) : describeWithDocker(name, fn)
}

/** A fresh API key, so each test file (and each tenant in a test) sees only its own sandboxes. */
export function newApiKey(): string {
  return `isorun_test_${randomBytes(6).toString('hex')}`
}

export function newClient(apiKey = newApiKey()): Isorun {
  return new Isorun({ apiUrl, apiKey })
}

/**
 * Remembers the sandboxes a test file makes and destroys those still alive after it, so a failing
 * assertion never leaves a container behind.
 */
export function sandboxTracker() {
  const made: Sandbox[] = []
  afterAll(async () => {
    await Promise.all(made.map((s) => s.destroy().catch(() => undefined)))
  })
  return <T extends Sandbox | Sandbox[]>(s: T): T => {
    if (Array.isArray(s)) made.push(...s)
    else made.push(s as Sandbox)
    return s
  }
}

/** The engine under test, through its Docker Engine API (Docker's, or Podman's compatible one). */
export const docker = engineClient()

/** The container behind a run id, if any (for asserting cleanup and limits from the outside). */
export async function containerOf(runId: string): Promise<Docker.ContainerInfo | undefined> {
  const found = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL.runId}=${runId}`, `${LABEL.instance}=${instanceId}`] },
  })
  return found[0]
}

export async function waitFor<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const value = await probe()
    if (value !== undefined) return value
    await new Promise((r) => setTimeout(r, intervalMs))
  }
  return undefined
}
