import { posix } from 'node:path'
import Docker from 'dockerode'

/**
 * The one place that decides how to reach the engine: dockerode honours DOCKER_HOST (unix socket,
 * tcp://, with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) and otherwise uses /var/run/docker.sock.
 * The client only ever talks to the engine (see hardenModem).
 */
export function createDockerClient(options?: Docker.DockerOptions): Docker {
  const docker = new Docker(options)
  hardenModem(docker.modem as unknown as Modem)
  return docker
}

/** The two docker-modem calls every request goes through (dockerode's types do not declare them). */
interface Modem {
  dial(options: { path?: string }, callback: (err: unknown, data?: unknown) => void): unknown
  buildRequest(options: object, context: object, data: unknown, callback: (err: unknown) => void): unknown
}

/**
 * docker-modem follows redirects on its own (a copy of follow-redirects), to whatever host the
 * `Location` names, on a request nobody listens to for errors. Docker answers 301 to a path it would
 * clean (`/images/../../127.0.0.1:1/x/json`), so a name with dot segments sent the emulator to another
 * host, and that request's failure ended the process. Here no redirect is ever followed (the engine's
 * 3xx is an error like any other), and a request whose path Docker would clean or decode into something
 * else is refused before it is sent.
 */
function hardenModem(modem: Modem): void {
  const dial = modem.dial.bind(modem)
  modem.dial = (options, callback) => {
    const problem = uncleanPath(options.path ?? '')
    if (problem) {
      callback(new Error(`refused to send ${problem} to the engine`))
      return undefined
    }
    return dial(options, callback)
  }
  const buildRequest = modem.buildRequest.bind(modem)
  modem.buildRequest = (options, context, data, callback) =>
    buildRequest({ ...options, maxRedirects: 0 }, context, data, callback)
}

/** Why Docker would not take `path` as it is (it would clean or decode it into another), or undefined. */
export function uncleanPath(path: string): string | undefined {
  const pathname = path.split('?')[0] ?? ''
  let decoded: string
  try {
    decoded = decodeURIComponent(pathname)
  } catch {
    return `a malformed path (${JSON.stringify(pathname)})`
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u0020\u007f]/.test(decoded)) return `a path with control characters or spaces`
  if (posix.normalize(decoded) !== decoded || (decoded.endsWith('/') && decoded !== '/')) {
    return `an unclean path (${JSON.stringify(decoded)})`
  }
  return undefined
}
