/**
 * How the emulator's log reaches its standard output: pino's JSON lines for machines (a pipe, a file,
 * `docker logs` into a collector), or one readable line per record for a person at a terminal.
 */

export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]

/** Pino's numeric levels, as a person reads them. */
const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
}

/** Fields every record has, shown in the line's head or not at all. */
const HEAD = new Set(['level', 'time', 'pid', 'hostname', 'msg'])

/** A field's value beyond this is cut: the full record is one `--log-format json` away. */
const MAX_VALUE = 160

/** `auto` is pretty on a terminal, JSON otherwise. */
export function resolveLogFormat(format: LogFormat, isTerminal: boolean): 'json' | 'pretty' {
  return format === 'auto' ? (isTerminal ? 'pretty' : 'json') : format
}

/**
 * The destination Fastify's logger writes to: undefined for JSON (pino's own, standard output), or a
 * stream that turns each JSON line into a readable one.
 */
export function logStream(
  format: LogFormat,
  out: NodeJS.WriteStream = process.stdout,
): { write(line: string): void } | undefined {
  if (resolveLogFormat(format, Boolean(out.isTTY)) === 'json') return undefined
  return { write: (line: string) => out.write(prettyLine(line)) }
}

/** `12:00:01.250 WARN  message key=value ...`, plus an error's stack; a line that is not JSON as it is. */
export function prettyLine(json: string): string {
  let record: Record<string, unknown>
  try {
    record = JSON.parse(json) as Record<string, unknown>
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`
  }
  const time = typeof record.time === 'number' ? new Date(record.time).toISOString().slice(11, 23) : ''
  const level = (LEVELS[record.level as number] ?? String(record.level)).padEnd(5)
  const parts = [time, level, typeof record.msg === 'string' ? record.msg : ''].filter(Boolean)
  let stack = ''
  for (const [key, value] of Object.entries(record)) {
    if (HEAD.has(key) || value === undefined) continue
    if (key === 'err' && value && typeof value === 'object') {
      const err = value as { message?: unknown; stack?: unknown }
      parts.push(`err=${shown(err.message ?? value)}`)
      if ((record.level as number) >= 50 && typeof err.stack === 'string') {
        stack = `${err.stack.replace(/^/gm, '    ')}\n`
      }
      continue
    }
    parts.push(`${key}=${shown(value)}`)
  }
  return `${parts.join(' ')}\n${stack}`
}

function shown(value: unknown): string {
  const text =
    typeof value === 'string'
      ? /^[^\s"=]+$/.test(value)
        ? value
        : JSON.stringify(value)
      : JSON.stringify(value)
  return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE)}…` : text
}
