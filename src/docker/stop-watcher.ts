import type { Readable } from 'node:stream'
import type Docker from 'dockerode'
import type { StopWatch } from '../sandboxes/engine.ts'

/** How long to wait before following the engine's events again after the stream ended or failed. */
const RECONNECT_MS = 1000

/**
 * Follows the engine's event stream (`GET /events`, which Docker and Podman both serve) for containers
 * carrying `labels` that stop (`die`; `oom` and `stop` come with one) and reports their ids. The stream
 * is followed again whenever it ends or fails (the engine restarted, say), from the time of the last
 * event seen, so a stop that happened meanwhile is reported late rather than never. Nothing here throws
 * or leaves an error unheard: a stream error only means following again.
 */
export function watchStops(
  docker: Docker,
  labels: Record<string, string>,
  onStop: (containerId: string) => void,
): StopWatch {
  let closed = false
  let connected = false
  let stream: Readable | undefined
  let retry: NodeJS.Timeout | undefined
  // Whole seconds: `since` replays the second it names, so a repeat is possible, a gap is not.
  let since = Math.floor(Date.now() / 1000)

  const follow = (): void => {
    retry = undefined
    if (closed) return
    docker.getEvents(
      {
        since: String(since),
        filters: JSON.stringify({
          type: ['container'],
          // Podman (4.x) filters on its own name for a death, `died`, though it reports it as `die`.
          event: ['die', 'died', 'oom', 'stop'],
          label: Object.entries(labels).map(([k, v]) => `${k}=${v}`),
        }),
      } as unknown as Docker.GetEventsOptions,
      (err, events) => {
        if (err || !events) return again()
        if (closed) {
          ;(events as Readable).destroy()
          return
        }
        stream = events as Readable
        connected = true
        let pending = ''
        stream.on('data', (chunk: Buffer) => {
          pending += chunk.toString('utf8')
          let nl = pending.indexOf('\n')
          while (nl >= 0) {
            const line = pending.slice(0, nl).trim()
            pending = pending.slice(nl + 1)
            if (line) report(line)
            nl = pending.indexOf('\n')
          }
        })
        stream.on('error', () => stream?.destroy())
        stream.once('close', again)
        stream.once('end', again)
      },
    )
  }

  const report = (line: string): void => {
    let event: { id?: string; time?: number; Actor?: { ID?: string } }
    try {
      event = JSON.parse(line)
    } catch {
      return
    }
    if (typeof event.time === 'number') since = Math.max(since, Math.floor(event.time))
    const id = event.Actor?.ID ?? event.id
    if (!id) return
    try {
      onStop(id)
    } catch {
      // The listener's own failures are its business; the stream goes on.
    }
  }

  const again = (): void => {
    connected = false
    stream = undefined
    if (closed || retry) return
    retry = setTimeout(follow, RECONNECT_MS)
    retry.unref()
  }

  follow()
  return {
    get connected() {
      return connected
    },
    close() {
      closed = true
      if (retry) clearTimeout(retry)
      stream?.destroy()
    },
  }
}
