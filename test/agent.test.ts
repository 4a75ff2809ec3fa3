import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AgentChannel } from '../src/agent/agent-channel.ts'
import {
  AgentLostError,
  execViaAgent,
  listDirViaAgent,
  readFileViaAgent,
  writeFileViaAgent,
} from '../src/agent/agent-ops.ts'
import { frame, ID_LENGTH, Msg, PROTOCOL_VERSION, Req } from '../src/agent/protocol.ts'
import type { ExecRequest } from '../src/sandboxes/engine.ts'
import { agentBuilt, type HostAgent, startHostAgent } from './support/agent-host.ts'

const describeBuilt = agentBuilt
  ? describe
  : describe.skip.bind(describe, '[skipped: agent/build/isorun-agent not built (agent/build.sh)]')

const MIB = 1024 * 1024

async function exec(agent: { channel: AgentChannel }, command: string, options: Partial<ExecRequest> = {}) {
  const socket = await agent.channel.take()
  if (!socket) throw new Error('no spare connection')
  return execViaAgent(agent.channel, socket, { command, timeoutMs: 0, outputLimit: 16 * MIB, ...options })
}

async function spare(channel: AgentChannel) {
  const socket = await channel.take()
  if (!socket) throw new Error('no spare connection')
  return socket
}

/** The sockets the agent process holds, its inherited stdio aside. */
function agentSockets(agent: HostAgent): string[] {
  const dir = `/proc/${agent.process.pid}/fd`
  return readdirSync(dir)
    .filter((fd) => Number(fd) > 2)
    .map((fd) => readlinkSync(join(dir, fd)))
    .filter((target) => target.startsWith('socket:'))
}

/** Polls `ok` for up to 20 s (the machine may be busy); whether it held. */
async function until(ok: () => boolean): Promise<boolean> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (ok()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return ok()
}

/** Processes on this machine whose command line matches (the agent runs commands here). */
function running(pattern: RegExp): string[] {
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => pattern.test(l))
}

describeBuilt('isorun-agent on this machine (no Docker)', () => {
  let agent: HostAgent

  beforeAll(async () => {
    agent = await startHostAgent({ AGENT_TEST_VAR: 'from the agent' })
    await agent.ready()
  })
  afterAll(() => agent.stop())

  describe('exec', () => {
    it('keeps stdout and stderr apart and returns the exit code', async () => {
      const r = await exec(agent, 'echo out; echo err >&2; printf "%s" "$((6 * 7))"; exit 3')
      expect(r.exitCode).toBe(3)
      expect(r.stdout.toString()).toBe('out\n42')
      expect(r.stderr.toString()).toBe('err\n')
      expect(r.timedOut).toBe(false)
    })

    it('reports death by a signal as 128 + the signal', async () => {
      expect((await exec(agent, 'kill -9 $$')).exitCode).toBe(137)
      expect((await exec(agent, 'kill -TERM $$')).exitCode).toBe(143)
    })

    it('gives the command the agent environment, a marker, closed stdin and a session of its own', async () => {
      const r = await exec(
        agent,
        'echo "$AGENT_TEST_VAR"; echo "$ISORUN_EXEC_ID"; cat; echo "cat=$?"; ps -o sid= -p $$; echo $$',
      )
      const [v, marker, cat, sid, pid] = r.stdout.toString().trim().split('\n')
      expect(v).toBe('from the agent')
      expect(marker).toMatch(/^[0-9a-f]{16}$/)
      expect(cat).toBe('cat=0')
      expect(sid?.trim()).toBe(pid)
    })

    it('kills the command and everything it started on timeout, with exit code 124', async () => {
      const tag = randomBytes(3).readUIntBE(0, 3)
      const started = Date.now()
      const r = await exec(agent, `sleep ${tag}1 & (setsid sleep ${tag}2 &) ; echo started; sleep ${tag}3`, {
        timeoutMs: 500,
      })
      expect(r.exitCode).toBe(124)
      expect(r.timedOut).toBe(true)
      expect(r.stdout.toString()).toBe('started\n')
      expect(Date.now() - started).toBeLessThan(3000)
      expect(running(new RegExp(`sleep ${tag}[123]`))).toEqual([])
    })

    it('keeps only the first `outputLimit` bytes of each stream and says it cut them', async () => {
      const r = await exec(agent, 'head -c 3000000 /dev/zero | tr "\\0" a; echo tail >&2', {
        outputLimit: MIB,
      })
      expect(r.stdout.length).toBe(MIB)
      expect(r.stdoutTruncated).toBe(true)
      expect(r.stderr.toString()).toBe('tail\n')
      expect(r.stderrTruncated).toBe(false)
    })

    it('carries binary output exactly', async () => {
      const r = await exec(agent, 'head -c 1048576 /dev/urandom | tee /dev/stderr')
      expect(r.stdout.length).toBe(MIB)
      expect(r.stdout.equals(r.stderr)).toBe(true)
    })

    it('collects what background processes print shortly after the shell exits, for at most 2 s', async () => {
      const late = await exec(agent, '(sleep 0.3; echo late) & echo now')
      expect(late.stdout.toString()).toBe('now\nlate\n')
      const started = Date.now()
      const held = await exec(agent, 'sleep 30 & echo now')
      const took = Date.now() - started
      expect(held.stdout.toString()).toBe('now\n')
      expect(took).toBeGreaterThanOrEqual(1900)
      expect(took).toBeLessThan(6000)
      await exec(agent, 'pkill -f "^sleep 30$" || true')
    })

    it('runs concurrent commands independently', async () => {
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => exec(agent, `sleep 0.2; echo ${i}; exit ${i}`)),
      )
      results.forEach((r, i) => {
        expect(r.stdout.toString()).toBe(`${i}\n`)
        expect(r.exitCode).toBe(i)
      })
    })
  })

  describe('files', () => {
    it('writes a file (parents created, mode 0644) and reads it back byte for byte', async () => {
      const bytes = randomBytes(MIB + 7)
      const path = join(agent.dir, 'deep', 'er', 'blob.bin')
      await writeFileViaAgent(
        agent.channel,
        await spare(agent.channel),
        path,
        bytes.length,
        Readable.from([bytes]),
      )
      expect(createHash('sha256').update(readFileSync(path)).digest('hex')).toBe(
        createHash('sha256').update(bytes).digest('hex'),
      )
      expect(statSync(path).mode & 0o777).toBe(0o644)
      expect(statSync(join(agent.dir, 'deep')).mode & 0o777).toBe(0o755)
      const back = await readFileViaAgent(agent.channel, await spare(agent.channel), path)
      expect(back.size).toBe(bytes.length)
      const chunks: Buffer[] = []
      for await (const c of back.stream) chunks.push(c as Buffer)
      expect(Buffer.concat(chunks).equals(bytes)).toBe(true)
    })

    it('replaces a file whole, handles an empty one and leaves no temporary file', async () => {
      const path = join(agent.dir, 'over.txt')
      const write = async (text: string) =>
        writeFileViaAgent(
          agent.channel,
          await spare(agent.channel),
          path,
          text.length,
          Readable.from([Buffer.from(text)]),
        )
      await write('first version, longer')
      await write('second')
      expect(readFileSync(path, 'utf8')).toBe('second')
      await write('')
      expect(readFileSync(path, 'utf8')).toBe('')
      const names = await listDirViaAgent(agent.channel, await spare(agent.channel), agent.dir)
      expect(names.filter((n) => n.includes('isorun-upload'))).toEqual([])
    })

    it('follows symlinks when reading, and lists every name', async () => {
      const dir = join(agent.dir, 'list')
      mkdirSync(join(dir, 'sub'), { recursive: true })
      for (const name of ['a', 'b c', '.hidden', 'new\nline']) writeFileSync(join(dir, name), name)
      symlinkSync(join(dir, 'a'), join(dir, 'link'))
      const names = await listDirViaAgent(agent.channel, await spare(agent.channel), dir)
      expect(names.sort()).toEqual(['.hidden', 'a', 'b c', 'link', 'new\nline', 'sub'])
      const file = await readFileViaAgent(agent.channel, await spare(agent.channel), join(dir, 'link'))
      expect(file.size).toBe(1)
      file.stream.resume()
    })

    it('fails as the docker path does: not found, not a file, not a directory', async () => {
      const code = (p: Promise<unknown>) => p.then(() => 'ok').catch((e: { code?: string }) => e.code)
      const dir = join(agent.dir, 'errors')
      mkdirSync(dir)
      writeFileSync(join(dir, 'file'), 'x')
      execFileSync('mkfifo', [join(dir, 'fifo')])
      expect(await code(readFileViaAgent(agent.channel, await spare(agent.channel), join(dir, 'nope')))).toBe(
        'not_found',
      )
      expect(await code(readFileViaAgent(agent.channel, await spare(agent.channel), dir))).toBe('not_a_file')
      // A FIFO is refused at once instead of blocking on open.
      expect(await code(readFileViaAgent(agent.channel, await spare(agent.channel), join(dir, 'fifo')))).toBe(
        'not_a_file',
      )
      expect(await code(listDirViaAgent(agent.channel, await spare(agent.channel), join(dir, 'nope')))).toBe(
        'not_found',
      )
      expect(await code(listDirViaAgent(agent.channel, await spare(agent.channel), join(dir, 'file')))).toBe(
        'not_a_directory',
      )
      const write = async (p: string) =>
        writeFileViaAgent(agent.channel, await spare(agent.channel), p, 1, Readable.from([Buffer.from('y')]))
      expect(await code(write(dir))).toBe('not_a_file')
      expect(await code(write(join(dir, 'file', 'child')))).toBe('not_a_directory')
      expect(existsSync(join(dir, 'file'))).toBe(true)
    })

    it('fails a read whose file turns out longer than its size said (409, as the archive path)', async () => {
      // /proc files say size 0 and have content: the deterministic case of a file that grew.
      const file = await readFileViaAgent(agent.channel, await spare(agent.channel), '/proc/self/status')
      const read = await finished(file.stream.resume()).then(
        () => 'ended',
        (e: { code?: string; status?: number }) => `${e.status} ${e.code}`,
      )
      expect(read).toBe('409 conflict')
    })

    it('refuses a body longer or shorter than announced', async () => {
      const path = join(agent.dir, 'sized.txt')
      const code = (p: Promise<unknown>) => p.then(() => 'ok').catch((e: { code?: string }) => e.code)
      expect(
        await code(
          writeFileViaAgent(
            agent.channel,
            await spare(agent.channel),
            path,
            2,
            Readable.from([Buffer.from('abc')]),
          ),
        ),
      ).toBe('validation_failed')
      expect(
        await code(
          writeFileViaAgent(
            agent.channel,
            await spare(agent.channel),
            path,
            5,
            Readable.from([Buffer.from('abc')]),
          ),
        ),
      ).toBe('validation_failed')
      expect(existsSync(path)).toBe(false)
    })
  })

  describe('checkpoints: detach and resume', () => {
    it('an exec in flight outlives a detach (no connection left) and finishes once the emulator listens again', async () => {
      const started = join(agent.dir, 'started')
      const pending = exec(agent, `echo before; touch ${started}; sleep 1; echo after`)
      expect(await until(() => existsSync(started))).toBe(true)
      await agent.channel.detach()
      // The agent holds no connection now: that is what lets CRIU checkpoint it.
      expect(agentSockets(agent)).toEqual([])
      await new Promise((r) => setTimeout(r, 300))
      await agent.channel.listen()
      const r = await pending
      expect(r.stdout.toString()).toBe('before\nafter\n')
      expect(r.exitCode).toBe(0)
    })

    it('a file upload in flight pauses for a detach and completes after', async () => {
      const path = join(agent.dir, 'paused.bin')
      const bytes = randomBytes(8 * MIB)
      const slow = Readable.from(
        (async function* () {
          for (let at = 0; at < bytes.length; at += MIB) {
            yield bytes.subarray(at, at + MIB)
            await new Promise((r) => setTimeout(r, 20))
          }
        })(),
      )
      const writing = writeFileViaAgent(agent.channel, await spare(agent.channel), path, bytes.length, slow)
      await new Promise((r) => setTimeout(r, 50))
      await agent.channel.detach()
      await new Promise((r) => setTimeout(r, 200))
      await agent.channel.listen()
      await writing
      expect(readFileSync(path).equals(bytes)).toBe(true)
    })

    it('a copy restored elsewhere is told to abandon its parent calls, and kills their commands', async () => {
      const tag = randomBytes(3).readUIntBE(0, 3)
      const sleeping = () => running(new RegExp(`^sleep ${tag}7`)).length
      const orphaned = exec(agent, `sleep ${tag}7`).catch((e: Error) => e)
      expect(await until(() => sleeping() === 1)).toBe(true)
      await agent.channel.detach()
      // What a restored copy sees: an emulator side that never heard of the call.
      const copy = new AgentChannel(agent.socketPath)
      await copy.listen()
      expect(await until(() => sleeping() === 0)).toBe(true)
      await copy.close()
      // The original side, removed meanwhile, ends its call as lost.
      await agent.channel.close()
      expect(await orphaned).toBeInstanceOf(AgentLostError)
      agent.channel = new AgentChannel(agent.socketPath)
      await agent.channel.listen()
      await agent.ready()
    })
  })
})

/**
 * Whatever answers on a sandbox's socket may be the guest's own impostor (the guest can kill its agent
 * and dial in itself): everything the emulator reads from it is bounded, and it only ever reaches its
 * own sandbox's calls.
 */
describe('the emulator’s end against an impostor on the socket', () => {
  let dir: string
  let channel: AgentChannel

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'isorun-agent-impostor-'))
    channel = new AgentChannel(join(dir, 'agent.sock'))
    await channel.listen()
  })
  afterAll(async () => {
    await channel.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const dial = () =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect(channel.socketPath, () => resolve(s))
      s.once('error', reject)
    })
  const closed = (s: Socket) =>
    new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())))
  const hello = () => {
    const p = Buffer.alloc(9)
    p[0] = PROTOCOL_VERSION
    return frame(Msg.hello, p)
  }

  it('closes a connection that does not greet as the agent, or greets too big', async () => {
    const junk = await dial()
    junk.write('GET / HTTP/1.1\r\n\r\n')
    await closed(junk)
    const big = await dial()
    big.write(frame(Msg.hello, Buffer.alloc(1000)))
    await closed(big)
    const oldVersion = await dial()
    oldVersion.write(frame(Msg.hello, Buffer.alloc(9)))
    await closed(oldVersion)
    expect(channel.hello).toBeUndefined()
  })

  it('keeps a few spare connections at most', async () => {
    const many = await Promise.all(Array.from({ length: 10 }, () => dial()))
    for (const s of many) s.write(hello())
    expect(await until(() => many.filter((s) => !s.destroyed).length <= 4)).toBe(true)
    for (const s of many) s.destroy()
  })

  it('does not keep a connection that greets after a detach began (a checkpoint would fail on it)', async () => {
    const own = new AgentChannel(join(dir, 'late.sock'))
    await own.listen()
    const late = await new Promise<Socket>((resolve, reject) => {
      const s = connect(own.socketPath, () => resolve(s))
      s.once('error', reject)
    })
    // Accepted, not yet greeted, when the detach starts; its HELLO comes after.
    await new Promise((r) => setTimeout(r, 50))
    await own.detach()
    late.write(hello())
    await closed(late)
    expect(own.connected()).toBe(false)
    await own.close()
  })

  it('answers a RESUME it does not know with ABANDON', async () => {
    const s = await dial()
    const got: Buffer[] = []
    s.on('data', (d: Buffer) => got.push(d))
    s.write(frame(Msg.resume, randomBytes(ID_LENGTH)))
    await closed(s)
    expect(Buffer.concat(got)).toEqual(frame(Req.abandon))
  })

  it('bounds what an exec keeps, and ends it on its timeout however the impostor behaves', async () => {
    const s = await dial()
    s.write(hello())
    const taken = await channel.take()
    if (!taken) throw new Error('no spare')
    // The impostor streams output forever and never reports an exit or obeys KILL.
    const flood = setInterval(() => {
      if (!s.destroyed) s.write(frame(Msg.stdout, Buffer.alloc(60_000, 'x')))
    }, 1)
    s.on('error', () => {})
    s.resume()
    const started = Date.now()
    const r = await execViaAgent(channel, taken, { command: 'true', timeoutMs: 300, outputLimit: 100_000 })
    clearInterval(flood)
    expect(r.exitCode).toBe(124)
    expect(r.stdout.length).toBe(100_000)
    expect(r.stdoutTruncated).toBe(true)
    expect(Date.now() - started).toBeLessThan(5_000)
    s.destroy()
  })

  it('fails a download that sends more than it announced, or frames bigger than the agent’s', async () => {
    for (const misbehave of [
      (s: Socket) => {
        const size = Buffer.alloc(8)
        size.writeBigUInt64BE(3n)
        s.write(Buffer.concat([frame(Msg.size, size), frame(Msg.body, Buffer.from('four'))]))
      },
      (s: Socket) => {
        const header = Buffer.alloc(5)
        header[0] = Msg.size
        header.writeUInt32BE(10_000_000, 1)
        s.write(header)
      },
    ]) {
      const s = await dial()
      s.write(hello())
      const taken = await channel.take()
      if (!taken) throw new Error('no spare')
      s.on('error', () => {})
      s.once('data', () => misbehave(s))
      const outcome = await readFileViaAgent(channel, taken, '/x')
        .then(
          async (file) => {
            for await (const _ of file.stream) {
              // drain
            }
            return 'read'
          },
          (err: Error) => err.name,
        )
        .catch((err: Error) => err.name)
      expect(outcome).toBe('ProtocolError')
      s.destroy()
    }
  })
})
