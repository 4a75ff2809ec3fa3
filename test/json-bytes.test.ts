import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { jsonStringBytes } from '../src/http/json-bytes.ts'
import { toExecWireJson } from '../src/http/wire.ts'

/** What the wire said before: JSON.stringify of the bytes decoded as UTF-8. */
const reference = (bytes: Buffer) => Buffer.from(JSON.stringify(bytes.toString('utf8')))

describe('command output as JSON bytes', () => {
  it('writes exactly what JSON.stringify writes, for text, escapes, unicode and invalid UTF-8', () => {
    const cases = [
      '',
      'hi\n',
      'a'.repeat(1 << 20),
      'quote " backslash \\ slash / tab \t cr \r nl \n bs \b ff \f',
      Array.from({ length: 32 }, (_, c) => String.fromCharCode(c)).join(''),
      '\u007f DEL, é, ✓, 😀, \u2028 \u2029, \ufeff',
      '{"json": ["inside", 1, null]}\n'.repeat(1000),
    ].map((s) => Buffer.from(s, 'utf8'))
    cases.push(
      Buffer.from([0xff, 0xfe, 0x41]), // not UTF-8
      Buffer.from([0xed, 0xa0, 0x80]), // an encoded surrogate: not UTF-8 either
      Buffer.from([0xe2, 0x9c]), // cut in the middle of a character
      ...Array.from({ length: 50 }, () => randomBytes(1 + Math.floor(Math.random() * 300))),
    )
    for (const bytes of cases)
      expect(jsonStringBytes(bytes).toString('utf8')).toBe(reference(bytes).toString('utf8'))
  })

  it('gives the exec answer the SDK parses', () => {
    const wire = toExecWireJson({
      exitCode: 3,
      stdout: Buffer.from('out "1"\n'),
      stderr: Buffer.from([0x65, 0x72, 0x72, 0xff]),
    })
    expect(JSON.parse(wire.toString('utf8'))).toEqual({
      exit_code: 3,
      stdout: 'out "1"\n',
      stderr: 'err\ufffd',
    })
  })
})
