import type Docker from 'dockerode'
import { Errors } from '../errors.ts'
import type { SandboxSpec } from '../sandboxes/engine.ts'
import { egressContainerName, egressHostConfig } from './egress-network.ts'
import { dockerMessage, translateDockerError } from './errors.ts'
import seccompProfile from './seccomp-profile.json' with { type: 'json' }

const MIB = 1024 * 1024

/**
 * The keep-alive every sandbox runs as its main process, under Docker's init (which reaps the orphans of
 * backgrounded commands). `sleep` comes from the image: any image with a shell has one.
 */
export const KEEP_ALIVE = ['sleep', '2147483647']

/**
 * Docker 20.10's default seccomp profile, except that io_uring_setup/enter/register fail with ENOSYS.
 * CRIU cannot checkpoint an io_uring, and Node 22's libuv opens one at start; refused, libuv falls back
 * to epoll and the thread pool, and the process becomes checkpointable. Applied to every sandbox, so
 * any sandbox can be snapshotted, forked or hibernated with its memory.
 */
export const DOCKER_SECCOMP = `seccomp=${JSON.stringify(seccompProfile)}`

export interface ContainerSettings {
  network: string
  hostCpus: number | undefined
  /**
   * The engine host's path of an init (Docker's tini, Podman's catatonit), bind-mounted as
   * /sbin/docker-init and run as PID 1. The engines' own `Init: true` mounts theirs through a symlink
   * (`docker-init`, `/usr/libexec/podman/catatonit`), and CRIU then fails to restore the checkpoint into
   * another container ("criu failed: type NOTIFY"); the resolved file works. When the emulator cannot
   * know the host's file (Docker Desktop, a remote engine), `Init: true` is used.
   */
  initPath: string | undefined
  /** Security options every sandbox gets (Docker's: the seccomp profile above). */
  securityOpt: string[]
}

/** The PID 1 of every sandbox and its arguments. */
function entrypoint(settings: ContainerSettings) {
  if (!settings.initPath) return { Entrypoint: KEEP_ALIVE, Init: true, Binds: [] as string[] }
  return {
    Entrypoint: ['/sbin/docker-init', '--', ...KEEP_ALIVE],
    Init: false,
    Binds: [`${settings.initPath}:/sbin/docker-init:ro`],
  }
}

/** A sandbox container's name (cosmetic: nothing keys on names, but humans read them). */
export function containerName(spec: Pick<SandboxSpec, 'runId' | 'egressAttachment'>): string {
  return spec.egressAttachment ? egressContainerName(spec.runId) : `isorun-${spec.runId}`
}

/** Creates (does not start) a sandbox's container from `image` with the sandbox's limits and labels. */
export async function createSandboxContainer(
  docker: Docker,
  spec: SandboxSpec,
  image: string,
  settings: ContainerSettings,
): Promise<Docker.Container> {
  const cpus = settings.hostCpus ? Math.min(spec.vcpus, settings.hostCpus) : spec.vcpus
  const init = entrypoint(settings)
  try {
    return await docker.createContainer({
      name: containerName(spec),
      Image: image,
      Entrypoint: init.Entrypoint,
      Cmd: [],
      // The same for every sandbox, cold or pooled, so nothing tells them apart.
      Hostname: 'sandbox',
      Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      Labels: spec.labels,
      HostConfig: {
        Init: init.Init,
        Binds: init.Binds,
        NanoCpus: Math.round(cpus * 1e9),
        Memory: spec.memMib * MIB,
        MemorySwap: spec.memMib * MIB,
        NetworkMode: settings.network,
        SecurityOpt: settings.securityOpt,
        // An egress policy: the isolated network instead (src/docker/egress-network.ts).
        ...(spec.egressAttachment ? egressHostConfig(spec.egressAttachment) : {}),
      },
    })
  } catch (err) {
    throw translateDockerError(err, () => Errors.imageUnavailable(spec.image, dockerMessage(err)))
  }
}

/** Starts a fresh sandbox container; a failure removes it and names the likely cause. */
export async function startSandboxContainer(container: Docker.Container, image: string): Promise<void> {
  try {
    await container.start()
  } catch (err) {
    await container.remove({ force: true, v: true }).catch(() => {})
    throw Errors.validation(
      'image',
      `${image} cannot run a sandbox: the emulator keeps it alive with \`${KEEP_ALIVE.join(' ')}\`, ` +
        `which failed: ${dockerMessage(err)}`,
    )
  }
}

/** Resolves Docker's init binary (`docker-init` by default) on this host to a real file, if visible. */
export async function resolveInitBinary(name: string): Promise<string | undefined> {
  const { realpath, access, constants } = await import('node:fs/promises')
  const dirs = [
    ...(process.env.PATH ?? '').split(':'),
    '/usr/bin',
    '/usr/local/bin',
    '/usr/libexec/docker',
    '/usr/sbin',
  ]
  for (const dir of name.includes('/') ? [''] : dirs.filter(Boolean)) {
    const candidate = dir ? `${dir}/${name}` : name
    try {
      await access(candidate, constants.X_OK)
      return await realpath(candidate)
    } catch {
      // not here; try the next directory
    }
  }
  return undefined
}
