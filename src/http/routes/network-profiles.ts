import type { FastifyInstance } from 'fastify'
import type { NetworkProfiles } from '../../egress/profiles.ts'

/** The named egress policies a create may ask for, as a bare array (the SDK reads it as it is). */
export function networkProfileRoutes(app: FastifyInstance, profiles: NetworkProfiles): void {
  app.get('/network-profiles', async () => profiles.list())
}
