/**
 * Rewrites the engine abilities table in docs/engines.md from src/engine-abilities.ts
 * (`npm run docs:engines`). With `--check` it only says whether the file is current (exit 1 if not).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { withAbilitiesTable } from '../src/engine-abilities.ts'

const file = join(import.meta.dirname, '..', 'docs', 'engines.md')
const before = readFileSync(file, 'utf8')
const after = withAbilitiesTable(before)
if (process.argv.includes('--check')) {
  if (before !== after) {
    process.stderr.write('docs/engines.md is out of date: run npm run docs:engines\n')
    process.exit(1)
  }
} else if (before !== after) {
  writeFileSync(file, after)
  process.stdout.write('docs/engines.md: engine abilities table updated\n')
}
