import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { Readable } from 'node:stream'
import { Errors, UNWRITABLE_WHY } from '../errors.ts'
import type { ExecOutcome, ExecRequest, FileDownload } from '../sandboxes/engine.ts'
import { AgentCall } from './agent-call.ts'
import type { AgentChannel } from './agent-channel.ts'
import {
  execRequest,
  Fail,
  type Frame,
  ID_LENGTH,
  Msg,
  ProtocolError,
  pathRequest,
  Req,
  readSize,
  UNWRITABLE_KINDS,
  UPLOAD_CHUNK,
  writeRequest,
} from './protocol.ts'

/** Exit code reported for a command killed by its timeout, as coreutils' timeout(1) does. */
export const TIMEOUT_EXIT_CODE = 124
/** A command killed by SIGKILL (with its sandbox), as the engine reports it: 128 + 9. */
const KILLED_EXIT_CODE = 137
/** How long to wait for a killed command's last output and exit before giving up on it. */
const DRAIN_AFTER_KILL_MS = 2_000
/** Bytes of names a listing may return, as the docker exec path allows. */
const LIST_LIMIT = 64 * 1024 * 1024

/** The agent's connection ended in the middle of a call (the sandbox went away, or its agent did). */
export class AgentLostError extends Error {
  /** For an exec: what it printed until then, as a command killed with its sandbox (SIGKILL). */
  partial: ExecOutcome | undefined
  constructor(cause: Error) {
    super(`the sandbox's agent went away: ${cause.message}`)
    this.name = 'AgentLostError'
  }
}

/** A failure the agent reported, in the emulator's terms. */
function failure(payload: Buffer, path: string): Error {
  const message = payload.subarray(1, 1024).toString('utf8')
  switch (payload[0]) {
    case Fail.notFound:
      return Errors.pathNotFound(path)
    case Fail.notAFile:
      return Errors.notAFile(path)
    case Fail.notADirectory:
      return Errors.notADirectory(path)
    case Fail.changed:
      return Errors.fileChanged(path)
    case Fail.unwritable: {
      const kind = UNWRITABLE_KINDS[message as keyof typeof UNWRITABLE_KINDS]
      return Errors.unwritablePath(path, kind ? UNWRITABLE_WHY[kind] : 'the sandbox’s file system refuses it')
    }
    default:
      return Errors.engine(`the sandbox's agent failed: ${message}`)
  }
}

/** Starts a call on a spare connection, registered with the channel until it ends. */
function open(
  channel: AgentChannel,
  socket: Socket,
  request: (id: Buffer) => Buffer,
  onFrame: (f: Frame, call: AgentCall) => void,
  onLost: (err: Error) => void,
): AgentCall {
  const id = randomBytes(ID_LENGTH)
  const call: AgentCall = new AgentCall(id, socket, {
    frame: (f) => onFrame(f, call),
    lost: (err) => {
      channel.untrack(call)
      onLost(err instanceof ProtocolError ? err : new AgentLostError(err))
    },
  })
  channel.track(call)
  socket.write(request(id))
  return call
}

function end(channel: AgentChannel, call: AgentCall): void {
  call.finish()
  channel.untrack(call)
}

/** Keeps the first `limit` bytes of a stream, counting the rest (the agent already drops them). */
class Bounded {
  private readonly parts: Buffer[] = []
  private kept = 0
  private readonly limit: number
  truncated = false
  constructor(limit: number) {
    this.limit = limit
  }
  push(data: Buffer): void {
    const room = this.limit - this.kept
    if (data.length > room) this.truncated = true
    if (room <= 0) return
    // A view of the frame, not a copy: frames are views of the chunks the socket read (fresh buffers).
    const part = data.length > room ? data.subarray(0, room) : data
    this.parts.push(part)
    this.kept += part.length
  }
  get bytes(): number {
    return this.kept
  }
  buffer(): Buffer {
    return Buffer.concat(this.parts)
  }
}

/**
 * Runs `request.command` through the agent (`/bin/sh -c` in the sandbox). On timeout the agent kills
 * the command's whole process tree; the outcome says so with exit code 124, as the docker exec path.
 */
export function execViaAgent(
  channel: AgentChannel,
  socket: Socket,
  request: ExecRequest,
): Promise<ExecOutcome> {
  return new Promise((resolve, reject) => {
    const stdout = new Bounded(request.outputLimit)
    const stderr = new Bounded(request.outputLimit)
    let timedOut = false
    let timer: NodeJS.Timeout | undefined
    let settled = false
    const settle = (exitCode: number, totals?: [number, number]) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      end(channel, call)
      resolve({
        exitCode: timedOut ? TIMEOUT_EXIT_CODE : exitCode,
        stdout: stdout.buffer(),
        stderr: stderr.buffer(),
        timedOut,
        stdoutTruncated: stdout.truncated || (totals !== undefined && totals[0] > stdout.bytes),
        stderrTruncated: stderr.truncated || (totals !== undefined && totals[1] > stderr.bytes),
      })
    }
    const call = open(
      channel,
      socket,
      (id) => execRequest(id, request.outputLimit, request.command),
      (f) => {
        if (f.type === Msg.stdout) stdout.push(f.payload)
        else if (f.type === Msg.stderr) stderr.push(f.payload)
        else if (f.type === Msg.exit && f.payload.length >= 20) {
          settle(f.payload.readInt32BE(0), [readSize(f.payload, 4) ?? 0, readSize(f.payload, 12) ?? 0])
        } else if (f.type === Msg.fail) {
          settled = true
          clearTimeout(timer)
          end(channel, call)
          reject(failure(f.payload, ''))
        } else throw new ProtocolError(`unexpected frame ${f.type} in an exec`)
      },
      (err) => {
        if (timedOut) settle(TIMEOUT_EXIT_CODE)
        else if (!settled) {
          settled = true
          clearTimeout(timer)
          if (err instanceof AgentLostError)
            err.partial = {
              exitCode: KILLED_EXIT_CODE,
              stdout: stdout.buffer(),
              stderr: stderr.buffer(),
              timedOut: false,
              stdoutTruncated: stdout.truncated,
              stderrTruncated: stderr.truncated,
            }
          reject(err)
        }
      },
    )
    if (request.timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true
        call.control(Req.kill)
        // The agent reports the exit once the tree is dead; if it does not, the emulator stops waiting.
        timer = setTimeout(() => settle(TIMEOUT_EXIT_CODE), DRAIN_AFTER_KILL_MS)
      }, request.timeoutMs)
    }
  })
}

/** Streams one regular file out of the sandbox (symlinks followed), exactly as many bytes as announced. */
export function readFileViaAgent(channel: AgentChannel, socket: Socket, path: string): Promise<FileDownload> {
  return new Promise((resolve, reject) => {
    let size: number | undefined
    let received = 0
    let stream: Readable | undefined
    const call = open(
      channel,
      socket,
      (id) => pathRequest(Req.read, id, path),
      (f) => {
        if (!stream) {
          if (f.type === Msg.fail) {
            end(channel, call)
            reject(failure(f.payload, path))
            return
          }
          size = f.type === Msg.size ? readSize(f.payload, 0) : undefined
          if (size === undefined) throw new ProtocolError('a read must start with a size')
          stream = new Readable({ read: () => call.pauseReading(false) })
          stream.once('close', () => end(channel, call))
          // It may fail before its consumer listens (a misbehaving agent): never an uncaught 'error'.
          stream.on('error', () => {})
          resolve({ size, stream })
          return
        }
        if (f.type === Msg.body) {
          received += f.payload.length
          if (received > (size ?? 0)) throw new ProtocolError('more bytes than announced')
          if (!stream.push(f.payload)) call.pauseReading(true)
        } else if (f.type === Msg.end) {
          if (received !== size) throw new ProtocolError(`${received} bytes of ${size}`)
          stream.push(null)
          end(channel, call)
        } else if (f.type === Msg.fail) {
          stream.destroy(failure(f.payload, path))
        } else throw new ProtocolError(`unexpected frame ${f.type} in a read`)
      },
      (err) => {
        if (stream) stream.destroy(err)
        else reject(err)
      },
    )
  })
}

/**
 * Writes one file: parents created, the file replaced as a whole. `size` bytes of `content` are sent in
 * chunks, paced by the connection (and held while the call is detached for a checkpoint).
 */
export async function writeFileViaAgent(
  channel: AgentChannel,
  socket: Socket,
  path: string,
  size: number,
  content: Readable,
): Promise<void> {
  // undefined until the agent answers; then null (written) or what went wrong.
  let outcome: Error | null | undefined
  let wake = () => {}
  const answered = new Promise<void>((resolve) => {
    wake = resolve
  })
  const settle = (err: Error | null) => {
    if (outcome !== undefined) return
    outcome = err
    wake()
  }
  const call = open(
    channel,
    socket,
    (id) => writeRequest(id, size, path),
    (f) => {
      end(channel, call)
      if (f.type === Msg.end) settle(null)
      else if (f.type === Msg.fail) settle(failure(f.payload, path))
      else settle(new ProtocolError(`unexpected frame ${f.type} in a write`))
    },
    settle,
  )
  let sent = 0
  try {
    // An early answer (a failure) stops the upload; what is left of the body is the HTTP server's to
    // discard, so the client still reads the answer.
    for await (const chunk of content.iterator({ destroyOnReturn: false })) {
      if (outcome !== undefined) break
      const data = chunk as Buffer
      sent += data.length
      if (sent > size) throw Errors.validation('body', `longer than its declared ${size} bytes`)
      for (let at = 0; at < data.length && outcome === undefined; at += UPLOAD_CHUNK) {
        await call.writeFrame(Req.body, data.subarray(at, at + UPLOAD_CHUNK))
      }
    }
  } catch (err) {
    end(channel, call)
    throw outcome ?? err
  }
  if (outcome === undefined && sent < size) {
    end(channel, call)
    throw Errors.validation('body', `shorter than its declared ${size} bytes`)
  }
  await answered
  if (outcome) throw outcome
}

/** The names in a directory (unsorted), bounded like the docker exec path's listing. */
export function listDirViaAgent(channel: AgentChannel, socket: Socket, path: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let bytes = 0
    const call = open(
      channel,
      socket,
      (id) => pathRequest(Req.list, id, path),
      (f) => {
        if (f.type === Msg.body) {
          bytes += f.payload.length
          if (bytes > LIST_LIMIT) throw new ProtocolError('a listing beyond its limit')
          parts.push(f.payload)
        } else if (f.type === Msg.end) {
          end(channel, call)
          resolve(
            Buffer.concat(parts)
              .toString('utf8')
              .split('\0')
              .filter((n) => n.length > 0),
          )
        } else if (f.type === Msg.fail) {
          end(channel, call)
          reject(failure(f.payload, path))
        } else throw new ProtocolError(`unexpected frame ${f.type} in a listing`)
      },
      reject,
    )
  })
}
