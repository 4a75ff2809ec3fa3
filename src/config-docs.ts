import { SETTINGS, type Setting } from './config.ts'

/**
 * The settings table (config.ts) as people read it: the options part of `--help`, and the table in
 * docs/configuration.md between its two markers (written by `npm run docs:config`).
 */

const ALL = Object.values(SETTINGS) as Setting[]

function shownDefault(s: Setting): string | undefined {
  if (s.shownDefault !== undefined) return s.shownDefault
  return typeof s.default === 'string' ? s.default : undefined
}

/** For --help: no code spans, and a link to a docs page as its file. */
const plain = (text: string) => text.replaceAll('`', '').replace(/\[[^\]]+\]\(([^)]+)\)/g, 'docs/$1')

/** Flags first (as `--help` always listed them), then the settings only a variable sets. */
export function settingsHelp(width = 100): string {
  const flagged = ALL.filter((s) => s.flag)
  const lines: string[] = []
  const column = 24
  const indent = ' '.repeat(column + 1)
  /** `head` in the first column, `body` wrapped in the second. */
  const wrap = (head: string, body: string) => {
    let line = `${head.padEnd(column)} `
    if (head.length >= column) {
      lines.push(`  ${head}`)
      line = indent
    }
    for (const word of body.split(' ')) {
      if (line.length > indent.length && line.length + word.length + 1 > width - 2) {
        lines.push(`  ${line.trimEnd()}`)
        line = indent
      }
      line += line.length > indent.length ? ` ${word}` : word
    }
    lines.push(`  ${line.trimEnd()}`)
  }
  for (const s of flagged) {
    const f = s.flag as NonNullable<Setting['flag']>
    const d = shownDefault(s)
    wrap(`--${f.name} ${f.arg}`, `${plain(s.help)} (${s.env}${d ? `, default ${plain(d)}` : ''})`)
  }
  wrap('-h, --help', 'this text')
  wrap('-v, --version', 'print the version')
  lines.push('', '  Settings without a flag (environment variables):')
  for (const s of ALL.filter((x) => !x.flag)) {
    const d = shownDefault(s)
    wrap(`${s.env}`, `${plain(s.help)}${d ? ` (default ${plain(d)})` : ''}`)
  }
  return `${lines.join('\n')}\n`
}

export const DOCS_BEGIN =
  '<!-- settings: generated from src/config.ts by `npm run docs:config`; edit the table there -->'
export const DOCS_END = '<!-- end of settings -->'

/** The Markdown table, markers included. */
export function settingsMarkdown(): string {
  const code = (t: string) => `\`${t}\``
  const cell = (t: string) => t.replaceAll('|', '\\|')
  const rows = ALL.map((s) => {
    const flag = s.flag ? `${code(`--${s.flag.name}`)}${s.flag.repeatable ? ' (repeatable)' : ''}` : ''
    // A literal default is what one would type; a described one (`none`, `generated`) is prose.
    const d = s.shownDefault ?? (typeof s.default === 'string' ? code(s.default) : 'none')
    return [flag, code(s.env), d, s.help].map(cell)
  })
  const table = [
    '| flag | variable | default | meaning |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ]
  return [DOCS_BEGIN, ...table, DOCS_END].join('\n')
}

/** `markdown` with the part between the markers replaced by the current table. */
export function withSettingsTable(markdown: string): string {
  const begin = markdown.indexOf(DOCS_BEGIN)
  const end = markdown.indexOf(DOCS_END)
  if (begin < 0 || end < begin) throw new Error(`the settings markers are missing: ${DOCS_BEGIN}`)
  return markdown.slice(0, begin) + settingsMarkdown() + markdown.slice(end + DOCS_END.length)
}
