import { createHash } from 'node:crypto'
import { access, chmod, copyFile, mkdir, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'

/** Where agent/build.sh puts the binary it builds (the same from src/ and from dist/). */
export const AGENT_BINARY = join(import.meta.dirname, '..', '..', 'agent', 'build', 'isorun-agent')

export interface AgentBinary {
  /** The host file sandboxes get mounted, named by its content. */
  path: string
  /** The first 12 hex digits of its sha256: which build a sandbox (or a snapshot of one) runs. */
  version: string
}

/**
 * Copies the built agent into `dir` under a name of its content, once. A sandbox's processes map the
 * agent's file, and a checkpoint restores only next to the very file it was taken with, so each build
 * keeps its own file: rebuilding the agent never breaks a sandbox's or a snapshot's agent.
 */
export async function installAgentBinary(dir: string, built = AGENT_BINARY): Promise<AgentBinary> {
  const bytes = await readFile(built)
  const version = createHash('sha256').update(bytes).digest('hex').slice(0, 12)
  const path = join(dir, `isorun-agent-${version}`)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  if (
    await access(path).then(
      () => true,
      () => false,
    )
  )
    return { path, version }
  const staged = `${path}.${process.pid}.tmp`
  await copyFile(built, staged)
  await chmod(staged, 0o755)
  await rename(staged, path)
  return { path, version }
}

/** The installed file of an earlier build, by its version. */
export function agentBinaryPath(dir: string, version: string): string {
  return join(dir, `isorun-agent-${version}`)
}
