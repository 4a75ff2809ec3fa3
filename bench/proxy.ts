/**
 * url(port) against the same guest reached straight on its container IP: latency of sequential
 * requests, throughput with 16 keep-alive connections, and a WebSocket round trip. Both paths are
 * measured in the same run, alternating, from the same client code, so only the proxy differs.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { join } from 'node:path'
import Docker from 'dockerode'
import type { Isorun, Sandbox } from 'isorun'
import { cpuNow } from './cpu.ts'
import { median, percentile } from './stats.ts'

const GUEST_PORT = 8080
const LATENCY_WARMUP = 50
const LATENCY_BLOCKS = 10
const LATENCY_BLOCK_SIZE = 50
const THROUGHPUT_CONNECTIONS = 16
const THROUGHPUT_MS = 3000
const THROUGHPUT_ROUNDS = 2
const WS_WARMUP = 50
const WS_BLOCKS = 10
const WS_BLOCK_SIZE = 50

export interface ProxyBenchRow {
  name: string
  unit: 'ms' | 'req/s' | 'µs'
  proxied: number
  direct: number
  /** proxied - direct: for ms rows, the latency the proxy adds */
  added: number
  /** proxied / direct */
  ratio: number
  /** Proxied requests or messages measured. */
  samples: number
}

/** `emulatorPid`: the emulator's process, whose CPU time per proxied request is reported. */
export async function benchProxy(
  apiUrl: string,
  isorun: Isorun,
  emulatorPid?: number,
): Promise<ProxyBenchRow[]> {
  const sandbox = await isorun.create({ image: 'node:22-slim' })
  try {
    await startGuest(sandbox)
    const ip = await containerIp(sandbox.id)
    const proxied = sandbox.url(GUEST_PORT, '/hello')
    const direct = `http://${ip}:${GUEST_PORT}/hello`
    if (!proxied.startsWith(apiUrl)) throw new Error(`url(port) ${proxied} is not under ${apiUrl}`)

    const rows: ProxyBenchRow[] = []
    const lat = await latency(proxied, direct)
    rows.push(row('GET latency p50', 'ms', median(lat.proxied), median(lat.direct), lat.proxied.length))
    rows.push(
      row(
        'GET latency p99',
        'ms',
        percentile(lat.proxied, 99),
        percentile(lat.direct, 99),
        lat.proxied.length,
      ),
    )
    const relay = await startTcpRelay(ip, GUEST_PORT)
    try {
      const tput = await throughput(
        { proxied, direct, relay: `http://127.0.0.1:${relay.port}/hello` },
        { proxied: emulatorPid, relay: relay.child.pid },
      )
      rows.push(
        row(
          `GET throughput, ${THROUGHPUT_CONNECTIONS} connections`,
          'req/s',
          tput.proxied,
          tput.direct,
          tput.requests,
        ),
      )
      // The floor any proxy process has on this machine: bytes relayed, no HTTP at all.
      rows.push(
        row(
          `GET throughput, ${THROUGHPUT_CONNECTIONS} connections, bare TCP relay (reference)`,
          'req/s',
          tput.relay,
          tput.direct,
          tput.relayRequests,
        ),
      )
      // Why: on a machine whose cores are all busy, requests per second = cores / CPU per request.
      if (tput.cpu) {
        const { machine, proxy } = tput.cpu
        rows.push(row('CPU per request, whole machine', 'µs', machine.proxied, machine.direct, tput.requests))
        rows.push(
          row(
            'CPU per request, whole machine, bare TCP relay',
            'µs',
            machine.relay,
            machine.direct,
            tput.relayRequests,
          ),
        )
        rows.push(row('CPU per request, the emulator process', 'µs', proxy.proxied, 0, tput.requests))
        rows.push(
          row('CPU per request, the bare TCP relay process', 'µs', proxy.relay, 0, tput.relayRequests),
        )
      }
    } finally {
      relay.child.kill()
    }
    const ws = await websocketRoundTrips(proxied.replace(/^http/, 'ws'), direct.replace(/^http/, 'ws'))
    rows.push(row('WebSocket round trip p50', 'ms', median(ws.proxied), median(ws.direct), ws.proxied.length))
    rows.push(
      row(
        'WebSocket round trip p99',
        'ms',
        percentile(ws.proxied, 99),
        percentile(ws.direct, 99),
        ws.proxied.length,
      ),
    )
    return rows
  } finally {
    await sandbox.destroy().catch(() => undefined)
  }
}

export function printProxyTable(rows: ProxyBenchRow[]): void {
  if (rows.length === 0) return
  console.log('\nurl(port) proxy vs straight to the container IP (node:22-slim guest, node:http client)\n')
  console.log('| measure | through url(port) | direct | added | ratio |')
  console.log('|---|---:|---:|---:|---:|')
  for (const r of rows) {
    // Rows about one process have no direct counterpart (direct is 0 there).
    const direct = r.direct > 0 ? `${r.direct} ${r.unit}` : '—'
    const added = r.unit !== 'req/s' && r.direct > 0 ? `${r.added} ${r.unit}` : ''
    const ratio = r.direct > 0 ? `${r.ratio}x` : ''
    console.log(`| ${r.name} | ${r.proxied} ${r.unit} | ${direct} | ${added} | ${ratio} |`)
  }
}

function row(name: string, unit: ProxyBenchRow['unit'], proxied: number, direct: number, samples: number) {
  const digits = unit === 'ms' ? 3 : 0
  return {
    name,
    unit,
    proxied: round(proxied, digits),
    direct: round(direct, digits),
    added: round(proxied - direct, digits),
    ratio: direct > 0 ? round(proxied / direct, 3) : 0,
    samples,
  }
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits

async function startGuest(sandbox: Sandbox): Promise<void> {
  const dir = join(import.meta.dirname, '..', 'test', 'fixtures', 'guest')
  for (const name of ['ws.mjs', 'app.mjs']) {
    await sandbox.writeFile(`/srv/${name}`, readFileSync(join(dir, name), 'utf8'))
  }
  await sandbox.exec(`node /srv/app.mjs ${GUEST_PORT} > /tmp/app.log 2>&1 &`)
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    const res = await fetch(sandbox.url(GUEST_PORT, '/hello')).catch(() => undefined)
    if (res?.status === 200) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`bench guest never answered: ${(await sandbox.exec('cat /tmp/app.log')).stdout}`)
}

async function containerIp(runId: string): Promise<string> {
  const info = await new Docker().getContainer(`isorun-${runId}`).inspect()
  const ip = Object.values(info.NetworkSettings.Networks ?? {}).find((n) => n?.IPAddress)?.IPAddress
  if (!ip) throw new Error(`sandbox ${runId} has no container IP`)
  return ip
}

function get(url: string, agent: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      res.on('data', () => {})
      res.on('end', () =>
        res.statusCode === 200 ? resolve() : reject(new Error(`${url}: ${res.statusCode}`)),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

async function latency(proxied: string, direct: string): Promise<{ proxied: number[]; direct: number[] }> {
  const agents = {
    proxied: new Agent({ keepAlive: true, maxSockets: 1 }),
    direct: new Agent({ keepAlive: true, maxSockets: 1 }),
  }
  const urls = { proxied, direct }
  const out = { proxied: [] as number[], direct: [] as number[] }
  try {
    for (const side of ['proxied', 'direct'] as const) {
      for (let i = 0; i < LATENCY_WARMUP; i++) await get(urls[side], agents[side])
    }
    for (let b = 0; b < LATENCY_BLOCKS; b++) {
      const order = b % 2 === 0 ? (['proxied', 'direct'] as const) : (['direct', 'proxied'] as const)
      for (const side of order) {
        for (let i = 0; i < LATENCY_BLOCK_SIZE; i++) {
          const start = performance.now()
          await get(urls[side], agents[side])
          out[side].push(performance.now() - start)
        }
      }
    }
  } finally {
    agents.proxied.destroy()
    agents.direct.destroy()
  }
  return out
}

type ThroughputSide = 'proxied' | 'direct' | 'relay'

/** Requests per second with THROUGHPUT_CONNECTIONS keep-alive connections, the sides taking turns. */
async function throughput(
  urls: Record<ThroughputSide, string>,
  proxyPids: Partial<Record<ThroughputSide, number>>,
): Promise<
  Record<ThroughputSide, number> & {
    requests: number
    relayRequests: number
    /** Microseconds of CPU per request, when /proc can tell. */
    cpu?: { machine: Record<ThroughputSide, number>; proxy: Record<ThroughputSide, number> }
  }
> {
  const total = { proxied: 0, direct: 0, relay: 0 }
  const done = { proxied: 0, direct: 0, relay: 0 }
  const machineUs = { proxied: 0, direct: 0, relay: 0 }
  const proxyUs = { proxied: 0, direct: 0, relay: 0 }
  let cpuKnown = true
  for (let r = 0; r < THROUGHPUT_ROUNDS; r++) {
    const order: ThroughputSide[] =
      r % 2 === 0 ? ['direct', 'proxied', 'relay'] : ['relay', 'proxied', 'direct']
    for (const side of order) {
      const agent = new Agent({ keepAlive: true, maxSockets: THROUGHPUT_CONNECTIONS })
      // Open the connections before the clock starts.
      await Promise.all(Array.from({ length: THROUGHPUT_CONNECTIONS }, () => get(urls[side], agent)))
      let count = 0
      const until = performance.now() + THROUGHPUT_MS
      const started = performance.now()
      const cpuBefore = cpuNow(proxyPids[side])
      await Promise.all(
        Array.from({ length: THROUGHPUT_CONNECTIONS }, async () => {
          while (performance.now() < until) {
            await get(urls[side], agent)
            count++
          }
        }),
      )
      const cpuAfter = cpuNow(proxyPids[side])
      total[side] += count / ((performance.now() - started) / 1000)
      done[side] += count
      if (cpuBefore && cpuAfter) {
        machineUs[side] += cpuAfter.machineUs - cpuBefore.machineUs
        proxyUs[side] += cpuAfter.processUs - cpuBefore.processUs
      } else cpuKnown = false
      agent.destroy()
    }
  }
  const perRequest = (us: Record<ThroughputSide, number>) => ({
    proxied: us.proxied / done.proxied,
    direct: us.direct / done.direct,
    relay: us.relay / done.relay,
  })
  return {
    proxied: total.proxied / THROUGHPUT_ROUNDS,
    direct: total.direct / THROUGHPUT_ROUNDS,
    relay: total.relay / THROUGHPUT_ROUNDS,
    requests: done.proxied,
    relayRequests: done.relay,
    cpu: cpuKnown ? { machine: perRequest(machineUs), proxy: perRequest(proxyUs) } : undefined,
  }
}

/** bench/tcp-relay.ts in its own process, relaying to the guest; resolves once it listens. */
async function startTcpRelay(address: string, port: number): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'tcp-relay.ts'), address, String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const listening = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())))
    child.once('exit', (code) => reject(new Error(`tcp relay exited with ${code}`)))
  })
  return { port: listening, child }
}

async function websocketRoundTrips(
  proxied: string,
  direct: string,
): Promise<{ proxied: number[]; direct: number[] }> {
  const sockets = { proxied: await openWs(proxied), direct: await openWs(direct) }
  const out = { proxied: [] as number[], direct: [] as number[] }
  try {
    for (const side of ['proxied', 'direct'] as const) {
      for (let i = 0; i < WS_WARMUP; i++) await roundTrip(sockets[side], 'warm')
    }
    for (let b = 0; b < WS_BLOCKS; b++) {
      const order = b % 2 === 0 ? (['proxied', 'direct'] as const) : (['direct', 'proxied'] as const)
      for (const side of order) {
        for (let i = 0; i < WS_BLOCK_SIZE; i++) {
          const start = performance.now()
          await roundTrip(sockets[side], `m${i}`)
          out[side].push(performance.now() - start)
        }
      }
    }
  } finally {
    sockets.proxied.close()
    sockets.direct.close()
  }
  return out
}

function openWs(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url)
  return new Promise((resolve, reject) => {
    ws.addEventListener('open', () => resolve(ws), { once: true })
    ws.addEventListener('error', () => reject(new Error(`websocket to ${url} failed`)), { once: true })
  })
}

function roundTrip(ws: WebSocket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.addEventListener(
      'message',
      (e) => (String(e.data) === `echo: ${text}` ? resolve() : reject(new Error(`bad echo: ${e.data}`))),
      { once: true },
    )
    ws.send(text)
  })
}
