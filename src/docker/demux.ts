/**
 * Collects Docker's multiplexed exec stream (8-byte frame headers: stream type, 3 zero bytes, a 32-bit
 * big-endian length) into stdout and stderr, keeping at most `limit` bytes of each and counting the
 * rest, so that a command printing gigabytes cannot exhaust the emulator's memory.
 */
export class BoundedDemux {
  private pending: Buffer = Buffer.alloc(0)
  private readonly out: Buffer[] = []
  private readonly err: Buffer[] = []
  private outBytes = 0
  private errBytes = 0
  stdoutTruncated = false
  stderrTruncated = false
  private readonly limit: number

  constructor(limit: number) {
    this.limit = limit
  }

  push(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    let offset = 0
    while (this.pending.length - offset >= 8) {
      const type = this.pending[offset]
      const size = this.pending.readUInt32BE(offset + 4)
      if (this.pending.length - offset - 8 < size) break
      const payload = this.pending.subarray(offset + 8, offset + 8 + size)
      if (type === 2) this.keep(payload, 'err')
      else this.keep(payload, 'out')
      offset += 8 + size
    }
    this.pending = offset === this.pending.length ? Buffer.alloc(0) : this.pending.subarray(offset)
  }

  stdout(): Buffer {
    return Buffer.concat(this.out)
  }

  stderr(): Buffer {
    return Buffer.concat(this.err)
  }

  private keep(payload: Buffer, which: 'out' | 'err'): void {
    const have = which === 'out' ? this.outBytes : this.errBytes
    const room = this.limit - have
    if (room <= 0) {
      this.markTruncated(which)
      return
    }
    // Copy, so that a small kept slice does not pin a whole socket chunk in memory.
    const kept = Buffer.from(payload.length > room ? payload.subarray(0, room) : payload)
    if (payload.length > room) this.markTruncated(which)
    if (which === 'out') {
      this.out.push(kept)
      this.outBytes += kept.length
    } else {
      this.err.push(kept)
      this.errBytes += kept.length
    }
  }

  private markTruncated(which: 'out' | 'err'): void {
    if (which === 'out') this.stdoutTruncated = true
    else this.stderrTruncated = true
  }
}
