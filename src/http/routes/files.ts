import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { EmulatorError } from '../../errors.ts'
import type { GuestOperations } from '../../sandboxes/guest-operations.ts'
import { error, json, noBody } from '../openapi.ts'
import { PathQuery, RunParams } from '../schemas.ts'
import { DirEntriesWire } from '../wire.ts'
import type { ZodTypeProvider } from '../zod-provider.ts'

/**
 * Files in a sandbox. Uploads are raw bytes of any content type (the SDK sends octet-stream), streamed
 * into the sandbox without being held in memory when the request says its length.
 */
export function fileRoutes(fastify: FastifyInstance, guest: GuestOperations, uploadLimit: number): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  // Every body in this scope is a file's bytes, whatever its content type (even application/json).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))

  app.post(
    '/runs/:id/files/upload',
    {
      schema: {
        params: RunParams,
        querystring: PathQuery,
        openapi: {
          operationId: 'writeFile',
          tag: 'files',
          summary: 'Write a file (raw bytes of any content type, streamed)',
          rawBody: 'the file content',
          responses: {
            204: noBody('written'),
            409: error('the sandbox is hibernated'),
            413: error('larger than ISORUN_EMULATOR_UPLOAD_LIMIT'),
          },
        },
      },
    },
    async (request, reply) => {
      const { size, content } = await uploadBody(request, uploadLimit)
      await guest.writeFile(request.owner, request.params.id, request.query.path, size, content)
      return reply.status(204).send()
    },
  )

  app.get(
    '/runs/:id/files/download',
    {
      schema: {
        params: RunParams,
        querystring: PathQuery,
        openapi: {
          operationId: 'readFile',
          tag: 'files',
          summary: 'Read a file',
          responses: {
            200: { description: 'the file content', contentType: 'application/octet-stream' },
            409: error('the sandbox is hibernated'),
          },
        },
      },
    },
    async (request, reply) => {
      const file = await guest.readFile(request.owner, request.params.id, request.query.path)
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(file.size))
        .send(file.stream)
    },
  )

  app.get(
    '/runs/:id/files',
    {
      schema: {
        params: RunParams,
        querystring: PathQuery,
        openapi: {
          operationId: 'readdir',
          tag: 'files',
          summary: "A directory's entry names",
          responses: { 200: json('entry names', DirEntriesWire), 409: error('the sandbox is hibernated') },
        },
      },
    },
    async (request) => ({
      entries: await guest.listDir(request.owner, request.params.id, request.query.path),
    }),
  )
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
