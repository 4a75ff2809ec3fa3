import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { loadConfig } from '../../src/config.ts'
import { resetSandboxes } from '../../src/control/reset.ts'
import { LABEL } from '../../src/sandboxes/labels.ts'
import { startServer } from '../../src/server.ts'
import { removeContainers } from './cleanup.ts'
import { engineClient, engineEnv, testEngine } from './engine.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The running emulator's URL (the fast [::1] form), or '' when Docker is missing. */
    apiUrl: string
    /** The dashboard's and the control plane's origin, or '' when Docker is missing. */
    adminUrl: string
    /** Why the Docker-backed tests are skipped; '' when they run. */
    dockerSkipReason: string
    instanceId: string
    /** The emulator's data dir (snapshots live under it). */
    dataDir: string
  }
}

const repoRoot = join(import.meta.dirname, '..', '..')

/** Names the test emulator's egress proxy pins to 127.0.0.1 (see test/egress.test.ts). */
export const EGRESS_TEST_HOSTS =
  'allowed.test=127.0.0.1,denied.test=127.0.0.1,api.wild.test=127.0.0.1,wild.test=127.0.0.1'

/**
 * Starts one emulator for the whole run on the real engine under test (Docker, or Podman with
 * ISORUN_EMULATOR_ENGINE=podman), after building the fixture images.
 * Without Docker the SDK tests are skipped with the reason printed, unless ISORUN_REQUIRE_DOCKER=1
 * (CI sets it), in which case the run fails. At the end it checks that no test left a container behind.
 */
export default async function setup(project: TestProject) {
  const docker = engineClient()
  try {
    await docker.ping()
  } catch (err) {
    const reason = `no ${testEngine} engine reachable (${(err as Error).message}); run scripts/provision.sh`
    if (process.env.ISORUN_REQUIRE_DOCKER === '1') throw new Error(reason)
    console.warn(`\n[isorun-emulator tests] SKIPPING every Docker-backed test: ${reason}\n`)
    project.provide('dockerSkipReason', reason)
    project.provide('apiUrl', '')
    project.provide('adminUrl', '')
    project.provide('instanceId', '')
    project.provide('dataDir', '')
    return
  }

  // The fixtures, and the stand-ins the emulator's image map runs for node:22-slim, node:22 and
  // python:3.12-slim (rebuilt when their recipe changed; the emulator itself only builds missing ones).
  const standIns = loadConfig(engineEnv()).standIns
  execFileSync(
    'bash',
    [
      join(repoRoot, 'fixtures', 'build-images.sh'),
      ...(testEngine === 'podman' ? ['--podman'] : []),
      ...(standIns ? ['--stand-ins', standIns] : []),
    ],
    { stdio: 'inherit' },
  )
  // The sandbox agent from its sources (a no-op when up to date); CI must have it.
  const required = process.env.ISORUN_REQUIRE_DOCKER === '1' ? ['--required'] : []
  execFileSync('bash', [join(repoRoot, 'agent', 'build.sh'), ...required], { stdio: 'inherit' })

  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-emulator-test-'))
  const config = loadConfig({
    ...engineEnv(),
    ISORUN_EMULATOR_PORT: '0',
    ISORUN_EMULATOR_DATA_DIR: dataDir,
    ISORUN_EMULATOR_LOG_LEVEL: process.env.ISORUN_EMULATOR_LOG_LEVEL ?? 'warn',
    // No warm pool here: most tests want each create to be what it looks like, and no background
    // container churn under their timings. test/pool.test.ts runs an emulator with the pool on.
    ISORUN_EMULATOR_POOL: '0',
    // The egress proxy resolves these to this machine's loopback, where test/egress.test.ts runs its
    // servers: egress tests never reach beyond this machine.
    ISORUN_EMULATOR_EGRESS_HOSTS: EGRESS_TEST_HOSTS,
    // `off` runs the same tests through docker exec and the archive API (.ci/run does both).
    ISORUN_EMULATOR_AGENT: process.env.ISORUN_EMULATOR_AGENT,
  })
  const server = await startServer(config)
  const { instanceId } = server.identity
  project.provide('apiUrl', server.apiUrl)
  project.provide('adminUrl', server.adminUrl)
  project.provide('dockerSkipReason', '')
  project.provide('instanceId', instanceId)
  project.provide('dataDir', server.identity.dataDir)

  return async () => {
    const left = await docker.listContainers({
      all: true,
      filters: { label: [`${LABEL.instance}=${instanceId}`] },
    })
    // Snapshots tests kept (their images live in Docker, not in the temp data dir) go too.
    await resetSandboxes(server.sandboxes)
    await server.close()
    await removeContainers([`${LABEL.instance}=${instanceId}`])
    rmSync(dataDir, { recursive: true, force: true })
    if (left.length > 0) {
      throw new Error(
        `tests left ${left.length} sandbox container(s) behind: ${left.map((c) => c.Names[0]).join(', ')}`,
      )
    }
  }
}
