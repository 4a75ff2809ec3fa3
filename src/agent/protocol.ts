/**
 * The wire between the emulator and isorun-agent (agent/src/agent.h is the other half): frames of a
 * type byte, a 32-bit big-endian payload length and the payload. Everything read from the agent is
 * bounded here, because whatever answers on a sandbox's socket may be a guest's impostor.
 */

export const PROTOCOL_VERSION = 1
export const ID_LENGTH = 16
/** The agent's chunks are at most 64 KiB; anything bigger is not the agent. */
export const MAX_FRAME_FROM_AGENT = 64 * 1024 + 64
/** Body chunks the emulator sends (file uploads). */
export const UPLOAD_CHUNK = 64 * 1024

/** Emulator -> agent. */
export const Req = {
  exec: 0x58, // 'X': id, u32 output limit, command line
  read: 0x47, // 'G': id, path
  write: 0x50, // 'P': id, u64 size, path
  list: 0x4c, // 'L': id, path
  kill: 0x4b, // 'K'
  detach: 0x44, // 'D'
  continue: 0x43, // 'C'
  abandon: 0x41, // 'A'
  body: 0x42, // 'B'
} as const

/** Agent -> emulator. */
export const Msg = {
  hello: 0x48, // 'H': u8 version, u32 uid, u32 pid
  resume: 0x52, // 'R': id
  stdout: 0x31, // '1'
  stderr: 0x32, // '2'
  exit: 0x45, // 'E': i32 code, u64 stdout bytes, u64 stderr bytes
  size: 0x53, // 'S': u64
  end: 0x5a, // 'Z'
  fail: 0x46, // 'F': u8 code, message
  detached: 0x59, // 'Y'
  body: 0x42, // 'B'
} as const

export const Fail = {
  notFound: 1,
  notAFile: 2,
  notADirectory: 3,
  other: 4,
  changed: 5,
  unwritable: 6,
} as const
/** FAIL_UNWRITABLE's message: which refusal of the file system (agent/src/files.c). */
export const UNWRITABLE_KINDS = {
  busy: 'busy',
  'read-only': 'readOnly',
  'not-permitted': 'notPermitted',
} as const

export interface Frame {
  type: number
  payload: Buffer
}

export function frameHeader(type: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(5)
  header[0] = type
  header.writeUInt32BE(length, 1)
  return header
}

export function frame(type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = frameHeader(type, payload.length)
  return payload.length === 0 ? header : Buffer.concat([header, payload])
}

export function execRequest(id: Buffer, outputLimit: number, command: string): Buffer {
  const limit = Buffer.allocUnsafe(4)
  limit.writeUInt32BE(Math.min(outputLimit, 0xffffffff))
  return frame(Req.exec, Buffer.concat([id, limit, Buffer.from(command, 'utf8')]))
}

export function pathRequest(type: number, id: Buffer, path: string): Buffer {
  return frame(type, Buffer.concat([id, Buffer.from(path, 'utf8')]))
}

export function writeRequest(id: Buffer, size: number, path: string): Buffer {
  const n = Buffer.allocUnsafe(8)
  n.writeBigUInt64BE(BigInt(size))
  return frame(Req.write, Buffer.concat([id, n, Buffer.from(path, 'utf8')]))
}

/** A u64 from the agent as a number, or undefined beyond what a number holds exactly. */
export function readSize(payload: Buffer, offset: number): number | undefined {
  if (payload.length < offset + 8) return undefined
  const n = payload.readBigUInt64BE(offset)
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(`isorun-agent protocol: ${message}`)
    this.name = 'ProtocolError'
  }
}

/**
 * Splits a byte stream into frames, refusing any larger than `maxPayload`. A frame that lies within one
 * chunk is a view of it (no copy); one spread over several chunks is copied once, when complete.
 */
export class FrameReader {
  private readonly maxPayload: number
  /** Chunks holding the start of an incomplete frame, and how many bytes they add up to. */
  private parts: Buffer[] = []
  private partBytes = 0

  constructor(maxPayload = MAX_FRAME_FROM_AGENT) {
    this.maxPayload = maxPayload
  }

  /** The complete frames `chunk` finishes; throws ProtocolError on an oversized frame. */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = []
    let data = chunk
    if (this.parts.length > 0) {
      // Only the bytes the pending frame still needs are joined to it; the rest is parsed in place.
      this.parts.push(chunk)
      this.partBytes += chunk.length
      const head = this.partBytes >= 5 ? this.headerOfParts() : undefined
      if (head === undefined || this.partBytes < 5 + head) return frames
      const used = 5 + head
      const joined = Buffer.concat(this.parts, used)
      frames.push({ type: joined[0] as number, payload: joined.subarray(5) })
      data = chunk.subarray(chunk.length - (this.partBytes - used))
      this.parts = []
      this.partBytes = 0
    }
    let offset = 0
    while (data.length - offset >= 5) {
      const length = data.readUInt32BE(offset + 1)
      if (length > this.maxPayload) throw new ProtocolError(`a frame of ${length} bytes`)
      if (data.length - offset - 5 < length) break
      frames.push({ type: data[offset] as number, payload: data.subarray(offset + 5, offset + 5 + length) })
      offset += 5 + length
    }
    if (offset < data.length) {
      this.parts = [data.subarray(offset)]
      this.partBytes = data.length - offset
      if (this.partBytes >= 5) this.headerOfParts()
    }
    return frames
  }

  /** The pending frame's payload length (its header complete); throws on an oversized frame. */
  private headerOfParts(): number {
    const first = this.parts[0] as Buffer
    const header = first.length >= 5 ? first : Buffer.concat(this.parts, 5)
    const length = header.readUInt32BE(1)
    if (length > this.maxPayload) throw new ProtocolError(`a frame of ${length} bytes`)
    return length
  }
}
