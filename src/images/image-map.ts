import { InvalidImageReference, parseImageReference } from './reference.ts'

/**
 * Which local image runs when a create names an image. The SDK asks for images that are not on an
 * offline machine (`node:22-slim` by default, `node:22` in its next version, `python:3.12-slim` for its
 * LangChain/OpenAI code interpreter); the emulator can build stand-ins for them from this host's own
 * binaries (fixtures/build-images.sh) and runs those instead. The operator adds entries
 * (ISORUN_EMULATOR_IMAGE_MAP), which win over the built-in ones. Names are compared in canonical form,
 * so `node:22-slim` and `docker.io/library/node:22-slim` are one entry.
 */
export interface ImageMapEntry {
  /** What a create names, as written in the map. */
  requested: string
  /** The local image that runs instead. */
  image: string
  /** `built-in`: a stand-in the emulator builds; `setting`: ISORUN_EMULATOR_IMAGE_MAP. */
  from: 'built-in' | 'setting'
  /** For a built-in entry: the stand-in that provides the image (see STAND_INS). */
  standIn?: StandInKind
}

/** The stand-ins fixtures/build-images.sh can build offline, and what each is made of. */
export const STAND_INS = {
  node: {
    tag: 'node:22',
    made: 'Node 22 (the Node binary the emulator runs on, or node@22 from npm) on busybox',
  },
  python: { tag: 'python:3', made: "this host's python3 and its standard library, on busybox" },
} as const
export type StandInKind = keyof typeof STAND_INS

/** The names the SDK asks for, and the stand-in each maps to. */
const BUILT_IN: [requested: string, standIn: StandInKind][] = [
  ['node:22-slim', 'node'],
  ['node:22', 'node'],
  ['python:3.12-slim', 'python'],
]

/** The default repository the stand-ins are built under (`isorun-emulator-stand-in/node:22`). */
export const DEFAULT_STAND_IN_REPOSITORY = 'isorun-emulator-stand-in'

/** A stand-in's image name under `repository`. */
export function standInImage(repository: string, kind: StandInKind): string {
  return `${repository}/${STAND_INS[kind].tag}`
}

export class ImageMap {
  private readonly byCanonical = new Map<string, ImageMapEntry>()
  /** The command that builds the stand-ins, for image_unavailable's advice. */
  readonly buildCommand: string | undefined

  /**
   * `repository`: where the stand-ins live (empty: no built-in entries); `entries`: the operator's
   * (`requested` → `image`), which win.
   */
  constructor(repository: string, entries: readonly [string, string][] = [], buildCommand?: string) {
    this.buildCommand = buildCommand
    if (repository) {
      for (const [requested, standIn] of BUILT_IN) {
        this.add({ requested, image: standInImage(repository, standIn), from: 'built-in', standIn })
      }
    }
    for (const [requested, image] of entries) this.add({ requested, image, from: 'setting' })
  }

  private add(entry: ImageMapEntry): void {
    this.byCanonical.set(parseImageReference(entry.requested).canonical, entry)
  }

  /** The local image to run for `requested` (a valid reference), and the entry that said so. */
  resolve(requested: string): { image: string; entry?: ImageMapEntry } {
    const entry = this.byCanonical.get(parseImageReference(requested).canonical)
    return entry ? { image: entry.image, entry } : { image: requested }
  }

  /** Every entry, for capabilities and the log. */
  entries(): ImageMapEntry[] {
    return [...this.byCanonical.values()]
  }

  /** The stand-ins some entry still uses (an operator's entry may have replaced them all). */
  standIns(): StandInKind[] {
    const kinds = new Set<StandInKind>()
    for (const e of this.byCanonical.values()) if (e.standIn) kinds.add(e.standIn)
    return [...kinds]
  }
}

/** Parses `requested=image,...`; throws naming the first bad entry. */
export function parseImageMap(text: string): [string, string][] {
  const out: [string, string][] = []
  for (const raw of text.split(',')) {
    const entry = raw.trim()
    if (!entry) continue
    const eq = entry.indexOf('=')
    const requested = entry.slice(0, eq).trim()
    const image = entry.slice(eq + 1).trim()
    if (eq < 0 || !requested || !image) throw new Error(`"${entry}" is not requested=image`)
    for (const name of [requested, image]) {
      try {
        parseImageReference(name)
      } catch (err) {
        if (err instanceof InvalidImageReference) throw new Error(`in "${entry}": ${err.message}`)
        throw err
      }
    }
    out.push([requested, image])
  }
  return out
}
