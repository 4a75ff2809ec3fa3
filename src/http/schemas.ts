import { z } from 'zod'
import { InvalidImageReference, parseImageReference } from '../images/reference.ts'
import { MAX_FORK_COUNT } from '../sandboxes/checkpoints.ts'

/**
 * Wire schemas, snake_case exactly as isorun@1.0.1 sends them. Defaults are the SDK's documented ones.
 * Unknown fields are ignored, as a cloud API would.
 */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * Text the engine gets as it was sent, or a 400: never changed on the way. A NUL would end it (exec
 * argv, environment values and paths are C strings), a lone surrogate would become U+FFFD in UTF-8.
 */
const passedOn = (text: z.ZodString) =>
  text
    .refine((t) => !t.includes('\0'), 'must not contain NUL')
    .refine((t) => !LONE_SURROGATE.test(t), 'must be well-formed Unicode (no lone surrogate)')

export const NetworkPolicy = z.object({
  allow: z.array(z.string().min(1).max(253)).max(1000).optional(),
  deny: z.array(z.string().min(1).max(253)).max(1000).optional(),
})

/** An image by name (Docker's reference grammar), never a path, an image id or the emulator's own. */
const ImageReference = z
  .string()
  .max(512)
  .superRefine((text, ctx) => {
    try {
      parseImageReference(text)
    } catch (err) {
      if (!(err instanceof InvalidImageReference)) throw err
      ctx.addIssue({ code: 'custom', message: err.message })
    }
  })

export const CreateRunBody = z.object({
  image: ImageReference.default('node:22-slim'),
  vcpus: z.number().int().min(1).max(64).default(1),
  mem_mib: z
    .number()
    .int()
    .min(64)
    .max(256 * 1024)
    .default(1024),
  disk_mib: z
    .number()
    .int()
    .min(64)
    .max(1024 * 1024)
    .default(4096),
  // Idle seconds before auto-destroy; 0 disables it.
  timeout: z
    .number()
    .min(0)
    .max(30 * 24 * 3600)
    .default(300),
  network: NetworkPolicy.optional(),
  network_profile: z.string().min(1).max(128).optional(),
  credentials: z
    .record(
      z.string().regex(ENV_NAME, 'must be a valid environment variable name'),
      passedOn(z.string().max(64 * 1024)),
    )
    .optional(),
})
export type CreateRunBody = z.infer<typeof CreateRunBody>

export const PatchRunBody = z.object({
  timeout: z
    .number()
    .min(0)
    .max(30 * 24 * 3600),
})

export const ExecBody = z.object({
  command: passedOn(
    z
      .string()
      .min(1)
      .max(1024 * 1024),
  ),
  // Seconds before the command is killed; the SDK's default is 30. 0 = no limit. The engine counts
  // whole milliseconds, so less than one would round to 0, no limit at all.
  timeout: z
    .number()
    .min(0)
    .max(24 * 3600)
    .refine((t) => t === 0 || t >= 0.001, 'must be 0 (no limit) or at least 0.001 (a millisecond)')
    .default(30),
})

export const RunParams = z.object({ id: z.string().min(1).max(128) })

export const PathQuery = z.object({
  path: passedOn(z.string().min(1).max(4096)).refine((p) => p.startsWith('/'), 'must be an absolute path'),
})

export const ForkBody = z.object({
  count: z.number().int().min(1).max(MAX_FORK_COUNT).default(1),
})

export const RestoreBody = z.object({
  snapshot_id: z.string().min(1).max(128),
})

export const SnapshotParams = z.object({ id: z.string().min(1).max(128) })
