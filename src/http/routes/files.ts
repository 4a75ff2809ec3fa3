import type { FastifyInstance } from 'fastify'
import type { GuestOperations } from '../../sandboxes/guest-operations.ts'
import { error, json, noBody } from '../openapi.ts'
import { PathQuery, RunParams } from '../schemas.ts'
import { uploadBody } from '../upload-body.ts'
import { DirEntriesWire } from '../wire.ts'
import type { ZodTypeProvider } from '../zod-provider.ts'

/**
 * Files in a sandbox. Uploads are raw bytes of any content type (the SDK sends octet-stream), streamed
 * into the sandbox, never held in memory whole (see upload-body.ts); the sandbox is found before the
 * first byte is read (run-guard.ts).
 */
export function fileRoutes(
  fastify: FastifyInstance,
  guest: GuestOperations,
  uploadLimit: number,
  spoolDir: string,
): void {
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
      const upload = await uploadBody(request, uploadLimit, spoolDir)
      try {
        await guest.writeFile(
          request.owner,
          request.params.id,
          request.query.path,
          upload.size,
          upload.content,
        )
      } finally {
        upload.dispose()
      }
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
