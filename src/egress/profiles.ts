import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { Errors } from '../errors.ts'
import type { EgressPolicy } from '../sandboxes/egress-enforcer.ts'
import { compilePolicy, type InvalidRule, isRestrictive, normalizeHost } from './policy.ts'

/** A named egress policy, exactly as GET /v1/network-profiles returns it (the SDK's NetworkProfile). */
export interface NetworkProfile {
  name: string
  description?: string
  allow: string[]
  deny: string[]
}

/** Built in; a profiles file may replace any of them by name and add its own. */
export const BUILTIN_PROFILES: readonly NetworkProfile[] = [
  {
    name: 'default',
    description:
      'Unrestricted egress: the plain Docker network, as with no policy. Sandboxes created without network or network_profile get this profile.',
    allow: [],
    deny: [],
  },
  {
    name: 'none',
    description: 'No egress at all: an isolated network; the egress proxy refuses every destination.',
    allow: [],
    deny: ['*'],
  },
  {
    name: 'web-dev',
    description:
      'Package registries and source hosts only: npm, Yarn, PyPI, crates.io, the Go module proxy and GitHub.',
    allow: [
      'registry.npmjs.org',
      'registry.yarnpkg.com',
      'pypi.org',
      'files.pythonhosted.org',
      'crates.io',
      'index.crates.io',
      'static.crates.io',
      'proxy.golang.org',
      'sum.golang.org',
      'github.com',
      '*.github.com',
      '*.githubusercontent.com',
    ],
    deny: [],
  },
]

const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

const ProfilesFile = z.array(
  z.object({
    name: z.string().regex(PROFILE_NAME, 'must be 1-128 letters, digits, dots, dashes or underscores'),
    description: z.string().max(1024).optional(),
    allow: z.array(z.string().min(1).max(253)).max(1000).default([]),
    deny: z.array(z.string().min(1).max(253)).max(1000).default([]),
  }),
)

/** What a create asks for, as the wire sends it. */
export interface PolicyRequest {
  network?: { allow?: string[]; deny?: string[] }
  network_profile?: string
}

/**
 * The network profiles of this emulator: the built-ins, with a JSON file's profiles (an array in the
 * shape GET /v1/network-profiles returns) merged over them by name.
 */
export class NetworkProfiles {
  private readonly profiles: NetworkProfile[]

  constructor(profiles: readonly NetworkProfile[] = BUILTIN_PROFILES) {
    this.profiles = profiles.map((p) => ({ ...p, allow: [...p.allow], deny: [...p.deny] }))
  }

  /** The built-ins merged with `file`'s profiles; an unreadable or invalid file throws, naming it. */
  static load(file: string | undefined): NetworkProfiles {
    if (!file) return new NetworkProfiles()
    let parsed: z.infer<typeof ProfilesFile>
    try {
      parsed = ProfilesFile.parse(JSON.parse(readFileSync(file, 'utf8')))
    } catch (err) {
      const issue = err instanceof z.ZodError ? err.issues[0] : undefined
      const why = issue ? `[${issue.path.join('.')}]: ${issue.message}` : (err as Error).message
      throw new Error(`network profiles file ${file}: ${why}`)
    }
    const merged = new Map(BUILTIN_PROFILES.map((p) => [p.name, p]))
    for (const p of parsed) {
      try {
        compilePolicy(p)
      } catch (err) {
        const e = err as InvalidRule
        throw new Error(
          `network profiles file ${file}: profile ${p.name}: ${e.list}[${e.index}]: ${e.message}`,
        )
      }
      merged.set(p.name, p)
    }
    return new NetworkProfiles([...merged.values()])
  }

  list(): NetworkProfile[] {
    return this.profiles.map((p) => ({ ...p, allow: [...p.allow], deny: [...p.deny] }))
  }

  /**
   * The policy a create gets: the named profile's rules plus the explicit ones (deny lists and allow
   * lists are each joined: "web-dev, and also my API"), or the `default` profile's when neither is
   * given. Undefined when nothing is restricted: the sandbox runs exactly as without a policy.
   * An unknown profile or an invalid rule is a 400 naming it.
   */
  policyFor(request: PolicyRequest): EgressPolicy | undefined {
    const name = request.network_profile
    const profile = this.profiles.find((p) => p.name === (name ?? 'default'))
    if (!profile) {
      throw Errors.validation(
        'body.network_profile',
        `unknown network profile "${name}"; known profiles: ${this.profiles.map((p) => p.name).join(', ')}`,
      )
    }
    const explicit = { allow: request.network?.allow ?? [], deny: request.network?.deny ?? [] }
    try {
      compilePolicy(explicit)
    } catch (err) {
      const e = err as InvalidRule
      throw Errors.validation(`body.network.${e.list}.${e.index}`, e.message)
    }
    const named = name !== undefined || isRestrictive(profile)
    const policy: EgressPolicy = {
      ...(named ? { profile: profile.name } : {}),
      allow: unique([...profile.allow, ...explicit.allow]),
      deny: unique([...profile.deny, ...explicit.deny]),
    }
    return isRestrictive(policy) ? policy : undefined
  }
}

function unique(rules: string[]): string[] {
  return [...new Set(rules.map(normalizeHost))]
}
