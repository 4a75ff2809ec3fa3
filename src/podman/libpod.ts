import { type IncomingMessage, request } from 'node:http'
import type { Readable } from 'node:stream'
import type { PodmanEndpoint } from './endpoint.ts'

/** libpod's API version the emulator speaks (Podman 4.0 and later serve it). */
const API = '/v4.0.0/libpod'

/** An error shaped like dockerode's, so the shared translation (docker/errors.ts) applies to both. */
export class LibpodError extends Error {
  readonly statusCode: number
  readonly json: { message?: string; cause?: string } | null

  constructor(statusCode: number, json: { message?: string; cause?: string } | null, fallback: string) {
    super(json?.message ?? fallback)
    this.name = 'LibpodError'
    this.statusCode = statusCode
    this.json = json
  }
}

export interface ContainerState {
  Status: string
  Running: boolean
  Paused: boolean
  /** Stopped by a checkpoint whose files Podman keeps for an in-place restore. */
  Checkpointed?: boolean
  CgroupPath?: string
}

export interface LibpodInfo {
  host: {
    ociRuntime?: { name?: string }
    cgroupManager?: string
    cgroupVersion?: string
    cpus?: number
    memTotal?: number
    kernel?: string
    distribution?: { distribution?: string; version?: string }
    security?: { rootless?: boolean }
    networkBackend?: string
  }
  store: { graphDriverName?: string; graphRoot?: string; graphStatus?: Record<string, string> }
  version: { Version: string; APIVersion: string }
}

/**
 * The few libpod endpoints the Docker-compatible API has no equivalent for: checkpoint and restore
 * (their archives travel in the request and response bodies, so nothing touches the engine's files),
 * inspect's checkpoint state, and info.
 */
export class Libpod {
  private readonly endpoint: PodmanEndpoint

  constructor(endpoint: PodmanEndpoint) {
    this.endpoint = endpoint
  }

  async info(): Promise<LibpodInfo> {
    return this.json('GET', '/info')
  }

  async state(containerId: string): Promise<ContainerState> {
    const info = await this.json<{ State: ContainerState }>('GET', `/containers/${enc(containerId)}/json`)
    return info.State
  }

  /** Checkpoints a container in place: it stops, and Podman keeps the checkpoint to restore it from. */
  async checkpoint(containerId: string): Promise<void> {
    await this.json('POST', `/containers/${enc(containerId)}/checkpoint`)
  }

  /**
   * Checkpoints a container and answers with the checkpoint archive (a tar). `leaveRunning` keeps the
   * container running; otherwise it stops, and `keep` leaves Podman's own copy for an in-place restore.
   */
  async exportCheckpoint(
    containerId: string,
    opts: { leaveRunning: boolean; keep: boolean },
  ): Promise<IncomingMessage> {
    const res = await this.send('POST', `/containers/${enc(containerId)}/checkpoint`, {
      export: 'true',
      leaveRunning: String(opts.leaveRunning),
      keep: String(opts.keep),
    })
    if (res.statusCode !== 200) throw await errorOf(res)
    return res
  }

  /** Restores a checkpointed container in place (same id); Podman's copy of the checkpoint is dropped. */
  async restore(containerId: string): Promise<void> {
    await this.json('POST', `/containers/${enc(containerId)}/restore`)
  }

  /**
   * Creates and starts a new container named `name` from a checkpoint archive sent as the body, with a
   * new IP and MAC (the archive's belong to its parent, which may still run); returns its id.
   */
  async importCheckpoint(name: string, archive: Readable): Promise<string> {
    const res = await this.send(
      'POST',
      '/containers/import/restore',
      {
        import: 'true',
        name,
        ignoreStaticIP: 'true',
        ignoreStaticMAC: 'true',
        // The archive carries no file-system changes: the container starts from the snapshot's image.
        ignoreRootfs: 'true',
      },
      archive,
    )
    const body = await readJson<{ Id?: string }>(res)
    if (res.statusCode !== 200 || !body?.Id) throw errorFrom(res.statusCode ?? 0, body)
    return body.Id
  }

  /** Creates a network (libpod's create, which names the bridge: the compatible one ignores that). */
  async createNetwork(spec: {
    name: string
    networkInterface: string
    internal: boolean
    labels: Record<string, string>
  }): Promise<void> {
    const body = Buffer.from(
      JSON.stringify({
        name: spec.name,
        driver: 'bridge',
        network_interface: spec.networkInterface,
        internal: spec.internal,
        dns_enabled: false,
        labels: spec.labels,
      }),
    )
    await this.json('POST', '/networks/create', {}, body)
  }

  private async json<T>(
    method: string,
    path: string,
    query: Record<string, string> = {},
    payload?: Buffer,
  ): Promise<T> {
    const res = await this.send(method, path, query, payload)
    const body = await readJson<T>(res)
    if ((res.statusCode ?? 0) >= 300) throw errorFrom(res.statusCode ?? 0, body)
    return body as T
  }

  private send(
    method: string,
    path: string,
    query: Record<string, string>,
    body?: Readable | Buffer,
  ): Promise<IncomingMessage> {
    const qs = new URLSearchParams(query).toString()
    const target =
      this.endpoint.kind === 'unix'
        ? { socketPath: this.endpoint.socketPath }
        : { host: this.endpoint.host, port: this.endpoint.port }
    return new Promise((resolve, reject) => {
      const req = request(
        {
          ...target,
          method,
          path: `${API}${path}${qs ? `?${qs}` : ''}`,
          headers: body
            ? { 'content-type': Buffer.isBuffer(body) ? 'application/json' : 'application/x-tar' }
            : {},
        },
        resolve,
      )
      req.once('error', reject)
      if (!body || Buffer.isBuffer(body)) {
        req.end(body)
        return
      }
      body.once('error', (err) => req.destroy(err))
      body.pipe(req)
    })
  }
}

function enc(id: string): string {
  return encodeURIComponent(id)
}

async function readJson<T>(res: IncomingMessage): Promise<T | null> {
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString('utf8')
  if (!text) return null
  try {
    return JSON.parse(text) as T
  } catch {
    return { message: text.trim() } as T
  }
}

function errorFrom(status: number, body: unknown): LibpodError {
  const json = (body ?? null) as { message?: string; cause?: string } | null
  return new LibpodError(status, json, `podman answered ${status}`)
}

async function errorOf(res: IncomingMessage): Promise<LibpodError> {
  return errorFrom(res.statusCode ?? 0, await readJson(res))
}
