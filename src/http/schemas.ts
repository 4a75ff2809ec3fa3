import { z } from 'zod'
import { InvalidImageReference, parseImageReference } from '../images/reference.ts'
import { MAX_FORK_COUNT } from '../sandboxes/checkpoints.ts'

/**
 * Wire schemas, snake_case exactly as isorun@1.0.1 sends them. Defaults are the SDK's documented ones.
 * Unknown fields are ignored, as a cloud API would.
 */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

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
      z.string().max(64 * 1024),
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
  command: z
    .string()
    .min(1)
    .max(1024 * 1024),
  // Seconds before the command is killed; the SDK's default is 30. 0 = no limit.
  timeout: z
    .number()
    .min(0)
    .max(24 * 3600)
    .default(30),
})

export const RunParams = z.object({ id: z.string().min(1).max(128) })

export const PathQuery = z.object({
  path: z
    .string()
    .min(1)
    .max(4096)
    .refine((p) => p.startsWith('/'), 'must be an absolute path')
    .refine((p) => !p.includes('\0'), 'must not contain NUL'),
})

export const ForkBody = z.object({
  count: z.number().int().min(1).max(MAX_FORK_COUNT).default(1),
})

export const RestoreBody = z.object({
  snapshot_id: z.string().min(1).max(128),
})

export const SnapshotParams = z.object({ id: z.string().min(1).max(128) })
