import { existsSync } from 'node:fs'
import type { Readable } from 'node:stream'
import type { PricingConfig } from '../config.ts'
import { Errors } from '../errors.ts'
import { GuestAddresses } from './addresses.ts'
import { costCents } from './billing.ts'
import type { Clock } from './clock.ts'
import type { FileDownload, SandboxEngine } from './engine.ts'
import { type SandboxEventName, SandboxEvents } from './events.ts'
import { newRunId } from './ids.ts'
import { type InstanceIdentity, LABEL, sandboxFromLabels, sandboxLabels } from './labels.ts'
import type { Sandbox } from './sandbox.ts'

/** The structured logger the domain writes to (pino's shape; the app passes Fastify's logger). */
export interface Logger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
  debug(obj: object, msg?: string): void
}

export interface CreateInput {
  image: string
  vcpus: number
  memMib: number
  diskMib: number
  timeoutSec: number
  credentials: Record<string, string>
}

export interface DestroyResult {
  status: 'destroyed'
  cpu_ms: number
  mem_peak_bytes: number
  uptime_ms: number
  cost_cents: number
}

export interface ExecResult {
  exit_code: number
  stdout: string
  stderr: string
}

export type DestroyReason = 'api' | 'idle_timeout'

/** What url(port) needs to reach a sandbox's own ports. */
export interface ProxyTarget {
  sandbox: Sandbox
  /** The sandbox's address on the engine's network. */
  address: string
}

/** Proxy traffic re-arms the idle timer at most this often (it arrives per request and per chunk). */
const PROXY_ACTIVITY_GRANULARITY_MS = 1000

export interface SandboxServiceOptions {
  engine: SandboxEngine
  clock: Clock
  pricing: PricingConfig
  identity: InstanceIdentity
  logger: Logger
  execOutputLimit: number
}

/**
 * The sandbox lifecycle: create, exec, files, idle timeout, destroy, for the sandboxes of each API key.
 * Knows nothing of HTTP or Docker; talks to the engine through the SandboxEngine port.
 */
export class SandboxService {
  private readonly sandboxes = new Map<string, Sandbox>()
  private readonly idleTimers = new Map<string, () => void>()
  private readonly opts: SandboxServiceOptions
  readonly events = new SandboxEvents()
  private readonly addresses: GuestAddresses
  private readonly proxiedPorts = new WeakMap<Sandbox, Set<number>>()

  constructor(opts: SandboxServiceOptions) {
    this.opts = opts
    this.addresses = new GuestAddresses(opts.engine, this.events)
  }

  get identity(): InstanceIdentity {
    return this.opts.identity
  }

  private get engine(): SandboxEngine {
    return this.opts.engine
  }

  private get log(): Logger {
    return this.opts.logger
  }

  /** Rebuilds the sandboxes this instance (same data dir) left running; reaps what cannot be rebuilt. */
  async recover(): Promise<{ adopted: number; reaped: number }> {
    const { instanceId } = this.opts.identity
    const found = await this.engine.listManaged({ [LABEL.app]: '1' })
    let adopted = 0
    let reaped = 0
    for (const c of found) {
      if (c.labels[LABEL.instance] !== instanceId) {
        // Another emulator's sandbox: leave it alone, unless that emulator's data dir is gone for good
        // (a test run's temporary dir, say), in which case nothing can ever adopt it.
        const dir = c.labels[LABEL.dataDir]
        if (dir && !existsSync(dir)) {
          await this.engine.remove(c.containerId)
          reaped++
          this.log.warn(
            { containerId: c.containerId, dataDir: dir },
            'reaped a sandbox whose emulator data dir is gone',
          )
        }
        continue
      }
      const sandbox =
        c.state === 'running' ? sandboxFromLabels(c.containerId, c.labels, this.opts.clock.now()) : undefined
      if (sandbox) {
        this.sandboxes.set(sandbox.id, sandbox)
        this.armIdleTimer(sandbox)
        adopted++
        this.log.info({ runId: sandbox.id, containerId: c.containerId }, 'adopted sandbox after restart')
      } else {
        await this.engine.remove(c.containerId)
        reaped++
        this.log.warn(
          { containerId: c.containerId, state: c.state },
          'reaped a container that cannot be rebuilt',
        )
      }
    }
    return { adopted, reaped }
  }

  async create(owner: string, input: CreateInput): Promise<Sandbox> {
    const { clock, identity } = this.opts
    await this.engine.ensureImage(input.image)
    const started = clock.now()
    const base: Omit<Sandbox, 'containerId'> = {
      id: newRunId(),
      owner,
      image: input.image,
      vcpus: input.vcpus,
      memMib: input.memMib,
      diskMib: input.diskMib,
      timeoutSec: input.timeoutSec,
      status: 'running',
      createdAt: started,
      createMs: 0,
      lastActivityAt: started,
      inFlight: 0,
    }
    const containerId = await this.engine.create({
      runId: base.id,
      image: base.image,
      vcpus: base.vcpus,
      memMib: base.memMib,
      diskMib: base.diskMib,
      env: input.credentials,
      labels: sandboxLabels(identity, base),
    })
    const createdAt = clock.now()
    const sandbox: Sandbox = {
      ...base,
      containerId,
      createMs: createdAt - started,
      lastActivityAt: createdAt,
    }
    this.sandboxes.set(sandbox.id, sandbox)
    this.armIdleTimer(sandbox)
    this.log.info(
      { runId: sandbox.id, containerId, image: sandbox.image, createMs: sandbox.createMs },
      'sandbox created',
    )
    this.emit('sandbox.created', sandbox, {
      image: sandbox.image,
      vcpus: sandbox.vcpus,
      mem_mib: sandbox.memMib,
      disk_mib: sandbox.diskMib,
      timeout: sandbox.timeoutSec,
      // Names only: credential values never leave the sandbox's environment.
      credentials: Object.keys(input.credentials),
    })
    return sandbox
  }

  list(owner: string): Sandbox[] {
    return [...this.sandboxes.values()].filter((s) => s.owner === owner && s.status !== 'destroying')
  }

  /** The caller's sandbox; another key's sandbox is indistinguishable from a missing one (404). */
  get(owner: string, id: string): Sandbox {
    const s = this.sandboxes.get(id)
    if (!s || s.owner !== owner) throw Errors.runNotFound(id)
    return s
  }

  /** Marks API activity on a sandbox, which restarts its idle timer. */
  touch(owner: string, id: string): Sandbox {
    const s = this.get(owner, id)
    s.lastActivityAt = this.opts.clock.now()
    this.armIdleTimer(s)
    return s
  }

  setTimeout(owner: string, id: string, timeoutSec: number): Sandbox {
    const s = this.get(owner, id)
    s.timeoutSec = timeoutSec
    this.emit('timeout.set', s, { timeout: timeoutSec })
    return this.touch(owner, id)
  }

  async destroy(owner: string, id: string, reason: DestroyReason = 'api'): Promise<DestroyResult> {
    const s = this.get(owner, id)
    if (s.status === 'destroying') throw Errors.conflict(`sandbox ${id} is already being destroyed`, { id })
    s.status = 'destroying'
    this.cancelIdleTimer(id)
    const log = { runId: id, containerId: s.containerId, reason }
    let usage = { cpuMs: 0, memPeakBytes: 0 }
    try {
      usage = await this.engine.usage(s.containerId)
    } catch (err) {
      this.log.warn({ ...log, err }, 'could not read resource usage before destroy; reporting zero')
    }
    try {
      await this.engine.remove(s.containerId)
    } catch (err) {
      s.status = 'running'
      this.armIdleTimer(s)
      throw err
    }
    this.sandboxes.delete(id)
    const uptimeMs = Math.max(0, this.opts.clock.now() - s.createdAt)
    const result: DestroyResult = {
      status: 'destroyed',
      cpu_ms: usage.cpuMs,
      mem_peak_bytes: usage.memPeakBytes,
      uptime_ms: uptimeMs,
      cost_cents: costCents(this.opts.pricing, s.vcpus, s.memMib, uptimeMs),
    }
    this.log.info({ ...log, ...result }, 'sandbox destroyed')
    this.emit('sandbox.destroyed', s, { reason, ...result })
    return result
  }

  async exec(owner: string, id: string, command: string, timeoutSec: number): Promise<ExecResult> {
    return this.withActivity(owner, id, async (s) => {
      const started = this.opts.clock.now()
      this.emit('exec.start', s, { command, timeout: timeoutSec })
      const out = await this.engine.exec(s.containerId, {
        command,
        timeoutMs: Math.round(timeoutSec * 1000),
        outputLimit: this.opts.execOutputLimit,
      })
      let stderr = out.stderr.toString('utf8')
      const limit = this.opts.execOutputLimit
      if (out.stdoutTruncated) stderr += `\n[isorun-emulator: stdout truncated to its first ${limit} bytes]\n`
      if (out.stderrTruncated) stderr += `\n[isorun-emulator: stderr truncated to its first ${limit} bytes]\n`
      if (out.timedOut)
        stderr += `\n[isorun-emulator: command timed out after ${timeoutSec}s and was killed]\n`
      this.emit('exec.end', s, {
        exit_code: out.exitCode,
        timed_out: out.timedOut,
        duration_ms: this.opts.clock.now() - started,
        stdout_bytes: out.stdout.length,
        stderr_bytes: out.stderr.length,
      })
      return { exit_code: out.exitCode, stdout: out.stdout.toString('utf8'), stderr }
    })
  }

  async writeFile(owner: string, id: string, path: string, size: number, content: Readable): Promise<void> {
    await this.withActivity(owner, id, async (s) => {
      await this.engine.writeFile(s.containerId, path, size, content)
      this.emit('file.write', s, { path, size })
    })
  }

  async readFile(owner: string, id: string, path: string): Promise<FileDownload> {
    return this.withActivity(owner, id, (s) => this.engine.readFile(s.containerId, path))
  }

  async listDir(owner: string, id: string, path: string): Promise<string[]> {
    return this.withActivity(owner, id, (s) => this.engine.listDir(s.containerId, path))
  }

  /**
   * A sandbox by id alone, whoever owns it, for url(port): that URL embeds the unguessable run id and is
   * itself the credential. Only a running sandbox has ports to reach.
   */
  async proxyTarget(id: string): Promise<ProxyTarget> {
    const s = this.sandboxes.get(id)
    if (!s) throw Errors.runNotFound(id)
    if (s.status !== 'running') {
      throw Errors.conflict(
        `sandbox ${id} is ${s.status === 'destroying' ? 'being destroyed' : s.status}, not running: its ports cannot be reached`,
        { id, status: s.status },
      )
    }
    return { sandbox: s, address: await this.addresses.get(s.containerId) }
  }

  /** The guest answered on `port`: the first time per sandbox and port is a 'proxy.opened' event. */
  noteProxyOpened(s: Sandbox, port: number): void {
    let ports = this.proxiedPorts.get(s)
    if (!ports) {
      ports = new Set()
      this.proxiedPorts.set(s, ports)
    }
    if (ports.has(port)) return
    ports.add(port)
    this.emit('proxy.opened', s, { port })
  }

  /**
   * Proxy traffic is activity. Called per request and per streamed chunk, so it only re-arms the idle
   * timer when a second has passed since the last activity (the timeout then fires at most that early).
   */
  noteProxyActivity(s: Sandbox): void {
    const now = this.opts.clock.now()
    if (now - s.lastActivityAt < PROXY_ACTIVITY_GRANULARITY_MS) return
    if (s.status !== 'running' || this.sandboxes.get(s.id) !== s) return
    s.lastActivityAt = now
    this.armIdleTimer(s)
  }

  /** Stops the idle timers; sandboxes keep running and are adopted by the next start. */
  close(): void {
    for (const cancel of this.idleTimers.values()) cancel()
    this.idleTimers.clear()
  }

  private emit(event: SandboxEventName, sandbox: Sandbox, data: Record<string, unknown> = {}): void {
    this.events.emit({ event, sandbox, at: this.opts.clock.now(), data }, (err) =>
      this.log.error({ runId: sandbox.id, event, err }, 'sandbox event listener failed'),
    )
  }

  /** Runs an operation on a running sandbox; it counts as activity and the sandbox is never idle meanwhile. */
  private async withActivity<T>(owner: string, id: string, op: (s: Sandbox) => Promise<T>): Promise<T> {
    const s = this.touch(owner, id)
    if (s.status === 'destroying') throw Errors.conflict(`sandbox ${id} is being destroyed`, { id })
    s.inFlight++
    try {
      return await op(s)
    } finally {
      s.inFlight--
      if (this.sandboxes.get(id) === s && s.status === 'running') this.touch(owner, id)
    }
  }

  private armIdleTimer(s: Sandbox): void {
    this.cancelIdleTimer(s.id)
    if (s.timeoutSec <= 0) return
    const { clock } = this.opts
    const due = s.lastActivityAt + s.timeoutSec * 1000
    this.idleTimers.set(
      s.id,
      clock.schedule(Math.max(0, due - clock.now()), () => this.onIdle(s)),
    )
  }

  private cancelIdleTimer(id: string): void {
    this.idleTimers.get(id)?.()
    this.idleTimers.delete(id)
  }

  private onIdle(s: Sandbox): void {
    this.idleTimers.delete(s.id)
    if (this.sandboxes.get(s.id) !== s || s.status !== 'running') return
    // An operation still running keeps the sandbox alive; its end re-arms the timer.
    if (s.inFlight > 0) return
    this.log.info(
      { runId: s.id, containerId: s.containerId, timeoutSec: s.timeoutSec },
      'idle timeout reached',
    )
    this.destroy(s.owner, s.id, 'idle_timeout').catch((err) =>
      this.log.error({ runId: s.id, containerId: s.containerId, err }, 'idle destroy failed'),
    )
  }
}
