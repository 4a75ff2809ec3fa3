import type { z } from 'zod'
import { Errors } from '../errors.ts'

/** Parses `value` with `schema`; a failure is a 400 whose message names the first offending field. */
export function parse<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: 'body' | 'query' | 'params',
): z.infer<S> {
  const result = schema.safeParse(value ?? {})
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const field = [where, ...(issue?.path ?? [])].join('.')
  throw Errors.validation(field, issue?.message ?? 'invalid')
}
