/**
 * What each engine can do with the engine on this host (`local`) and on another (`remote`): reported in
 * GET /_emulator/capabilities as `engines`, beside what this emulator's own engine does (`engine`,
 * `memory_state`, `egress`), and the table in docs/engines.md between its markers (`npm run docs:engines`
 * writes it). A cell starting with "yes" or "no" answers a yes-or-no question; the rest says how.
 */

export type EngineName = 'docker' | 'podman'
export type Where = 'local' | 'remote'

export const ABILITIES = {
  lifecycle: 'lifecycle, exec, files, warm pool',
  agent: 'exec and files through the sandbox agent',
  file_snapshots: 'snapshot / restore / fork: files',
  memory_snapshots: '... with memory (CRIU)',
  hibernate: 'hibernate',
  usage: 'usage (CPU, peak memory)',
  url_port: 'url(port)',
  sandboxes_apart: 'sandboxes kept apart (no traffic between them)',
  egress_policies: 'egress policies',
  missing_images: 'images the engine lacks',
  oom_reported: 'an OOM kill of an exited sandbox told apart (docs/api.md)',
} as const

export type Ability = keyof typeof ABILITIES
export type AbilityTable = Record<EngineName, Record<Where, Record<Ability, string>>>

/** Where each column's engine is, as the table's header says it. */
export const WHERE: Record<EngineName, Record<Where, string>> = {
  docker: { local: 'Docker, local socket', remote: 'Docker, remote `DOCKER_HOST`' },
  podman: { local: 'Podman, local socket', remote: 'Podman over TCP (another host)' },
}

const NO_PROXY_THERE = "409: the egress proxy must listen on the engine's bridge, which is another host's"
const ROUTED = "only if the containers' IPs route here"
const OOM_DOCKER = 'yes (`reason: "oom"`)'
const OOM_PODMAN =
  'no: Podman 4.3 reports an OOM kill only of the container\'s init, not of the keep-alive under it (`reason: "exited"`, `exit_code` 137)'

export const ENGINE_ABILITIES: AbilityTable = {
  docker: {
    local: {
      lifecycle: 'yes',
      agent: 'yes (docker exec where a sandbox has none, or ISORUN_EMULATOR_AGENT=off)',
      file_snapshots: 'yes',
      memory_snapshots: 'yes (dockerd --experimental, CRIU >= 4.2)',
      hibernate: 'checkpoint (memory freed)',
      usage: 'cgroup files',
      url_port: 'yes',
      sandboxes_apart: "yes (the emulator's network has enable_icc=false)",
      egress_policies: 'yes (internal network + host firewall)',
      missing_images: 'pulled (pull policy)',
      oom_reported: OOM_DOCKER,
    },
    remote: {
      lifecycle: 'yes',
      agent: "no: sandboxes would mount it from this machine's files (docker exec)",
      file_snapshots: 'yes',
      memory_snapshots: "no: Docker's checkpoints are files in its root dir, which the emulator must share",
      hibernate: 'pause (memory kept, not freed)',
      usage: 'stats API',
      url_port: ROUTED,
      sandboxes_apart: 'yes (enable_icc=false, set through the API)',
      egress_policies: NO_PROXY_THERE,
      missing_images: 'pulled (pull policy)',
      oom_reported: OOM_DOCKER,
    },
  },
  podman: {
    local: {
      lifecycle: 'yes',
      agent: "no: Podman's exec",
      file_snapshots: 'yes',
      memory_snapshots: 'yes (rootful, runc, CRIU >= 4.2; checkpoints travel as archives in API bodies)',
      hibernate: 'checkpoint (memory freed)',
      usage: 'cgroup files',
      url_port: 'yes',
      sandboxes_apart: 'yes (a FORWARD rule on its bridge: Podman has no enable_icc)',
      egress_policies: 'yes (bridge + host firewall)',
      missing_images: 'imported from the local Docker engine, else pulled',
      oom_reported: OOM_PODMAN,
    },
    remote: {
      lifecycle: 'yes',
      agent: "no: Podman's exec",
      file_snapshots: 'yes',
      memory_snapshots:
        "yes: checkpoints travel as archives in API bodies; CRIU on the engine's host is not checked from here",
      hibernate: 'checkpoint (memory freed)',
      usage: 'stats API',
      url_port: ROUTED,
      sandboxes_apart: "no: the FORWARD rule would be on the engine's host",
      egress_policies: NO_PROXY_THERE,
      missing_images: 'imported from the local Docker engine, else pulled',
      oom_reported: OOM_PODMAN,
    },
  },
}

/** Whether a cell says yes (or gives a mode, which is a yes). */
export function says(cell: string): boolean {
  return !/^(no\b|409)/.test(cell)
}

export const DOCS_BEGIN = '<!-- engine abilities: begin (npm run docs:engines writes this table) -->'
export const DOCS_END = '<!-- engine abilities: end -->'

const COLUMNS: [EngineName, Where][] = [
  ['docker', 'local'],
  ['docker', 'remote'],
  ['podman', 'local'],
  ['podman', 'remote'],
]

/** The table as docs/engines.md shows it, markers included. */
export function abilitiesMarkdown(): string {
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`
  const lines = [
    row(['', ...COLUMNS.map(([e, w]) => WHERE[e][w])]),
    row(['---', ...COLUMNS.map(() => '---')]),
    ...(Object.entries(ABILITIES) as [Ability, string][]).map(([key, label]) =>
      row([label, ...COLUMNS.map(([e, w]) => ENGINE_ABILITIES[e][w][key])]),
    ),
  ]
  return `${DOCS_BEGIN}\n${lines.join('\n')}\n${DOCS_END}`
}

/** `markdown` with the table between the markers rewritten. */
export function withAbilitiesTable(markdown: string): string {
  const begin = markdown.indexOf(DOCS_BEGIN)
  const end = markdown.indexOf(DOCS_END)
  if (begin < 0 || end < begin) throw new Error(`the engine abilities markers are missing: ${DOCS_BEGIN}`)
  return markdown.slice(0, begin) + abilitiesMarkdown() + markdown.slice(end + DOCS_END.length)
}
