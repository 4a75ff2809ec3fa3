import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdirSync, rmSync, type WriteStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import { EmulatorError } from '../errors.ts'
import { DIR_MODE, FILE_MODE } from '../store/files.ts'

/** An upload's bytes as the engine takes them: the size first (a tar header needs it), then a stream. */
export interface UploadBody {
  size: number
  content: Readable
  /** Releases what the upload holds (a spooled file) once the engine is done, or failed, with it. */
  dispose(): void
}

/**
 * The bytes of a files/upload request, never held in memory whole. With a Content-Length they stream
 * straight through. A chunked upload's size is only known at its end, so it is spooled to a file under
 * `spoolDir` (bounded by the upload limit), then streamed from there; the file is unlinked as soon as
 * it is open, so nothing is left behind whatever happens next. Engine-agnostic: whoever consumes the
 * stream (an archive, an in-guest agent) sees the same thing either way.
 */
export async function uploadBody(
  request: FastifyRequest,
  limit: number,
  spoolDir: string,
): Promise<UploadBody> {
  const body = request.body as Readable | undefined
  if (!body) return { size: 0, content: Readable.from([]), dispose: () => undefined }
  const declared = request.headers['content-length']
  if (declared !== undefined && Number.isFinite(Number(declared))) {
    if (Number(declared) > limit) throw tooLarge(limit)
    return { size: Number(declared), content: body, dispose: () => undefined }
  }
  return spool(body, limit, spoolDir)
}

async function spool(body: Readable, limit: number, spoolDir: string): Promise<UploadBody> {
  mkdirSync(spoolDir, { recursive: true, mode: DIR_MODE })
  const file = join(spoolDir, `${randomBytes(8).toString('hex')}.part`)
  try {
    const size = await copyBounded(body, createWriteStream(file, { mode: FILE_MODE }), limit)
    // Open before unlinking: the open file keeps its bytes until the stream is done with them.
    const handle = await open(file, 'r')
    rmSync(file, { force: true })
    const content = handle.createReadStream()
    return { size, content, dispose: () => content.destroy() }
  } catch (err) {
    rmSync(file, { force: true })
    throw err
  }
}

/**
 * Copies the request body to the file with backpressure. Past the limit it stops reading and fails, but
 * leaves the request alone, so the client still gets its 413 (Node discards the rest of the body).
 */
function copyBounded(body: Readable, out: WriteStream, limit: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let size = 0
    const fail = (err: unknown) => {
      body.off('data', onData)
      body.pause()
      out.destroy()
      reject(err)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) return fail(tooLarge(limit))
      if (!out.write(chunk)) {
        body.pause()
        out.once('drain', () => body.resume())
      }
    }
    body.on('data', onData)
    body.once('end', () => out.end())
    body.once('error', fail)
    out.once('error', fail)
    out.once('finish', () => resolve(size))
  })
}

/** Spooled uploads a crash interrupted: removed at start. */
export function clearUploadSpool(spoolDir: string): void {
  rmSync(spoolDir, { recursive: true, force: true })
}

function tooLarge(limit: number): EmulatorError {
  return new EmulatorError('payload_too_large', 413, `upload larger than the limit of ${limit} bytes`, {
    limit,
  })
}
