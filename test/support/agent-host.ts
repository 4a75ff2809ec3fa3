import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AGENT_BINARY } from '../../src/agent/agent-binary.ts'
import { AgentChannel } from '../../src/agent/agent-channel.ts'

export const agentBuilt = existsSync(AGENT_BINARY)

export interface HostAgent {
  channel: AgentChannel
  dir: string
  socketPath: string
  process: ChildProcess
  /** Waits for the agent's first spare connection. */
  ready(): Promise<void>
  stop(): Promise<void>
}

/**
 * isorun-agent run on this machine (`serve`, in the foreground) against an AgentChannel on a socket in
 * a temp dir: the agent and the emulator's half of the protocol, tested without Docker.
 */
export async function startHostAgent(env: Record<string, string> = {}): Promise<HostAgent> {
  const dir = mkdtempSync(join(tmpdir(), 'isorun-agent-test-'))
  const socketPath = join(dir, 'agent.sock')
  const channel = new AgentChannel(socketPath)
  await channel.listen()
  const child = spawn(AGENT_BINARY, ['serve', socketPath], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const agent: HostAgent = {
    channel,
    dir,
    socketPath,
    process: child,
    // A channel replaced by the test is the one waited for (hence `this`); 20 s for a busy machine.
    async ready(this: HostAgent) {
      const deadline = Date.now() + 20_000
      while (Date.now() < deadline && !this.channel.connected()) await new Promise((r) => setTimeout(r, 10))
      if (!this.channel.connected()) throw new Error('the agent did not connect')
    },
    async stop(this: HostAgent) {
      child.kill('SIGKILL')
      await this.channel.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return agent
}
