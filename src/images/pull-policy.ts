import { DEFAULT_REGISTRY, type ImageReference } from './reference.ts'

/**
 * When the engine may pull an image, and from where. A pull makes the engine (dockerd, as root) connect
 * to the registry the reference names, whichever host and port that is, loopback included; tenants name
 * images, so the registries are the emulator operator's choice.
 */
export interface PullPolicy {
  /** `missing`: pull an image that is not present locally; `never`: use local images only. */
  mode: 'missing' | 'never'
  /** Registries (`host[:port]`, `docker.io` for Docker Hub) pulls may contact; `*`: any. */
  registries: readonly string[]
}

export const DEFAULT_PULL_POLICY: PullPolicy = { mode: 'missing', registries: [DEFAULT_REGISTRY] }

/** Names of Docker Hub other than `docker.io`, as references and registry lists may spell it. */
const DOCKER_HUB_ALIASES = new Set(['index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com'])

/** A registry as a list entry or a reference names it: lower case, Docker Hub's aliases as `docker.io`. */
export function normalizeRegistry(host: string): string {
  const h = host.trim().toLowerCase()
  return DOCKER_HUB_ALIASES.has(h) ? DEFAULT_REGISTRY : h
}

/** Parses `host[:port],...` (or `*`); throws naming the first bad entry. */
export function parseRegistries(text: string): string[] {
  const out: string[] = []
  for (const entry of text.split(',')) {
    const trimmed = entry.trim()
    if (!trimmed) continue
    if (
      trimmed !== '*' &&
      !/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::\d{1,5})?$/i.test(trimmed)
    ) {
      throw new Error(`"${trimmed}" is not a registry (host[:port], or * for any)`)
    }
    const registry = normalizeRegistry(trimmed)
    if (!out.includes(registry)) out.push(registry)
  }
  return out
}

/** Why `ref` may not be pulled under `policy`, or undefined when it may. */
export function pullRefusal(ref: ImageReference, policy: PullPolicy): string | undefined {
  if (policy.mode === 'never')
    return 'pulls are off (ISORUN_EMULATOR_PULL=never): only local images can be used'
  const registry = normalizeRegistry(ref.domain)
  if (policy.registries.includes('*') || policy.registries.includes(registry)) return undefined
  return (
    `its registry ${registry} is not in the allowed registries (${policy.registries.join(', ') || 'none'}); ` +
    'the operator can add it to ISORUN_EMULATOR_PULL_REGISTRIES'
  )
}
