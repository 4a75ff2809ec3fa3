import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { isEmulatorError } from '../errors.ts'
import type { SandboxEngine } from '../sandboxes/engine.ts'
import type { Logger } from '../sandboxes/logger.ts'
import { type ImageMap, type StandInKind, standInImage } from './image-map.ts'

/** The script that builds the stand-ins (and the test fixtures) offline, shipped with the package. */
export const BUILD_SCRIPT = join(import.meta.dirname, '..', '..', 'fixtures', 'build-images.sh')

/** Past this, a build is stopped: the emulator starts without the stand-in rather than never. */
const BUILD_TIMEOUT_MS = 10 * 60_000

/** The command that builds the stand-ins under `repository`, as image_unavailable and the log say it. */
export function standInBuildCommand(repository: string): string {
  return `bash ${BUILD_SCRIPT} --stand-ins ${repository} --no-fixtures`
}

/** What making the stand-ins available found: each kind's image and whether it is there now. */
export interface StandInReport {
  built: boolean
  images: { kind: StandInKind; image: string; present: boolean }[]
}

/**
 * Makes the stand-ins the image map uses present on the engine, building the missing ones offline
 * (fixtures/build-images.sh, from this host's busybox, Node 22 and python3) with its progress in the
 * log: on a first start this is what lets the Quickstart run with no image pulled. The engine is asked
 * first (Podman imports from the local Docker engine here); a stand-in is never pulled. A failed build
 * is logged and the emulator starts anyway: a create for that image then says how to get it.
 */
export async function ensureStandIns(
  engine: SandboxEngine,
  repository: string,
  map: ImageMap,
  log: Logger,
): Promise<StandInReport> {
  const kinds = map.standIns()
  const present = async (kind: StandInKind) =>
    engine.ensureImage(standInImage(repository, kind), { pull: false }).then(
      () => true,
      (err: unknown) => {
        if (isEmulatorError(err) && err.code === 'image_unavailable') return false
        throw err
      },
    )
  const missing: StandInKind[] = []
  for (const kind of kinds) if (!(await present(kind))) missing.push(kind)
  let built = false
  if (missing.length > 0) {
    const names = missing.map((k) => standInImage(repository, k)).join(', ')
    log.info(
      { images: names },
      `first start: building the stand-in images ${names} offline from this host's binaries (once; about a minute)`,
    )
    const began = performance.now()
    const outcome = await runBuild(repository, missing, log)
    if (outcome.ok) {
      built = true
      log.info(
        { images: names },
        `stand-in images ready in ${Math.round((performance.now() - began) / 1000)} s`,
      )
    } else {
      log.warn(
        { images: names },
        `could not build the stand-in images (${outcome.why}); creates that need them answer image_unavailable saying how to get them. To retry: ${standInBuildCommand(repository)}`,
      )
    }
  }
  const images = []
  for (const kind of kinds) {
    const ok = missing.includes(kind) ? await present(kind) : true
    images.push({ kind, image: standInImage(repository, kind), present: ok })
  }
  return { built, images }
}

/** Runs the build script, each line it prints a log line; resolves with whether it succeeded. */
function runBuild(
  repository: string,
  kinds: StandInKind[],
  log: Logger,
): Promise<{ ok: true } | { ok: false; why: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env }
  // The Node this emulator runs on is a Node 22 for the node stand-in, when it is one.
  if (!env.NODE22_BIN && process.versions.node.startsWith('22.')) env.NODE22_BIN = process.execPath
  const args = [BUILD_SCRIPT, '--stand-ins', repository, '--no-fixtures', '--only', kinds.join(',')]
  return new Promise((resolve) => {
    const child = spawn('bash', args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let lastError = ''
    createInterface({ input: child.stdout }).on('line', (line) =>
      log.info({ repository }, `stand-ins: ${line}`),
    )
    createInterface({ input: child.stderr }).on('line', (line) => {
      lastError = line.replace(/^build-images: error: /, '')
      log.warn({ repository }, `stand-ins: ${line}`)
    })
    const timer = setTimeout(() => {
      lastError = `stopped after ${BUILD_TIMEOUT_MS / 60_000} minutes`
      child.kill('SIGTERM')
    }, BUILD_TIMEOUT_MS)
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ ok: false, why: `cannot run bash: ${err.message}` })
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve(code === 0 ? { ok: true } : { ok: false, why: lastError || `exit code ${code}` })
    })
  })
}
