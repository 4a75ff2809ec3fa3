import { IsorunError, type Sandbox } from 'isorun'
import { expect, it } from 'vitest'
import { ENGINE_ABILITIES, says } from '../src/engine-abilities.ts'
import { testEngine } from './support/engine.ts'
import { containerOf, describeWithDocker, newClient, sandboxTracker, waitFor } from './support/sdk.ts'

/** The error a call failed with: its status and the body's code and details. */
async function failure(
  p: Promise<unknown>,
): Promise<{ status: number; code?: string; details?: Record<string, unknown> }> {
  const err = await p.then(
    () => new Error('succeeded'),
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(IsorunError)
  const body = JSON.parse((err as IsorunError).body ?? '{}')
  return { status: (err as IsorunError).status, code: body.code, details: body.details }
}

describeWithDocker('a sandbox whose container dies (issue 11 item 7)', () => {
  const isorun = newClient()
  const track = sandboxTracker()

  it('answers a create whose container does not stay up with a 400, and leaves no container', async () => {
    const before = (await isorun.list()).length
    const failed = await failure(
      isorun.create({ image: 'busybox:latest', credentials: { PATH: '/nonexistent' } }),
    )
    expect(failed).toMatchObject({
      status: 400,
      code: 'validation_failed',
      details: { field: 'credentials' },
    })
    expect((await isorun.list()).length).toBe(before)
  })

  async function untilExited(s: Sandbox): Promise<string | undefined> {
    return waitFor(async () => {
      const info = await s.info()
      return info.status === 'running' ? undefined : info.status
    }, 15_000)
  }

  it('reports a sandbox whose main process a guest killed as exited, refuses work on it, and destroys it', async () => {
    const s = track(await isorun.create({ image: 'busybox:latest' }))
    await s.exec('mkdir -p /tmp/www && echo up > /tmp/www/index.html && httpd -p 8080 -h /tmp/www')
    expect((await fetch(s.url(8080, '/index.html'))).status).toBe(200)
    // PID 1 is the init; it passes SIGTERM to the keep-alive, whose end ends the container.
    await s.exec('kill -TERM 1').catch(() => undefined)
    expect(await untilExited(s)).toBe('exited')
    expect((await containerOf(s.id))?.State).not.toBe('running')
    expect(await failure(s.exec('echo hi'))).toMatchObject({ status: 409, details: { status: 'exited' } })
    expect(await failure(s.writeFile('/tmp/x', 'x'))).toMatchObject({ status: 409 })
    expect(await failure(s.snapshot())).toMatchObject({ status: 409 })
    // url(port) no longer goes to the address the dead container had.
    const res = await fetch(s.url(8080, '/index.html'))
    expect(res.status).toBe(409)
    expect((await isorun.list()).find((x) => x.id === s.id)).toBeDefined()
    const destroyed = await s.destroy()
    expect(destroyed.status).toBe('destroyed')
    expect(await containerOf(s.id)).toBeUndefined()
  })

  it('reports an OOM kill of the main process as exited, saying so', async () => {
    const s = track(await isorun.create({ image: 'busybox:latest', memMiB: 64 }))
    // The keep-alive becomes the OOM killer's first choice (three hogs share the memory, so none
    // outweighs it), then memory runs out.
    await s
      .exec(
        'echo 1000 > /proc/$(pidof sleep)/oom_score_adj; ' +
          'for i in 1 2 3; do (head -c 100000000 /dev/zero | tail > /dev/null) & done; wait',
        60,
      )
      .catch(() => undefined)
    expect(await untilExited(s)).toBe('exited')
    const err = await failure(s.exec('true'))
    // Podman (4.3) reports an OOM kill only of the container's init, not of the keep-alive under it: the
    // reason is then the kill's exit code (docs/engines.md).
    const told = says(ENGINE_ABILITIES[testEngine].local.oom_reported)
    const reason = told ? { reason: 'oom' } : { reason: 'exited', exit_code: 137 }
    expect(err).toMatchObject({ status: 409, details: { status: 'exited', ...reason } })
    await s.destroy()
  })
})
