import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { FrameReader, frame, ProtocolError } from '../src/agent/protocol.ts'

/** Frames of every size class: empty, small, and as big as the agent sends. */
function someFrames(): { type: number; payload: Buffer }[] {
  return [0, 1, 4, 5, 17, 4096, 65536, 3, 65536 + 64].map((n, i) => ({
    type: 0x41 + i,
    payload: randomBytes(n),
  }))
}

function splitAt(data: Buffer, cuts: number[]): Buffer[] {
  const chunks: Buffer[] = []
  let at = 0
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    chunks.push(data.subarray(at, cut))
    at = cut
  }
  chunks.push(data.subarray(at))
  return chunks
}

describe('the frame reader', () => {
  it('gives back every frame, whatever chunks the stream arrives in', () => {
    const frames = someFrames()
    const stream = Buffer.concat(frames.map((f) => frame(f.type, f.payload)))
    const splits = [
      [],
      Array.from({ length: 400 }, (_, i) => i + 1), // byte by byte through the small frames
      [1, 2, 3, 4, 5, 6],
      Array.from({ length: 40 }, () => Math.floor(Math.random() * stream.length)),
      Array.from({ length: Math.floor(stream.length / 65536) }, (_, i) => (i + 1) * 65536),
    ]
    for (const cuts of splits) {
      const reader = new FrameReader()
      const got = splitAt(stream, cuts).flatMap((chunk) => reader.push(Buffer.from(chunk)))
      expect(got.map((f) => f.type)).toEqual(frames.map((f) => f.type))
      for (const [i, f] of got.entries()) expect(f.payload.equals(frames[i]?.payload as Buffer)).toBe(true)
    }
  })

  it('refuses a frame bigger than its bound, even before its payload arrives', () => {
    const header = frame(0x31, Buffer.alloc(100)).subarray(0, 5)
    expect(() => new FrameReader(99).push(header)).toThrow(ProtocolError)
    const split = new FrameReader(99)
    expect(split.push(header.subarray(0, 2))).toEqual([])
    expect(() => split.push(header.subarray(2))).toThrow(ProtocolError)
    expect(new FrameReader(100).push(frame(0x31, Buffer.alloc(100)))).toHaveLength(1)
  })
})
