import type { FastifySchemaCompiler, FastifyTypeProvider } from 'fastify'
import type { z } from 'zod'

/**
 * Routes declare zod schemas for `params`, `querystring` and `body`; Fastify validates a request with
 * them before its handler runs, and the handler sees the parsed values with their types (defaults
 * filled in). A failure reaches the error handler as the ZodError, which maps it to the one
 * `validation_failed` answer. (fastify-type-provider-zod does the same, but turns an absent body into a
 * failure and validates responses too; this is the part the emulator needs.)
 */
export interface ZodTypeProvider extends FastifyTypeProvider {
  validator: this['schema'] extends z.ZodType ? z.output<this['schema']> : unknown
  serializer: this['schema'] extends z.ZodType ? z.input<this['schema']> : unknown
}

/** An absent body or query is `{}`, so a bodiless POST gets the schema's defaults. */
export const zodValidatorCompiler: FastifySchemaCompiler<z.ZodType> =
  ({ schema }) =>
  (data) => {
    const result = schema.safeParse(data ?? {})
    return result.success ? { value: result.data } : { error: result.error }
  }
