#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { verifyAuditLog } from './audit/verify.ts'
import { loadConfig } from './config.ts'
import { startServer } from './server.ts'

const HELP = `isorun-emulator: a local Isorun runner backed by Docker

Usage: isorun-emulator [options]

  --port N         port to listen on; 0 = any free port   (ISORUN_EMULATOR_PORT, default 8731)
  --host H         interface to listen on                 (ISORUN_EMULATOR_HOST, default localhost)
  --data-dir DIR   where the emulator keeps its state     (ISORUN_EMULATOR_DATA_DIR)
  --api-key KEY    accept only this key; repeatable       (ISORUN_EMULATOR_API_KEYS, comma-separated)
                   without any, every non-empty bearer token is accepted
  --log-level L    fatal|error|warn|info|debug|trace|silent (ISORUN_EMULATOR_LOG_LEVEL, default info)
  --clock MODE     real, or virtual (moves only by POST /_emulator/clock/advance) (ISORUN_EMULATOR_CLOCK)
  --seed FILE      sandboxes and snapshots to prepare at start and after reset (ISORUN_EMULATOR_SEED)
  --init DIR       scripts run once ready, with ISORUN_API_URL/KEY set (ISORUN_EMULATOR_INIT)
  --admin-token T  bearer token the /_emulator control plane requires (ISORUN_EMULATOR_ADMIN_TOKEN)
  --pool N         warm containers kept per image/size in use; 0 = off (ISORUN_EMULATOR_POOL, default 2)
  --network-profiles FILE  JSON network profiles merged over the built-ins (ISORUN_EMULATOR_NETWORK_PROFILES)
  -h, --help       this text

       isorun-emulator verify-audit FILE [--data-dir DIR | --key KEY]

  Verifies a sandbox's audit log (the JSON lines GET /v1/runs/:id/audit serves, or the file under
  DIR/audit/) against the HMAC key (DIR/audit.key, or ISORUN_EMULATOR_AUDIT_KEY). Exit 0 if intact.
`

/** Sample key printed when any key is accepted. */
const SAMPLE_KEY = 'isorun_local_dev'

async function main(): Promise<void> {
  if (process.argv[2] === 'verify-audit') return verifyAuditCommand(process.argv.slice(3))
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'data-dir': { type: 'string' },
      'api-key': { type: 'string', multiple: true },
      'log-level': { type: 'string' },
      pool: { type: 'string' },
      clock: { type: 'string' },
      seed: { type: 'string' },
      init: { type: 'string' },
      'admin-token': { type: 'string' },
      'network-profiles': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  // Flags win over the environment: they become the same variables.
  const env = { ...process.env }
  if (values.port !== undefined) env.ISORUN_EMULATOR_PORT = values.port
  if (values.host !== undefined) env.ISORUN_EMULATOR_HOST = values.host
  if (values['data-dir'] !== undefined) env.ISORUN_EMULATOR_DATA_DIR = values['data-dir']
  if (values['api-key']?.length) env.ISORUN_EMULATOR_API_KEYS = values['api-key'].join(',')
  if (values['log-level'] !== undefined) env.ISORUN_EMULATOR_LOG_LEVEL = values['log-level']
  if (values.pool !== undefined) env.ISORUN_EMULATOR_POOL = values.pool
  if (values.clock !== undefined) env.ISORUN_EMULATOR_CLOCK = values.clock
  if (values.seed !== undefined) env.ISORUN_EMULATOR_SEED = values.seed
  if (values.init !== undefined) env.ISORUN_EMULATOR_INIT = values.init
  if (values['admin-token'] !== undefined) env.ISORUN_EMULATOR_ADMIN_TOKEN = values['admin-token']
  if (values['network-profiles'] !== undefined)
    env.ISORUN_EMULATOR_NETWORK_PROFILES = values['network-profiles']

  const config = loadConfig(env)
  const server = await startServer(config)
  process.stdout.write(
    `isorun-emulator ready; point the isorun SDK at it with:\n` +
      `ISORUN_API_URL=${server.apiUrl}\n` +
      `ISORUN_API_KEY=${config.apiKeys[0] ?? SAMPLE_KEY}\n` +
      `dashboard: ${server.apiUrl}/_emulator/ui\n`,
  )

  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    server.app.log.info({ signal }, 'shutting down; sandboxes keep running and are adopted on the next start')
    server.close().then(
      () => process.exit(0),
      (err) => {
        server.app.log.error({ err }, 'error while closing')
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
    : Buffer.from(readFileSync(join(config.dataDir, 'audit.key'), 'utf8').trim(), 'hex')
  const text = readFileSync(file === '-' ? 0 : file, 'utf8')
  const result = verifyAuditLog(text, key)
  if (result.ok) {
    process.stdout.write(`ok: ${result.entries} entries, chain intact\n`)
    return
  }
  process.stdout.write(`TAMPERED at line ${result.problem?.line}: ${result.problem?.reason}\n`)
  process.exitCode = 1
}
