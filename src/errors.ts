/**
 * The one error type of the emulator. Every failure a client can see is an EmulatorError with a stable
 * `code`, an HTTP `status` and a message that names the problem; the HTTP error handler turns it into
 * the single body shape `{ "error": "<message>", "code", "details"? }` (the SDK's own).
 */
export type ErrorCode =
  | 'bad_request'
  | 'request_timeout'
  | 'headers_too_large'
  | 'unauthorized'
  | 'forbidden'
  | 'validation_failed'
  | 'not_found'
  | 'route_not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'quota_exceeded'
  | 'uri_too_long'
  | 'unsupported_media_type'
  | 'image_unavailable'
  | 'not_a_file'
  | 'not_a_directory'
  | 'capability_unavailable'
  | 'not_implemented'
  | 'engine_unavailable'
  | 'engine_error'
  | 'bad_gateway'
  | 'internal'

export class EmulatorError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly details: Record<string, unknown> | undefined

  constructor(code: ErrorCode, status: number, message: string, details?: Record<string, unknown>) {
    super(message)
    this.name = 'EmulatorError'
    this.code = code
    this.status = status
    this.details = details
  }
}

/** Message templates live here, in one place, so the wording stays consistent across routes. */
export const Errors = {
  /** A request Node's HTTP parser (or the fast lane, as strict) refuses: `why` is the parser's word. */
  badRequest: (why: string) => new EmulatorError('bad_request', 400, `malformed HTTP request: ${why}`),
  headTimeout: (ms: number) =>
    new EmulatorError(
      'request_timeout',
      408,
      `the request head did not arrive within ${ms / 1000} s (ISORUN_EMULATOR_HEADERS_TIMEOUT_MS)`,
    ),
  headTooLarge: (why: string) =>
    new EmulatorError('headers_too_large', 431, `request head too large: ${why}`),
  unauthorized: (why: string) => new EmulatorError('unauthorized', 401, why),
  forbidden: (why: string) => new EmulatorError('forbidden', 403, why),
  /** A Host header naming none of the emulator's names: a DNS-rebinding page, or a name to allow. */
  foreignHost: (host: string) =>
    new EmulatorError(
      'forbidden',
      403,
      `Host ${JSON.stringify(host)} is not a name of this emulator (refused as DNS rebinding); add it to ISORUN_EMULATOR_ALLOWED_HOSTS if clients really use it`,
      { host },
    ),
  unsupportedMediaType: (why: string) => new EmulatorError('unsupported_media_type', 415, why),
  /** 429: what the SDK's users branch on (IsorunError.status) for "not now, not this much". */
  quotaExceeded: (why: string, details: Record<string, unknown>) =>
    new EmulatorError('quota_exceeded', 429, `quota exceeded: ${why}`, details),
  validation: (field: string, problem: string) =>
    new EmulatorError('validation_failed', 400, `${field}: ${problem}`, { field }),
  runNotFound: (id: string) => new EmulatorError('not_found', 404, `sandbox ${id} not found`, { id }),
  snapshotNotFound: (id: string) => new EmulatorError('not_found', 404, `snapshot ${id} not found`, { id }),
  pathNotFound: (path: string) =>
    new EmulatorError('not_found', 404, `no such file or directory: ${path}`, { path }),
  notAFile: (path: string) => new EmulatorError('not_a_file', 400, `not a regular file: ${path}`, { path }),
  /** A file that changed size while it was read: what was sent is not the file. */
  fileChanged: (path: string) =>
    new EmulatorError('conflict', 409, `${path} changed while it was being read; read it again`, { path }),
  notADirectory: (path: string) =>
    new EmulatorError('not_a_directory', 400, `not a directory: ${path}`, { path }),
  /** A write the container's file system refuses (`why`: the reason, in words: UNWRITABLE_WHY). */
  unwritablePath: (path: string, why: string) =>
    new EmulatorError('conflict', 409, `cannot write ${path}: ${why}`, { path }),
  conflict: (message: string, details?: Record<string, unknown>) =>
    new EmulatorError('conflict', 409, message, details),
  /**
   * `mapped`: the name the create gave, when the image map chose `image` for it; `standIn`: the command
   * that builds `image` when it is one of the emulator's stand-ins. The message ends with how to get it.
   */
  imageUnavailable: (image: string, why: string, mapped?: { requested: string; standIn?: string }) => {
    const how = mapped?.standIn
      ? [`restart the emulator (it builds missing stand-ins at start)`, `run ${mapped.standIn}`]
      : [
          `docker pull ${image} where a registry is reachable`,
          `docker load -i FILE (an archive docker save made elsewhere)`,
          `docker tag LOCAL_IMAGE ${image}`,
          `docker build -t ${image} DIR`,
        ]
    how.push(`map ${mapped?.requested ?? image} to an image you have (ISORUN_EMULATOR_IMAGE_MAP)`)
    const what = !mapped
      ? `image ${image} is not available locally and could not be pulled`
      : mapped.standIn
        ? `image ${mapped.requested} runs the stand-in ${image}, which is not built`
        : `image ${mapped.requested} runs ${image} (ISORUN_EMULATOR_IMAGE_MAP), which is not available locally and could not be pulled`
    return new EmulatorError('image_unavailable', 400, `${what}: ${why}. To get it: ${how.join('; or ')}`, {
      image,
      ...(mapped ? { requested: mapped.requested } : {}),
      why,
      how,
    })
  },
  notImplemented: (what: string) =>
    new EmulatorError(
      'not_implemented',
      501,
      `${what} is not implemented by this version of isorun-emulator`,
    ),
  engineUnavailable: (why: string) =>
    new EmulatorError('engine_unavailable', 503, `the container engine is not reachable: ${why}`),
  engine: (message: string) => new EmulatorError('engine_error', 500, message),
  /** CRIU refused a checkpoint: `why` in words, `criu` its own line from the dump log. */
  checkpointRefused: (why: string, criu: string) =>
    new EmulatorError('engine_error', 500, `checkpoint failed: ${why}`, { criu }),
  badGateway: (id: string, port: number, why: string) =>
    new EmulatorError('bad_gateway', 502, `nothing answered on port ${port} of sandbox ${id}: ${why}`, {
      id,
      port,
    }),
}

export function isEmulatorError(err: unknown): err is EmulatorError {
  return err instanceof EmulatorError
}

/** Why a container's file system refuses a write, by the kernel's errno: the same words on every path. */
export const UNWRITABLE_WHY = {
  busy: 'the engine mounts it into the sandbox (as /etc/hostname, /etc/hosts and /etc/resolv.conf), so it cannot be replaced',
  readOnly: 'it is on a read-only file system',
  notPermitted: 'the sandbox’s file system does not allow replacing it',
} as const
