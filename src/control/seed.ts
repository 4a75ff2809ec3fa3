import { execFile } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { promisify } from 'node:util'
import { z } from 'zod'
import type { SandboxDomain } from '../sandboxes/domain.ts'
import { hashApiKey } from '../sandboxes/ids.ts'
import type { Logger } from '../sandboxes/logger.ts'
import { SHARED_OWNER } from '../sandboxes/snapshot-store.ts'

const run = promisify(execFile)

const Prepared = z.object({
  image: z.string().min(1).default('node:22-slim'),
  vcpus: z.number().int().min(1).max(64).default(1),
  mem_mib: z.number().int().min(64).default(1024),
  disk_mib: z.number().int().min(64).default(4096),
  /** Absolute path -> UTF-8 content, written before the commands run. */
  files: z.record(z.string().startsWith('/'), z.string()).default({}),
  /** Shell command lines run in order; one that exits non-zero stops the seed with its output. */
  commands: z.array(z.string().min(1)).default([]),
})

/** `--seed FILE`: sandboxes and snapshots prepared at start (and again after a reset). */
export const SeedFile = z.object({
  snapshots: z
    .array(
      Prepared.extend({
        // The name tests restore by: isorun.restore('node-with-deps').
        snapshot_id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$/, 'letters, digits, _ . - (2-64)'),
        // Owner key; without one, every key can list and restore it.
        api_key: z.string().min(1).optional(),
      }),
    )
    .default([]),
  sandboxes: z
    .array(
      Prepared.extend({
        api_key: z.string().min(1),
        timeout: z.number().min(0).default(0),
      }),
    )
    .default([]),
})
export type SeedFile = z.infer<typeof SeedFile>

export function loadSeedFile(path: string): SeedFile {
  const parsed = SeedFile.safeParse(JSON.parse(readFileSync(path, 'utf8')))
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new Error(`invalid seed file ${path}: ${issue?.path.join('.')}: ${issue?.message}`)
  }
  return parsed.data
}

/** The internal owner of the sandboxes a seed builds its snapshots in (no key hashes to it). */
const SEED_BUILDER = 'seed-builder'

/**
 * Brings the emulator to the seed state: every seeded snapshot that is missing is built (a sandbox is
 * created, given its files and commands, snapshotted under the seed's id, destroyed), and every seeded
 * sandbox is created. Snapshots already there (from an earlier start on the same data dir) are kept.
 */
export class Seeder {
  private readonly seed: SeedFile | undefined
  private readonly sandboxes: Pick<SandboxDomain, 'lifecycle' | 'guest' | 'checkpoints' | 'snapshots'>
  private readonly log: Logger

  constructor(
    seed: SeedFile | undefined,
    sandboxes: Pick<SandboxDomain, 'lifecycle' | 'guest' | 'checkpoints' | 'snapshots'>,
    log: Logger,
  ) {
    this.seed = seed
    this.sandboxes = sandboxes
    this.log = log
  }

  async apply(): Promise<{ snapshots: number; sandboxes: number }> {
    if (!this.seed) return { snapshots: 0, sandboxes: 0 }
    let snapshots = 0
    for (const spec of this.seed.snapshots) {
      if (this.sandboxes.snapshots.has(spec.snapshot_id)) continue
      const builder = await this.prepare(SEED_BUILDER, spec, 0)
      try {
        await this.sandboxes.checkpoints.snapshot(SEED_BUILDER, builder, {
          snapshotId: spec.snapshot_id,
          owner: spec.api_key ? hashApiKey(spec.api_key) : SHARED_OWNER,
        })
        snapshots++
      } finally {
        await this.sandboxes.lifecycle.destroy(SEED_BUILDER, builder)
      }
    }
    for (const spec of this.seed.sandboxes) await this.prepare(hashApiKey(spec.api_key), spec, spec.timeout)
    const done = { snapshots, sandboxes: this.seed.sandboxes.length }
    this.log.info(done, 'seed applied')
    return done
  }

  private async prepare(owner: string, spec: z.infer<typeof Prepared>, timeoutSec: number): Promise<string> {
    const s = await this.sandboxes.lifecycle.create(owner, {
      image: spec.image,
      vcpus: spec.vcpus,
      memMib: spec.mem_mib,
      diskMib: spec.disk_mib,
      timeoutSec,
      credentials: {},
    })
    for (const [path, content] of Object.entries(spec.files)) {
      const bytes = Buffer.from(content, 'utf8')
      await this.sandboxes.guest.writeFile(owner, s.id, path, bytes.length, Readable.from([bytes]))
    }
    for (const command of spec.commands) {
      const r = await this.sandboxes.guest.exec(owner, s.id, command, 600)
      if (r.exitCode !== 0) {
        await this.sandboxes.lifecycle.destroy(owner, s.id).catch(() => {})
        throw new Error(
          `seed command failed (exit ${r.exitCode}): ${command}\n${(r.stderr.length > 0 ? r.stderr : r.stdout).toString('utf8')}`,
        )
      }
    }
    return s.id
  }
}

/**
 * `--init DIR`: once the emulator is ready, runs each file in DIR in name order (executables directly,
 * `*.sh` through sh), with ISORUN_API_URL and ISORUN_API_KEY set. A failing script is logged, not fatal.
 */
export async function runInitScripts(dir: string, env: Record<string, string>, log: Logger): Promise<void> {
  for (const name of readdirSync(dir).sort()) {
    const file = join(dir, name)
    const st = statSync(file)
    if (!st.isFile()) continue
    const executable = (st.mode & 0o111) !== 0
    if (!executable && !name.endsWith('.sh')) continue
    const [cmd, args] = executable ? [file, []] : ['sh', [file]]
    try {
      const { stdout } = await run(cmd, args, { env: { ...process.env, ...env }, timeout: 10 * 60_000 })
      log.info({ script: name, stdout: stdout.slice(-2000) }, 'init script done')
    } catch (err) {
      log.error({ script: name, err }, 'init script failed')
    }
  }
}
