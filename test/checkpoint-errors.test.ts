import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IsorunError } from 'isorun'
import { beforeAll, describe, expect, it } from 'vitest'
import { dumpLogPath, refusal } from '../src/docker/criu-log.ts'
import { describeWithDocker, newClient, sandboxTracker } from './support/sdk.ts'
import { memoryCapability } from './support/state.ts'

describeWithDocker('a checkpoint CRIU refuses says why (findings 3)', () => {
  const isorun = newClient()
  const track = sandboxTracker()
  let criu = { criu: false, reason: '' }

  beforeAll(async () => {
    criu = await memoryCapability()
    if (!criu.criu && process.env.ISORUN_REQUIRE_CRIU === '1')
      throw new Error(`CRIU is required here but: ${criu.reason}`)
  })

  it('names an established TCP connection inside the guest, and the sandbox keeps running', async (ctx) => {
    if (!criu.criu) ctx.skip()
    const s = track(await isorun.create({ image: 'busybox:latest' }))
    // A connection of the guest's own, between two of its processes: no closing on the emulator's side
    // helps, CRIU refuses the dump (without --tcp-established, which the engines do not pass).
    await s.exec(
      '(sleep 1000 | nc -l -p 9000 >/dev/null &); sleep 0.3; (sleep 1000 | nc 127.0.0.1 9000 >/dev/null &); sleep 0.3',
    )
    expect((await s.exec('netstat -tn')).stdout).toContain('ESTABLISHED')
    const err = await s.hibernate().then(
      () => new Error('hibernate succeeded'),
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(IsorunError)
    const body = JSON.parse((err as IsorunError).body ?? '{}')
    expect(body.error).toContain(
      'a process in the sandbox holds an established TCP connection; CRIU cannot checkpoint it',
    )
    expect(body.details).toMatchObject({ criu: expect.stringContaining('Connected TCP socket') })
    expect((await s.info()).status).toBe('running')
    expect((await s.exec('echo alive')).stdout).toBe('alive\n')
    await s.destroy()
  })
})

describe("reading CRIU's dump log (without an engine)", () => {
  it('finds the log each engine names, and reads only a plain absolute path', () => {
    expect(
      dumpLogPath(
        'criu failed: type NOTIFY errno 0 path= /var/run/docker/containerd/daemon/x/moby/abc/criu-dump.log: unknown',
      ),
    ).toBe('/var/run/docker/containerd/daemon/x/moby/abc/criu-dump.log')
    expect(
      dumpLogPath(
        '`/usr/bin/runc checkpoint --image-path /s/abc/userdata/checkpoint --work-path /s/abc/userdata abc` failed: exit status 1',
      ),
    ).toBe('/s/abc/userdata/dump.log')
    expect(dumpLogPath('path= /var/run/../../etc/criu-dump.log')).toBeUndefined()
    expect(dumpLogPath('criu failed: type NOTIFY errno 0')).toBeUndefined()
  })

  it('skips the lines every dump prints and quotes the first real one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'isorun-criu-log-'))
    try {
      const log = join(dir, 'dump.log')
      writeFileSync(
        log,
        [
          "(00.01) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted",
          '(00.02) Warn  (criu/x.c:1): something',
          '(00.14) Error (criu/sk-unix.c:800): unix: External socket is used. Consider using --ext-unix-sk option.',
          '(00.15) Error (criu/cr-dump.c:1545): Dump files (pid: 6304) failed with -1',
          '(00.23) Error (criu/cr-dump.c:1975): Dumping FAILED.',
        ].join('\n'),
      )
      expect(await refusal(log)).toBe('unix: External socket is used. Consider using --ext-unix-sk option.')
      writeFileSync(log, '(00.23) Error (criu/cr-dump.c:1975): Dumping FAILED.\n')
      expect(await refusal(log)).toBeUndefined()
      expect(await refusal(join(dir, 'missing.log'))).toBeUndefined()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
