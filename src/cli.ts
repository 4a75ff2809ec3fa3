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

const HELP = `isorun-emulator: a local Isorun runner backed by Docker or Podman

Usage: isorun-emulator [options]

${settingsHelp()}
       isorun-emulator verify-audit FILE [--data-dir DIR | --key KEY]

  Verifies a sandbox's audit log (the JSON lines GET /v1/runs/:id/audit serves, or the file under
  DIR/audit/) against the HMAC key (DIR/audit.key, or ISORUN_EMULATOR_AUDIT_KEY). Exit 0 if intact.
`

/** What closing may take after the shutdown grace period (removing warm containers, the egress proxy). */
const CLOSE_AFTER_GRACE_MS = 3_000

async function main(): Promise<void> {
  if (process.argv[2] === 'verify-audit') return verifyAuditCommand(process.argv.slice(3))
  const { values } = parseArgs({ options: { ...settingFlags(), help: { type: 'boolean', short: 'h' } } })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  const config = loadConfig(envWithFlags(values))
  const server = await startServer(config)
  process.stdout.write(
    `isorun-emulator ready; point the isorun SDK at it with:\n` +
      `ISORUN_API_URL=${server.apiUrl}\n` +
      `ISORUN_API_KEY=${config.apiKeys[0] ?? SAMPLE_API_KEY}\n` +
      `dashboard: ${server.adminUrl}/_emulator/ui\n`,
  )

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
  process.stderr.write(`isorun-emulator: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})

/** `isorun-emulator verify-audit FILE`: exit 0 when the chain is intact, 1 with the first break. */
function verifyAuditCommand(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { 'data-dir': { type: 'string' }, key: { type: 'string' } },
  })
  const file = positionals[0]
  if (!file) throw new Error('verify-audit needs the audit log file (or - for standard input)')
  const config = loadConfig({
    ...process.env,
    ...(values['data-dir'] ? { ISORUN_EMULATOR_DATA_DIR: values['data-dir'] } : {}),
    ...(values.key ? { ISORUN_EMULATOR_AUDIT_KEY: values.key } : {}),
  })
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
  process.exitCode = 1
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
