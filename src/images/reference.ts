/**
 * Image references as a tenant may name them: Docker's grammar (github.com/distribution/reference,
 * the one dockerd parses with), normalized the way `docker` does (`busybox` is
 * `docker.io/library/busybox:latest`). Engines are only ever handed the canonical form, so a reference
 * cannot be read as anything but a name: not as a path (`../`), not as an image id or an id prefix
 * (Docker looks a bare `e540aed99b11` up as an id when no image has that name; never a fully qualified
 * name), and not as one of the emulator's own images (snapshots are reached through restore, by their
 * owner).
 */

const ALNUM = '[a-z0-9]+'
const SEPARATOR = '(?:[._]|__|[-]+)'
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const DOMAIN_NAME = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*`
// No IPv6 hosts (`[::1]:5000`): newer versions of the grammar have them, Docker 20.10's dockerd refuses them.
const DOMAIN = `${DOMAIN_NAME}(?::[0-9]+)?`
const TAG = '[\\w][\\w.-]{0,127}'
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}'

const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`)
const DOMAIN_RE = new RegExp(`^${DOMAIN}$`)
const TAG_RE = new RegExp(`^${TAG}$`)
const DIGEST_RE = new RegExp(`^${DIGEST}$`)
const IDENTIFIER_RE = /^[a-f0-9]{64}$/

/** distribution/reference's NameTotalLengthMax. */
const NAME_MAX = 255

/** Docker Hub, as references name it once normalized. */
export const DEFAULT_REGISTRY = 'docker.io'

/**
 * Repositories that are the emulator's own (snapshot images, its own image): no tenant may name them.
 * Matched as a prefix of the Docker Hub official-image name (`isorun-emulator-snapshot:<id>`).
 */
const RESERVED_PREFIX = 'isorun-emulator'

export interface ImageReference {
  /** The registry: `docker.io` for Docker Hub, else the host[:port] the reference names. */
  domain: string
  /** The repository path within the registry (`library/busybox`). */
  path: string
  tag: string | undefined
  digest: string | undefined
  /** `domain/path[:tag][@digest]`, with `:latest` when it has neither: what the engine is given. */
  canonical: string
}

export class InvalidImageReference extends Error {}

/** Parses a reference a tenant gave; throws InvalidImageReference saying what is wrong with it. */
export function parseImageReference(text: string): ImageReference {
  if (text.length === 0) throw new InvalidImageReference('must not be empty')
  if (IDENTIFIER_RE.test(text) || /^sha256:/i.test(text)) {
    throw new InvalidImageReference(`must name an image (name[:tag][@digest]), not an image id`)
  }
  let rest = text
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST_RE.test(digest)) throw invalid(text, `"${digest}" is not a valid digest`)
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG_RE.test(tag)) throw invalid(text, `"${tag}" is not a valid tag`)
  }
  const { domain, path } = splitDomain(rest)
  if (path.toLowerCase() !== path) throw invalid(text, 'the repository name must be lowercase')
  if (!DOMAIN_RE.test(domain)) throw invalid(text, `"${domain}" is not a valid registry host`)
  if (!PATH_RE.test(path)) throw invalid(text, `"${path}" is not a valid repository name`)
  const name = `${domain}/${path}`
  if (name.length > NAME_MAX) {
    throw new InvalidImageReference(`repository name longer than ${NAME_MAX} characters`)
  }
  if (domain === DEFAULT_REGISTRY && path.startsWith(`library/${RESERVED_PREFIX}`)) {
    throw new InvalidImageReference(
      `${RESERVED_PREFIX}* repositories are reserved for the emulator's own images (restore a snapshot by its id)`,
    )
  }
  const canonical =
    name +
    (tag !== undefined ? `:${tag}` : digest === undefined ? ':latest' : '') +
    (digest ? `@${digest}` : '')
  return { domain, path, tag, digest, canonical }
}

/**
 * Docker's rule: the part before the first `/` is a registry when it has a `.` or a `:`, is
 * `localhost`, or has upper case; otherwise the whole name is a Docker Hub repository, and one without
 * a `/` is an official image (`library/`).
 */
function splitDomain(name: string): { domain: string; path: string } {
  const slash = name.indexOf('/')
  const first = name.slice(0, slash)
  if (slash < 0 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    return { domain: DEFAULT_REGISTRY, path: name.includes('/') ? name : `library/${name}` }
  }
  const rest = name.slice(slash + 1)
  if (first === 'index.docker.io')
    return { domain: DEFAULT_REGISTRY, path: rest.includes('/') ? rest : `library/${rest}` }
  if (first === DEFAULT_REGISTRY && !rest.includes('/')) return { domain: first, path: `library/${rest}` }
  return { domain: first, path: rest }
}

function invalid(text: string, why: string): InvalidImageReference {
  return new InvalidImageReference(`${JSON.stringify(text)} is not a valid image reference: ${why}`)
}
