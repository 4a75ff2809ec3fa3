#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { parseArgs } from 'node:util'
import { auditKeyFile, readAuditKeyFile } from './audit/audit-key.ts'
import { verifyAuditLog } from './audit/verify.ts'
import { type ConfigEnv, loadConfig, SETTINGS, type Setting } from './config.ts'
import { settingsHelp } from './config-docs.ts'
import { SAMPLE_API_KEY } from './http/auth.ts'
import { startServer } from './server.ts'

/** The command's exit codes (docs/configuration.md lists them). */
const EXIT = { ok: 0, failure: 1, usage: 2, startFailed: 3, tampered: 4 } as const

/** Refusals of what the user typed: exit code `usage`. */
class UsageError extends Error {}

/** The version in package.json (one directory up from src/ and from dist/). */
const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

const HELP = `isorun-emulator: a local Isorun runner backed by Docker or Podman

Usage: isorun-emulator [options]

${settingsHelp()}
       isorun-emulator verify-audit FILE [--data-dir DIR | --key KEY]

  Verifies a sandbox's audit log (the JSON lines GET /v1/runs/:id/audit serves, or the file under
  DIR/audit/) against the HMAC key (DIR/audit.key, or ISORUN_EMULATOR_AUDIT_KEY).

Exit codes: ${EXIT.ok} ok (the log intact); ${EXIT.failure} failed while running or closing, or could not
  read the log or its key; ${EXIT.usage} usage error (unknown flag, bad setting, missing argument);
  ${EXIT.startFailed} could not start (engine unreachable, port taken, bad seed...); ${EXIT.tampered} the audit log is tampered.
`

/** What closing may take after the shutdown grace period (removing warm containers, the egress proxy). */
const CLOSE_AFTER_GRACE_MS = 3_000

async function main(): Promise<void> {
  if (process.argv[2] === 'verify-audit') return verifyAuditCommand(process.argv.slice(3))
  const { values } = usage(() =>
    parseArgs({
      options: {
        ...settingFlags(),
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    }),
  )
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`)
    return
  }
  const config = usage(() => loadConfig(envWithFlags(values)))
  const server = await startServer(config).catch((err: unknown) => {
    fail(EXIT.startFailed, `could not start: ${err instanceof Error ? err.message : String(err)}`)
  })
  process.stdout.write(banner(server.apiUrl, config.apiKeys[0] ?? SAMPLE_API_KEY, server.adminUrl))

  let closing = false
  const shutdown = (signal: 'SIGINT' | 'SIGTERM') => {
    const log = server.app.log
    if (closing) {
      log.warn({ signal }, 'second signal: exiting now, cutting what was still in flight')
      process.exit(128 + osConstants.signals[signal])
    }
    closing = true
    log.info({ signal }, 'shutting down; sandboxes keep running and are adopted on the next start')
    // The drain is bounded by the grace period; this bounds closing the rest (the warm pool, egress),
    // so a stuck engine call cannot keep `docker stop` waiting for its SIGKILL.
    setTimeout(() => {
      log.error('shutdown: closing did not finish in time; exiting')
      process.exit(1)
    }, config.shutdownGraceMs + CLOSE_AFTER_GRACE_MS).unref()
    server.close().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'error while closing')
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))
}

main().catch((err: unknown) => {
  fail(
    err instanceof UsageError ? EXIT.usage : EXIT.failure,
    err instanceof Error ? err.message : String(err),
  )
})

function fail(code: number, message: string): never {
  process.stderr.write(`isorun-emulator: ${message}\n`)
  if (code === EXIT.usage) process.stderr.write('Run isorun-emulator --help for the options.\n')
  process.exit(code)
}

/** Runs `parse`; what it throws is the user's mistake. */
function usage<T>(parse: () => T): T {
  try {
    return parse()
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err))
  }
}

/**
 * What a person needs once the emulator listens: `export` lines to paste into a shell (quoted: `[::1]`
 * is a glob pattern to some shells), and the dashboard.
 */
function banner(apiUrl: string, apiKey: string, adminUrl: string): string {
  return (
    `isorun-emulator ${VERSION} ready on ${apiUrl}\n` +
    `Point the isorun SDK at it (paste into your shell):\n` +
    `export ISORUN_API_URL=${shellQuote(apiUrl)}\n` +
    `export ISORUN_API_KEY=${shellQuote(apiKey)}\n` +
    `Dashboard: ${adminUrl}/_emulator/ui\n`
  )
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`
}

/** `isorun-emulator verify-audit FILE`: exit 0 when the chain is intact, `tampered` with the first break. */
function verifyAuditCommand(args: string[]): void {
  const { values, positionals } = usage(() =>
    parseArgs({
      args,
      allowPositionals: true,
      options: { 'data-dir': { type: 'string' }, key: { type: 'string' } },
    }),
  )
  const file = positionals[0]
  if (!file) throw new UsageError('verify-audit needs the audit log file (or - for standard input)')
  const config = usage(() =>
    loadConfig({
      ...process.env,
      ...(values['data-dir'] ? { ISORUN_EMULATOR_DATA_DIR: values['data-dir'] } : {}),
      ...(values.key ? { ISORUN_EMULATOR_AUDIT_KEY: values.key } : {}),
    }),
  )
  const key = config.auditKey
    ? Buffer.from(config.auditKey, 'utf8')
    : readAuditKeyFile(auditKeyFile(config.dataDir))
  const text = readFileSync(file === '-' ? 0 : file, 'utf8')
  const result = verifyAuditLog(text, key)
  if (result.ok) {
    const anchored =
      result.firstSeq !== undefined
        ? ` (from seq ${result.firstSeq}: the ${result.firstSeq} before it were removed by retention, anchored)`
        : ''
    process.stdout.write(`ok: ${result.entries} entries, chain intact${anchored}\n`)
    return
  }
  process.stdout.write(`TAMPERED at line ${result.problem?.line}: ${result.problem?.reason}\n`)
  process.exitCode = EXIT.tampered
}

type FlagOptions = Record<string, { type: 'string'; multiple?: boolean }>

/** One option per setting that has a flag (config.ts). */
function settingFlags(): FlagOptions {
  const options: FlagOptions = {}
  for (const s of Object.values(SETTINGS) as Setting[]) {
    if (s.flag) options[s.flag.name] = { type: 'string', ...(s.flag.repeatable ? { multiple: true } : {}) }
  }
  return options
}

/** Flags win over the environment: they become the same variables (a repeated flag, comma-joined). */
function envWithFlags(values: Record<string, unknown>): ConfigEnv {
  const env: ConfigEnv = { ...process.env }
  for (const s of Object.values(SETTINGS) as Setting[]) {
    const value = s.flag ? values[s.flag.name] : undefined
    if (Array.isArray(value)) {
      if (value.length) env[s.env] = value.join(',')
    } else if (typeof value === 'string') env[s.env] = value
  }
  return env
}
