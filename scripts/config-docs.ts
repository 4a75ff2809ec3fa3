/**
 * Rewrites the settings table in docs/configuration.md from src/config.ts (`npm run docs:config`).
 * With `--check` it only says whether the file is current (exit 1 if not).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { withSettingsTable } from '../src/config-docs.ts'

const file = join(import.meta.dirname, '..', 'docs', 'configuration.md')
const before = readFileSync(file, 'utf8')
const after = withSettingsTable(before)
if (process.argv.includes('--check')) {
  if (before !== after) {
    process.stderr.write('docs/configuration.md is out of date: run npm run docs:config\n')
    process.exit(1)
  }
} else if (before !== after) {
  writeFileSync(file, after)
  process.stdout.write('docs/configuration.md: settings table updated\n')
}
