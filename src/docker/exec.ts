import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type Docker from 'dockerode'
import type { ExecOutcome, ExecRequest } from '../sandboxes/engine.ts'
import { BoundedDemux } from './demux.ts'

/** Exit code reported for a command killed by its timeout, as coreutils' timeout(1) does. */
export const TIMEOUT_EXIT_CODE = 124

/** How long to wait for the output stream to close once a timed-out command's processes are killed. */
const DRAIN_AFTER_KILL_MS = 2_000

/**
 * Every exec carries a unique marker in its environment, inherited by all its descendants, even those
 * re-parented to PID 1. On timeout this script, run as a second exec in the same sandbox, kills every
 * process carrying the marker: portable across engines (it needs only sh and /proc in the guest, no
 * access to the host's PID namespace). Ids have a fixed length, so one cannot be a prefix of another.
 */
const KILL_BY_MARKER = `
for round in 1 2; do
  for p in /proc/[0-9]*; do
    case "$(tr '\\0' '\\n' < "$p/environ" 2>/dev/null)" in
      *"ISORUN_EXEC_ID=$1"*) kill -9 "\${p#/proc/}" 2>/dev/null ;;
    esac
  done
done
`

/**
 * Runs `request.command` as a shell command line (`/bin/sh -c`) in the container (or `argv`, for the
 * emulator's own helper scripts) and collects its output, bounded. On timeout the command and every process it started are killed, and the outcome says
 * so (`timedOut`, exit code 124).
 */
export async function runExec(
  docker: Docker,
  containerId: string,
  request: ExecRequest,
  argv: string[] = ['/bin/sh', '-c', request.command],
): Promise<ExecOutcome> {
  const container = docker.getContainer(containerId)
  const marker = randomBytes(8).toString('hex')
  const exec = await container.exec({
    Cmd: argv,
    AttachStdout: true,
    AttachStderr: true,
    Env: [`ISORUN_EXEC_ID=${marker}`],
  })
  const stream = (await exec.start({ hijack: true, stdin: false })) as Duplex
  const demux = new BoundedDemux(request.outputLimit)
  let timedOut = false

  const finished = new Promise<void>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => demux.push(chunk))
    stream.once('end', resolve)
    stream.once('close', resolve)
    stream.on('error', reject)
  })

  let timer: NodeJS.Timeout | undefined
  const timeout =
    request.timeoutMs > 0
      ? new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), request.timeoutMs)
        })
      : undefined

  try {
    const first = timeout ? await Promise.race([finished, timeout]) : await finished
    if (first === 'timeout') {
      timedOut = true
      await killByMarker(docker, containerId, marker)
      const drained = await Promise.race([
        finished.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), DRAIN_AFTER_KILL_MS).unref()),
      ])
      if (!drained) stream.destroy()
    }
  } finally {
    if (timer) clearTimeout(timer)
  }

  const exitCode = timedOut ? TIMEOUT_EXIT_CODE : await exitCodeOf(exec)
  return {
    exitCode,
    stdout: demux.stdout(),
    stderr: demux.stderr(),
    timedOut,
    stdoutTruncated: demux.stdoutTruncated,
    stderrTruncated: demux.stderrTruncated,
  }
}

async function killByMarker(docker: Docker, containerId: string, marker: string): Promise<void> {
  const exec = await docker.getContainer(containerId).exec({
    Cmd: ['/bin/sh', '-c', KILL_BY_MARKER, 'isorun-kill', marker],
    AttachStdout: true,
    AttachStderr: true,
  })
  const stream = (await exec.start({ hijack: true, stdin: false })) as Duplex
  await new Promise<void>((resolve) => {
    stream.resume()
    stream.once('end', resolve)
    stream.once('close', resolve)
    stream.on('error', () => resolve())
  })
}

/** The exit code, once Docker has recorded it (the stream can close a moment before it does). */
async function exitCodeOf(exec: Docker.Exec): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const info = await exec.inspect()
    if (!info.Running && typeof info.ExitCode === 'number') return info.ExitCode
    await new Promise((r) => setTimeout(r, 10))
  }
  return -1
}
