import type { Clock } from './clock.ts'
import type { ContainerExit, SandboxEngine, StopWatch } from './engine.ts'
import type { SandboxEvents } from './events.ts'
import { type InstanceIdentity, LABEL } from './labels.ts'
import type { Logger } from './logger.ts'
import type { SandboxRegistry } from './registry.ts'
import type { Sandbox } from './sandbox.ts'

export interface SandboxExitsOptions {
  engine: SandboxEngine
  clock: Clock
  identity: InstanceIdentity
  log: Logger
  events: SandboxEvents
  registry: SandboxRegistry
}

/** How many stops of containers without a sandbox are remembered (see `unclaimed`). */
const UNCLAIMED_KEPT = 256

/**
 * Sandboxes whose container stopped without the emulator asking: the guest ended its main process, the
 * OOM killer did, someone ran `docker stop`. The engine reports every stop of this instance's containers;
 * one the lifecycle caused (hibernate checkpoints with exit, destroy removes) is told apart by waiting
 * for the lifecycle operation under way, then reading the sandbox's status and asking the engine whether
 * the container really is down. A dead sandbox is `exited`: it stops being billed, its address is
 * forgotten (the engine hands it to the next container), and it refuses work (409) until destroyed.
 */
export class SandboxExits {
  private readonly opts: SandboxExitsOptions
  private watch: StopWatch | undefined
  /**
   * Stops of containers no sandbox had when they were reported, newest last: a warm-pool container, or
   * one that died between its create and its sandbox's registration. A sandbox that gets one is checked.
   */
  private readonly unclaimed = new Set<string>()
  private readonly unsubscribe: () => void

  constructor(opts: SandboxExitsOptions) {
    this.opts = opts
    this.unsubscribe = opts.events.on((e) => {
      if (e.event !== 'sandbox.created' && e.event !== 'sandbox.restored') return
      if (!this.unclaimed.delete(e.sandbox.containerId)) return
      this.checkReported(e.sandbox.containerId)
    })
  }

  /** Whether the engine's stops are being followed right now. */
  get following(): boolean {
    return this.watch?.connected === true
  }

  start(): void {
    this.watch ??= this.opts.engine.watchStops({ [LABEL.instance]: this.opts.identity.instanceId }, (id) =>
      this.checkReported(id),
    )
  }

  close(): void {
    this.unsubscribe()
    this.watch?.close()
    this.watch = undefined
  }

  private checkReported(containerId: string): void {
    if (!this.opts.registry.all().some((s) => s.containerId === containerId)) {
      this.unclaimed.delete(containerId)
      this.unclaimed.add(containerId)
      if (this.unclaimed.size > UNCLAIMED_KEPT)
        this.unclaimed.delete(this.unclaimed.values().next().value as string)
      return
    }
    this.check(containerId).catch((err) =>
      this.opts.log.error({ containerId, err }, 'could not check a stopped container'),
    )
  }

  /** A container stopped: if it is a running sandbox's and really is down, that sandbox has exited. */
  async check(containerId: string): Promise<void> {
    const { registry, engine } = this.opts
    const s = registry.all().find((x) => x.containerId === containerId)
    if (!s) return
    if (registry.locks.busy(s.id)) await registry.locks.idle(s.id)
    if (!registry.isLive(s) || s.status !== 'running') return
    const exit = await engine.exitState(containerId)
    if (!exit || !registry.isLive(s) || s.status !== 'running') return
    this.markExited(s, exit)
  }

  markExited(s: Sandbox, exit: ContainerExit): void {
    const at = this.opts.clock.now()
    s.status = 'exited'
    s.exit = { reason: exit.oomKilled ? 'oom' : 'exited', exitCode: exit.exitCode, at }
    this.opts.registry.save(s)
    this.opts.log.warn(
      { runId: s.id, containerId: s.containerId, ...s.exit },
      exit.oomKilled
        ? 'sandbox exited: the OOM killer ended its main process'
        : 'sandbox exited: its main process ended',
    )
    this.opts.events.emit('sandbox.exited', s, { reason: s.exit.reason, exitCode: exit.exitCode })
  }
}
