import type Docker from 'dockerode'
import type { AgentInjection } from '../agent/guest-agents.ts'
import { Errors } from '../errors.ts'
import type { SandboxSpec } from '../sandboxes/engine.ts'
import { agentContainerConfig } from './agent-transport.ts'
import { BoundedDemux } from './demux.ts'
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
  /** The agent this container gets (src/agent), if any: mounted read-only and started by its main process. */
  agent?: AgentInjection
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

/**
 * The PID 1 of every sandbox and its arguments. With an agent, the main process is the agent's
 * launcher: it starts the agent in the background, then becomes the keep-alive.
 */
function entrypoint(settings: ContainerSettings) {
  const agent = settings.agent ? agentContainerConfig(settings.agent, KEEP_ALIVE) : undefined
  const main = agent?.command ?? KEEP_ALIVE
  const agentBinds = agent?.binds ?? []
  if (!settings.initPath) return { Entrypoint: main, Init: true, Binds: agentBinds, Labels: agent?.labels }
  return {
    Entrypoint: ['/sbin/docker-init', '--', ...main],
    Init: false,
    Binds: [`${settings.initPath}:/sbin/docker-init:ro`, ...agentBinds],
    Labels: agent?.labels,
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
      Labels: { ...spec.labels, ...init.Labels },
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

/**
 * Starts a fresh sandbox container and waits until its keep-alive runs; a failure removes it and names
 * the likely cause. The engine's start returns once the init runs, which may then fail to start the
 * keep-alive (a credential that sets PATH, an image without `sleep`) and exit: that create is a failure,
 * not a sandbox that looks running with nothing behind it.
 */
export async function startSandboxContainer(
  container: Docker.Container,
  spec: Pick<SandboxSpec, 'image' | 'env'>,
): Promise<void> {
  try {
    await container.start()
  } catch (err) {
    await container.remove({ force: true, v: true }).catch(() => {})
    throw Errors.validation(
      'image',
      `${spec.image} cannot run a sandbox: the emulator keeps it alive with \`${KEEP_ALIVE.join(' ')}\`, ` +
        `which failed: ${dockerMessage(err)}`,
    )
  }
  const stopped = await untilKeptAlive(container)
  if (!stopped) return
  const output = await lastOutput(container)
  await container.remove({ force: true, v: true }).catch(() => {})
  const credentials = Object.keys(spec.env)
  throw Errors.validation(
    credentials.length > 0 ? 'credentials' : 'image',
    `the sandbox stopped as it started: its keep-alive \`${KEEP_ALIVE.join(' ')}\` did not run (${stopped})` +
      (output ? `; it said: ${output}` : '') +
      (credentials.length > 0
        ? `; check what the credentials (${credentials.join(', ')}) change for it (PATH, LD_*), and the image`
        : `; check that ${spec.image} has \`sleep\``),
  )
}

/** How long a new container's keep-alive may take to appear before the create is given up. */
const KEEP_ALIVE_DEADLINE_MS = 15_000

/**
 * Polls the container's processes until the keep-alive is among them (undefined), or the container has
 * stopped or never shows it (why, as text).
 */
async function untilKeptAlive(container: Docker.Container): Promise<string | undefined> {
  const wanted = KEEP_ALIVE.join(' ')
  const deadline = Date.now() + KEEP_ALIVE_DEADLINE_MS
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      const top = (await container.top()) as { Titles?: string[]; Processes?: string[][] }
      const cmd = Math.max(
        0,
        (top.Titles ?? []).findIndex((t) => /^(CMD|COMMAND)$/.test(t)),
      )
      if ((top.Processes ?? []).some((p) => (p[cmd] ?? p.join(' ')).includes(wanted))) return undefined
    } catch {
      // Not running (any more): inspect says how it ended.
    }
    const state = await container.inspect().then(
      (info) => info.State,
      () => undefined,
    )
    if (!state) return 'the container is gone'
    if (!state.Running)
      return `exit code ${state.ExitCode}${state.OOMKilled ? ', killed for lack of memory' : ''}`
    if (Date.now() > deadline) return `not running after ${KEEP_ALIVE_DEADLINE_MS / 1000} s`
    await new Promise((r) => setTimeout(r, delay))
  }
}

/** The end of what a container printed (its init's complaint, typically), on one line. */
async function lastOutput(container: Docker.Container): Promise<string> {
  try {
    const raw = (await container.logs({ stdout: true, stderr: true, tail: 5 })) as unknown as Buffer
    if (!Buffer.isBuffer(raw)) return ''
    // No TTY: the log is Docker's multiplexed stream, as exec's is.
    const demux = new BoundedDemux(4096)
    demux.push(raw)
    return Buffer.concat([demux.stdout(), demux.stderr()])
      .toString('utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .join(' / ')
      .slice(0, 500)
  } catch {
    return ''
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
