import { execFile } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface CriuSupport {
  available: boolean
  /** Why memory checkpoints are (not) available, in words a user can act on. */
  reason: string
  version?: string
}

/**
 * Can this engine checkpoint memory? Docker needs `--experimental`, CRIU on the daemon's host (>= 4.2:
 * older ones fail on this kernel or on inet sockets), and the emulator needs Docker's root dir, where
 * checkpoints live, to move them between containers. The emulator runs `criu check` itself, so this
 * holds when it runs on the Docker host (the supported setup for memory snapshots).
 */
export async function detectCriu(experimental: boolean, dockerRootDir: string): Promise<CriuSupport> {
  if (!experimental) return { available: false, reason: 'dockerd is not running with --experimental' }
  const criu = await probeCriu(
    // The emulator probes criu itself, so it must run on the Docker host (not in a container).
    'memory checkpoints need the emulator on the Docker host, with CRIU (scripts/provision.sh builds it)',
  )
  if (!criu.available) return criu
  try {
    await access(join(dockerRootDir, 'containers'), constants.R_OK | constants.W_OK)
  } catch {
    return {
      available: false,
      version: criu.version,
      reason: `cannot read and write Docker's root dir ${dockerRootDir}`,
    }
  }
  return criu
}

/**
 * CRIU on this host: present, >= 4.2 (older ones fail on this kernel or on inet sockets) and passing
 * `criu check`. `missingHint` says what to do when it is not on the PATH.
 */
export async function probeCriu(missingHint: string): Promise<CriuSupport> {
  let version: string | undefined
  try {
    const { stdout } = await run('criu', ['--version'], { timeout: 5_000 })
    version = /Version:\s*(\S+)/.exec(stdout)?.[1]
  } catch {
    return { available: false, reason: `criu is not on the emulator's PATH: ${missingHint}` }
  }
  if (!version || !atLeast(version, [4, 2])) {
    return { available: false, version, reason: `criu ${version ?? '?'} is older than 4.2` }
  }
  try {
    await run('criu', ['check'], { timeout: 20_000 })
  } catch (err) {
    const msg = String((err as { stderr?: string }).stderr ?? err)
      .trim()
      .split('\n')
      .slice(-1)[0]
    return { available: false, version, reason: `criu check fails: ${msg}` }
  }
  return { available: true, version, reason: `criu ${version} passes criu check` }
}

function atLeast(version: string, min: [number, number]): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number)
  return major > min[0] || (major === min[0] && minor >= min[1])
}
