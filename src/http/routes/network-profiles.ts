import type { FastifyInstance } from 'fastify'
import type { NetworkProfiles } from '../../egress/profiles.ts'
import { json } from '../openapi.ts'
import { NetworkProfileListWire } from '../wire.ts'

/** The named egress policies a create may ask for, as a bare array (the SDK reads it as it is). */
export function networkProfileRoutes(app: FastifyInstance, profiles: NetworkProfiles): void {
  app.get(
    '/network-profiles',
    {
      schema: {
        openapi: {
          operationId: 'networkProfiles',
          tag: 'runs',
          summary: 'The named egress policies a create may ask for (network_profile)',
          responses: { 200: json('the profiles', NetworkProfileListWire) },
        },
      },
    },
    async () => profiles.list(),
  )
}
