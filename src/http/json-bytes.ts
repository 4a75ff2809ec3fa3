import { isUtf8 } from 'node:buffer'

/** Bytes that JSON must escape in a string: `"`, `\` and the controls; 0 where a byte passes as it is. */
const ESCAPE = new Uint8Array(256)
for (let b = 0; b < 0x20; b++) ESCAPE[b] = 1
ESCAPE[0x22] = 1
ESCAPE[0x5c] = 1
const SHORT: Record<number, number> = { 34: 0x22, 92: 0x5c, 8: 0x62, 12: 0x66, 10: 0x6e, 13: 0x72, 9: 0x74 }
const HEX = Buffer.from('0123456789abcdef')

/**
 * `bytes` decoded as UTF-8 and written as a JSON string, exactly as `JSON.stringify(bytes.toString())`
 * writes it (then encoded as UTF-8), without making the string: command output can be megabytes, and
 * V8's stringify of a long string costs several times a pass over its bytes. Valid UTF-8 passes through
 * as it is but for the escapes; anything else is decoded first (its invalid sequences become U+FFFD).
 */
export function jsonStringBytes(bytes: Buffer): Buffer {
  if (!isUtf8(bytes)) return Buffer.from(JSON.stringify(bytes.toString('utf8')))
  let escapes = 0
  for (let i = 0; i < bytes.length; i++) escapes += ESCAPE[bytes[i] as number] as number
  const out = Buffer.allocUnsafe(bytes.length + 2 + escapes * 5)
  let o = 0
  out[o++] = 0x22
  if (escapes === 0) {
    o += bytes.copy(out, o)
  } else {
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i] as number
      if (ESCAPE[b] === 0) {
        out[o++] = b
        continue
      }
      out[o++] = 0x5c
      const short = SHORT[b]
      if (short !== undefined) {
        out[o++] = short
      } else {
        out[o++] = 0x75 // \u00XX
        out[o++] = 0x30
        out[o++] = 0x30
        out[o++] = HEX[b >> 4] as number
        out[o++] = HEX[b & 15] as number
      }
    }
  }
  out[o++] = 0x22
  return out.subarray(0, o)
}
