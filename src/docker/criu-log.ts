import { open } from 'node:fs/promises'
import { isAbsolute, join, normalize } from 'node:path'
import { type EmulatorError, Errors } from '../errors.ts'
import { dockerMessage, translateDockerError } from './errors.ts'

/**
 * Why CRIU refused a checkpoint, in words. The engines answer only "criu failed: type NOTIFY errno 0"
 * (Docker) or "runc checkpoint ... failed: exit status 1" (Podman); the reason is in CRIU's dump log,
 * whose place the message gives. It is readable when the emulator shares the engine's host files (a
 * remote engine's is not: then the engine's own words stand).
 */
export async function checkpointFailure(err: unknown, containerId: string): Promise<EmulatorError> {
  const translated = translateDockerError(err, () => Errors.runNotFound(containerId))
  if (translated.code !== 'engine_error') return translated
  const log = dumpLogPath(dockerMessage(err))
  const line = log ? await refusal(log) : undefined
  if (!line) return translated
  return Errors.checkpointRefused(inWords(line), line)
}

/** Known refusals, in the words of what the guest does; anything else is quoted as CRIU put it. */
const REASONS: { pattern: RegExp; words: string }[] = [
  {
    pattern: /Connected TCP socket/,
    words: 'a process in the sandbox holds an established TCP connection; CRIU cannot checkpoint it',
  },
  {
    pattern: /External socket|unix socket.*external/i,
    words: 'a process in the sandbox holds a socket connected outside it; CRIU cannot checkpoint it',
  },
  { pattern: /io_uring/, words: 'a process in the sandbox uses io_uring, which CRIU cannot checkpoint' },
]

function inWords(line: string): string {
  return REASONS.find((r) => r.pattern.test(line))?.words ?? `CRIU refused it: ${line}`
}

/** The dump log the engine's message points at: Docker names it, Podman names runc's work dir. */
export function dumpLogPath(message: string): string | undefined {
  const named = /path=\s*(\S+\/criu-dump\.log)/.exec(message)?.[1]
  const workDir = /--work-path\s+(\S+)/.exec(message)?.[1]
  const path = named ?? (workDir ? join(workDir, 'dump.log') : undefined)
  // Only a plain absolute path to a dump log is read, whatever the message says.
  if (!path || !isAbsolute(path) || normalize(path) !== path) return undefined
  return path
}

/** The end of a dump log that is read: its reason is among the last lines. */
const TAIL_BYTES = 256 * 1024

/**
 * The first `Error (` line of a dump log that says what went wrong: CRIU's RLIMIT complaint (harmless,
 * printed on every dump in a container) and its closing summary lines are skipped. Undefined when the
 * log cannot be read or says nothing more.
 */
export async function refusal(path: string): Promise<string | undefined> {
  let text: string
  try {
    const file = await open(path, 'r')
    try {
      const { size } = await file.stat()
      const length = Math.min(size, TAIL_BYTES)
      const buffer = Buffer.alloc(length)
      await file.read(buffer, 0, length, size - length)
      text = buffer.toString('utf8')
    } finally {
      await file.close()
    }
  } catch {
    return undefined
  }
  for (const raw of text.split('\n')) {
    const m = /Error \([^)]*\):\s*(.*)$/.exec(raw)
    if (!m?.[1]) continue
    const line = m[1].trim()
    if (/RLIMIT_NOFILE|^Dump(ing)? .*FAILED|^Dump files .* failed/i.test(line)) continue
    return line.slice(0, 300)
  }
  return undefined
}
