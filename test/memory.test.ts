import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const MiB = 1024 * 1024
const KEY = 'memory-key'

/** Resident memory of a process, from the kernel. */
function rssMiB(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
  return Number(kb) / 1024
}

const settle = () => new Promise((r) => setTimeout(r, 1500))

interface Answer {
  status: number
  body: string
  /** Bytes of the request body written before the answer came. */
  sent: number
}

/**
 * Sends a request whose body is `total` bytes in 1 MiB pieces, chunked (no Content-Length) unless
 * `length` is set; stops sending as soon as the answer comes.
 */
function send(
  url: URL,
  method: string,
  path: string,
  total: number,
  opts: { length?: boolean; json?: string } = {},
) {
  return new Promise<Answer>((resolve, reject) => {
    const headers: Record<string, string | number> = {
      authorization: `Bearer ${KEY}`,
      'content-type': opts.json ? 'application/json' : 'application/octet-stream',
    }
    if (opts.length) headers['content-length'] = opts.json ? Buffer.byteLength(opts.json) : total
    const req = request({ host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port, method, path, headers })
    let sent = 0
    let answered = false
    req.on('response', (res) => {
      answered = true
      let body = ''
      res.on('data', (d: Buffer) => {
        body += d.toString()
      })
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body, sent })
        req.destroy()
      })
    })
    req.on('error', (err) => {
      if (!answered) reject(err)
    })
    if (opts.json !== undefined) {
      req.end(opts.json)
      return
    }
    const piece = Buffer.alloc(MiB, 0x61)
    const pump = () => {
      while (!answered && sent < total) {
        sent += piece.length
        if (!req.write(piece)) return void req.once('drain', pump)
      }
      if (!answered) req.end()
    }
    pump()
  })
}

describe('resident memory under floods (the emulator in its own process)', () => {
  let child: ChildProcess
  let url: URL
  /** The control plane's origin (the journal). */
  let admin: URL
  let out = ''
  const dataDir = mkdtempSync(join(tmpdir(), 'isorun-memory-'))
  const figures: Record<string, number> = {}
  const baseline = () => figures.baseline ?? Number.NaN

  beforeAll(async () => {
    child = spawn(process.execPath, [join(import.meta.dirname, 'support', 'fake-emulator.ts')], {
      env: { ...process.env, ISORUN_EMULATOR_DATA_DIR: dataDir, ISORUN_EMULATOR_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
    })
    url = new URL(
      await new Promise<string>((resolve, reject) => {
        const timer = setInterval(() => {
          const m = /ISORUN_API_URL=(\S+)\nISORUN_ADMIN_URL=(\S+)/.exec(out)
          if (m?.[1] && m[2]) {
            clearInterval(timer)
            admin = new URL(m[2])
            resolve(m[1])
          }
        }, 20)
        child.once('exit', (code) => reject(new Error(`emulator exited with ${code}`)))
      }),
    )
    // Warm up every route used below, so the baseline includes what they load once.
    for (let i = 0; i < 5; i++) {
      await send(url, 'POST', '/v1/runs', 0, {
        json: JSON.stringify({ image: 'x'.repeat(600) }),
        length: true,
      })
      await send(admin, 'GET', '/_emulator/requests?limit=1000', 0, { json: '' })
    }
    await settle()
    figures.baseline = rssMiB(child.pid as number)
  })

  afterAll(async () => {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    rmSync(dataDir, { recursive: true, force: true })
    process.stderr.write(`memory.test: RSS in MiB ${JSON.stringify(figures)}\n`)
  })

  it('keeps no memory for request bodies of 8 MiB answered 400, nor for reading the journal', async () => {
    const body = JSON.stringify({ image: 'x'.repeat(8 * MiB - 100) })
    const flood = async () => {
      for (let i = 0; i < 20; i++) {
        const res = await send(url, 'POST', '/v1/runs', 0, { json: body, length: true })
        expect(res.status).toBe(400)
      }
      for (let i = 0; i < 5; i++)
        expect((await send(admin, 'GET', '/_emulator/requests?limit=1000', 0, { json: '' })).status).toBe(200)
      await settle()
      return rssMiB(child.pid as number)
    }
    // Handling one such body takes a few copies of it until the collector runs, so the figure moves
    // with the collector's timing (up to ~140 MiB above the baseline here); keeping the bodies would
    // hold 8 MiB or more for each of the 40, for good.
    figures.after_400_bodies = await flood()
    figures.after_400_bodies_again = await flood()
    expect(Math.max(figures.after_400_bodies, figures.after_400_bodies_again) - baseline()).toBeLessThan(200)
  })

  it('answers a 400 MiB chunked upload to an unknown run with 404 before reading it', async () => {
    const before = rssMiB(child.pid as number)
    const res = await send(url, 'POST', '/v1/runs/runnosuchrun000000000000/files/upload?path=/x', 400 * MiB)
    expect(res.status).toBe(404)
    figures.unknown_upload_sent_before_404 = res.sent / MiB
    expect(res.sent).toBeLessThan(200 * MiB)
    await settle()
    figures.after_unknown_upload = rssMiB(child.pid as number)
    expect(figures.after_unknown_upload - before).toBeLessThan(32)
  })

  it('streams a 400 MiB chunked upload into the sandbox without holding it', async () => {
    const created = await send(url, 'POST', '/v1/runs', 0, { json: '{}', length: true })
    const id = JSON.parse(created.body).id as string
    const before = rssMiB(child.pid as number)
    figures.before_upload = before
    let peak = 0
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMiB(child.pid as number))
    }, 50)
    try {
      const res = await send(url, 'POST', `/v1/runs/${id}/files/upload?path=/big`, 400 * MiB)
      expect(res.status).toBe(204)
    } finally {
      clearInterval(sampler)
    }
    expect(out).toContain(`uploaded ${400 * MiB} of ${400 * MiB}`)
    figures.peak_during_upload = peak
    expect(peak - before).toBeLessThan(64)
  })
})
