import { describe, expect, it } from 'vitest'
import { prettyLine, resolveLogFormat } from '../src/log-format.ts'

/** A record as pino writes it. */
const record = (fields: Record<string, unknown>) =>
  `${JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 2, 3, 4, 5, 678), pid: 1, hostname: 'h', ...fields })}\n`

describe('the readable log line', () => {
  it('is time, level, message and the fields as key=value', () => {
    expect(prettyLine(record({ msg: 'sandbox created', runId: 'run1', image: 'node:22-slim', n: 3 }))).toBe(
      '03:04:05.678 INFO  sandbox created runId=run1 image=node:22-slim n=3\n',
    )
    expect(prettyLine(record({ level: 40, msg: 'x', note: 'two words' }))).toBe(
      '03:04:05.678 WARN  x note="two words"\n',
    )
  })

  it('cuts a long value (the capabilities record) and keeps the line short', () => {
    const big = { engine: 'docker', notes: 'n'.repeat(1000) }
    const line = prettyLine(record({ msg: 'engine capabilities', capabilities: big }))
    expect(line.length).toBeLessThan(250)
    expect(line).toMatch(/^03:04:05\.678 INFO {2}engine capabilities capabilities=\{"engine":"docker".*…\n$/)
  })

  it('shows an error by its message, and its stack from level error up', () => {
    const err = { type: 'Error', message: 'boom', stack: 'Error: boom\n    at f (x.ts:1:1)' }
    expect(prettyLine(record({ level: 40, msg: 'retrying', err }))).toBe(
      '03:04:05.678 WARN  retrying err=boom\n',
    )
    expect(prettyLine(record({ level: 50, msg: 'failed', err }))).toBe(
      '03:04:05.678 ERROR failed err=boom\n    Error: boom\n        at f (x.ts:1:1)\n',
    )
  })

  it('passes a line that is not JSON through', () => {
    expect(prettyLine('plain text')).toBe('plain text\n')
  })
})

describe('the log format', () => {
  it('is pretty on a terminal and JSON elsewhere when auto; forced otherwise', () => {
    expect(resolveLogFormat('auto', true)).toBe('pretty')
    expect(resolveLogFormat('auto', false)).toBe('json')
    expect(resolveLogFormat('json', true)).toBe('json')
    expect(resolveLogFormat('pretty', false)).toBe('pretty')
  })
})
