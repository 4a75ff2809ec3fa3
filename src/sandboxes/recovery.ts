import { existsSync } from 'node:fs'
import type { Clock } from './clock.ts'
import type { EgressEnforcer } from './egress-enforcer.ts'
import type { ManagedSandbox, SandboxEngine } from './engine.ts'
import { sameFilesystemView } from './fs-view.ts'
import { type InstanceIdentity, LABEL } from './labels.ts'
import { secretsOf } from './lifecycle.ts'
import type { Logger } from './logger.ts'
import type { SandboxRegistry } from './registry.ts'
import type { Sandbox } from './sandbox.ts'
import type { PersistedSandbox, SandboxStateStore } from './state-store.ts'

export interface RecoveryDeps {
  engine: SandboxEngine
  clock: Clock
  identity: InstanceIdentity
  log: Logger
  registry: SandboxRegistry
  records: SandboxStateStore
  egressEnforcer?: EgressEnforcer
}

/**
 * At start: rebuilds the sandboxes this instance (same data dir) left behind from their records and
 * containers, and reaps what cannot be rebuilt (a create or destroy cut short, a warm-pool container, a
 * sandbox of an emulator whose data dir is gone for good).
 */
export async function recoverSandboxes(deps: RecoveryDeps): Promise<{ adopted: number; reaped: number }> {
  const { engine, log, registry, records } = deps
  const found = await engine.listManaged({ [LABEL.app]: '1' })
  const saved = records.byContainer()
  let adopted = 0
  let reaped = 0
  for (const c of found) {
    if (c.labels[LABEL.instance] !== deps.identity.instanceId) {
      // Another emulator's sandbox: leave it alone, unless that emulator's data dir is gone for good
      // (a test run's temporary dir, say), in which case nothing can ever adopt it. Only an emulator
      // that sees the same files can tell (not one in a container, for the host's): see fs-view.ts.
      const dir = c.labels[LABEL.dataDir]
      if (dir && sameFilesystemView(c.labels) && !existsSync(dir)) {
        await engine.remove(c.containerId)
        reaped++
        log.warn(
          { containerId: c.containerId, dataDir: dir },
          'reaped a sandbox whose emulator data dir is gone',
        )
      }
      continue
    }
    const sandbox = await rebuild(deps, c, saved.get(c.containerId))
    if (!sandbox) {
      await engine.remove(c.containerId)
      reaped++
      log.warn(
        { containerId: c.containerId, runId: c.labels[LABEL.runId], state: c.state },
        c.labels[LABEL.pool]
          ? 'reaped a warm-pool container left by the previous run'
          : 'reaped a container this emulator created but no longer knows (create or destroy cut short)',
      )
      continue
    }
    // Idle timers carry on from the last recorded activity, not from the restart.
    registry.add(sandbox)
    adopted++
    log.info(
      { runId: sandbox.id, containerId: c.containerId, status: sandbox.status },
      'adopted sandbox after restart',
    )
  }
  for (const id of records.ids()) {
    if (registry.has(id)) continue
    records.delete(id)
    log.warn(
      { runId: id },
      'a sandbox recorded in the data dir has no container any more (removed outside the emulator)',
    )
  }
  // Adopted sandboxes with a policy need their proxy back; until it is, they reach nothing (fail closed).
  if (deps.egressEnforcer && registry.all().some((s) => s.egress)) {
    await deps.egressEnforcer
      .prepare()
      .catch((err) => log.error({ err }, 'egress proxy not restored: sandboxes with a policy reach nothing'))
  }
  return { adopted, reaped }
}

/** A sandbox from its record, checked against its container; undefined when it has none. */
async function rebuild(
  deps: RecoveryDeps,
  c: ManagedSandbox,
  saved: PersistedSandbox | undefined,
): Promise<Sandbox | undefined> {
  if (!saved) return undefined
  const sandbox: Sandbox = { ...saved, inFlight: 0, secrets: [] }
  sandbox.secrets = await secretsOf(deps.engine, c.containerId, saved.credentialNames)
  if (c.state === 'stopped') {
    // Its container stopped on its own, before or while the emulator was down: it stays, exited.
    sandbox.status = 'exited'
    if (!saved.exit) {
      const exit = await deps.engine.exitState(c.containerId).catch(() => undefined)
      sandbox.exit = {
        reason: exit?.oomKilled ? 'oom' : 'exited',
        exitCode: exit?.exitCode,
        at: deps.clock.now(),
      }
    }
  } else if (c.state === 'hibernated') {
    // The container says hibernated even if the emulator died before recording it.
    sandbox.status = 'hibernated'
    sandbox.hibernatedAt = saved.hibernatedAt ?? deps.clock.now()
    sandbox.hibernation = saved.hibernation ?? (deps.engine.memorySupport().available ? 'memory' : 'pause')
  } else {
    sandbox.exit = undefined
    sandbox.status = 'running'
    sandbox.hibernatedAt = undefined
    sandbox.hibernation = undefined
  }
  return sandbox
}
