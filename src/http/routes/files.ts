import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { EmulatorError } from '../../errors.ts'
import type { GuestOperations } from '../../sandboxes/guest-operations.ts'
import { PathQuery, RunParams } from '../schemas.ts'
import { parse } from '../validate.ts'

/**
 * Files in a sandbox. Uploads are raw bytes of any content type (the SDK sends octet-stream), streamed
 * into the sandbox without being held in memory when the request says its length.
 */
export function fileRoutes(app: FastifyInstance, guest: GuestOperations, uploadLimit: number): void {
  // Every body in this scope is a file's bytes, whatever its content type (even application/json).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))

  app.post('/runs/:id/files/upload', async (request, reply) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { path } = parse(PathQuery, request.query, 'query')
    const { size, content } = await uploadBody(request, uploadLimit)
    await guest.writeFile(request.owner, id, path, size, content)
    return reply.status(204).send()
  })

  app.get('/runs/:id/files/download', async (request, reply) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { path } = parse(PathQuery, request.query, 'query')
    const file = await guest.readFile(request.owner, id, path)
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(file.size))
      .send(file.stream)
  })

  app.get('/runs/:id/files', async (request) => {
    const { id } = parse(RunParams, request.params, 'params')
    const { path } = parse(PathQuery, request.query, 'query')
    return { entries: await guest.listDir(request.owner, id, path) }
  })
}

async function uploadBody(
  request: FastifyRequest,
  limit: number,
): Promise<{ size: number; content: Readable }> {
  const body = request.body as Readable | undefined
  const declared = Number(request.headers['content-length'])
  if (!body) return { size: 0, content: Readable.from([]) }
  if (Number.isFinite(declared) && request.headers['content-length'] !== undefined) {
    if (declared > limit) throw tooLarge(limit)
    return { size: declared, content: body }
  }
  // Chunked upload: its size is needed before the first byte goes into the archive, so buffer it,
  // bounded by the same limit.
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > limit) throw tooLarge(limit)
    chunks.push(chunk as Buffer)
  }
  return { size, content: Readable.from(chunks) }
}

function tooLarge(limit: number): EmulatorError {
  return new EmulatorError('payload_too_large', 413, `upload larger than the limit of ${limit} bytes`, {
    limit,
  })
}
