import type { Readable } from 'node:stream'
import { Errors } from '../errors.ts'
import type { Clock } from './clock.ts'
import type { FileDownload, SandboxEngine } from './engine.ts'
import type { SandboxEvents } from './events.ts'
import { exitedError, type SandboxRegistry } from './registry.ts'
import type { Sandbox } from './sandbox.ts'

/** What a command printed, as bytes (the wire decodes them as UTF-8). */
export interface ExecResult {
  exitCode: number
  stdout: Buffer
  /** The command's stderr, followed by the emulator's notes (truncation, timeout). */
  stderr: Buffer
}

export interface GuestOperationsOptions {
  engine: SandboxEngine
  clock: Clock
  events: SandboxEvents
  registry: SandboxRegistry
  /** Bytes of stdout and of stderr an exec keeps. */
  execOutputLimit: number
}

/** What runs inside a sandbox on the caller's behalf: commands, and its files. */
export class GuestOperations {
  private readonly opts: GuestOperationsOptions

  constructor(opts: GuestOperationsOptions) {
    this.opts = opts
  }

  async exec(owner: string, id: string, command: string, timeoutSec: number): Promise<ExecResult> {
    const { events, clock } = this.opts
    return this.withActivity(owner, id, async (s) => {
      const started = clock.now()
      events.emit('exec.start', s, { command, timeoutSec })
      const out = await this.opts.engine.exec(s.containerId, {
        command,
        timeoutMs: Math.round(timeoutSec * 1000),
        outputLimit: this.opts.execOutputLimit,
      })
      let notes = ''
      const limit = this.opts.execOutputLimit
      if (out.stdoutTruncated) notes += `\n[isorun-emulator: stdout truncated to its first ${limit} bytes]\n`
      if (out.stderrTruncated) notes += `\n[isorun-emulator: stderr truncated to its first ${limit} bytes]\n`
      if (out.timedOut)
        notes += `\n[isorun-emulator: command timed out after ${timeoutSec}s and was killed]\n`
      const stderr = notes ? Buffer.concat([out.stderr, Buffer.from(notes)]) : out.stderr
      events.emit('exec.end', s, {
        exitCode: out.exitCode,
        timedOut: out.timedOut,
        durationMs: clock.now() - started,
        stdoutBytes: out.stdout.length,
        stderrBytes: out.stderr.length,
      })
      return { exitCode: out.exitCode, stdout: out.stdout, stderr }
    })
  }

  async writeFile(owner: string, id: string, path: string, size: number, content: Readable): Promise<void> {
    await this.withActivity(owner, id, async (s) => {
      await this.opts.engine.writeFile(s.containerId, path, size, content)
      this.opts.events.emit('file.write', s, { path, size })
    })
  }

  async readFile(owner: string, id: string, path: string): Promise<FileDownload> {
    return this.withActivity(owner, id, (s) => this.opts.engine.readFile(s.containerId, path))
  }

  async listDir(owner: string, id: string, path: string): Promise<string[]> {
    return this.withActivity(owner, id, (s) => this.opts.engine.listDir(s.containerId, path))
  }

  /** How exec and files reach the sandbox now (see SandboxEngine.execTransport); not activity. */
  execTransport(owner: string, id: string): { transport: string; reason: string } {
    const s = this.opts.registry.get(owner, id)
    return (
      this.opts.engine.execTransport?.(s.containerId) ?? {
        transport: 'engine',
        reason: 'the engine has no agent',
      }
    )
  }

  /**
   * Runs an exec or file operation: it waits while a lifecycle operation (a checkpoint's pause, say) is
   * under way, refuses a hibernated sandbox (409: resume it first), counts as activity, and keeps the
   * sandbox from going idle while it runs.
   */
  private async withActivity<T>(owner: string, id: string, op: (s: Sandbox) => Promise<T>): Promise<T> {
    const { registry } = this.opts
    if (registry.locks.busy(id)) await registry.locks.idle(id)
    const s = registry.touch(owner, id)
    if (s.status === 'destroying') throw Errors.conflict(`sandbox ${id} is being destroyed`, { id })
    if (s.status === 'hibernated') {
      throw Errors.conflict(`sandbox ${id} is hibernated; resume it first`, { id, status: s.status })
    }
    if (s.status === 'exited') throw exitedError(s)
    s.inFlight++
    try {
      return await op(s)
    } finally {
      s.inFlight--
      if (registry.isLive(s) && s.status === 'running') registry.touch(owner, id)
    }
  }
}
