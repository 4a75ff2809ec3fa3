import { createHash, randomBytes } from 'node:crypto'
import type { IsorunError } from 'isorun'
import { beforeAll, expect, it } from 'vitest'
import { apiUrl, describeWithDocker, newApiKey, newClient, sandboxTracker } from './support/sdk.ts'

describeWithDocker('files through the real SDK', () => {
  const key = newApiKey()
  const isorun = newClient(key)
  const track = sandboxTracker()
  let s: Awaited<ReturnType<typeof isorun.create>>

  beforeAll(async () => {
    s = track(await isorun.create({ image: 'busybox:latest' }))
  })

  it('writes a file, creating its parent directories, and reads it back', async () => {
    await s.writeFile('/app/config/deep/settings.json', JSON.stringify({ env: 'prod' }))
    expect(JSON.parse(await s.readFile('/app/config/deep/settings.json'))).toEqual({ env: 'prod' })
    expect((await s.exec('cat /app/config/deep/settings.json')).stdout).toBe('{"env":"prod"}')
  })

  it('is binary-safe both ways', async () => {
    const bytes = randomBytes(1024 * 1024 + 7)
    await s.writeFile('/tmp/blob.bin', bytes)
    const sha = createHash('sha256').update(bytes).digest('hex')
    expect((await s.exec('sha256sum /tmp/blob.bin')).stdout.split(' ')[0]).toBe(sha)
    // readFile decodes as UTF-8, so check the raw download route directly for the exact bytes.
    const res = await fetch(`${apiUrl}/v1/runs/${s.id}/files/download?path=/tmp/blob.bin`, {
      headers: { authorization: `Bearer ${key}` },
    })
    expect(res.status).toBe(200)
    expect(
      createHash('sha256')
        .update(Buffer.from(await res.arrayBuffer()))
        .digest('hex'),
    ).toBe(sha)
  })

  it('overwrites an existing file and handles an empty one', async () => {
    await s.writeFile('/tmp/over.txt', 'first version, longer')
    await s.writeFile('/tmp/over.txt', 'second')
    expect(await s.readFile('/tmp/over.txt')).toBe('second')
    await s.writeFile('/tmp/empty.txt', '')
    expect(await s.readFile('/tmp/empty.txt')).toBe('')
  })

  it('follows symlinks when reading', async () => {
    await s.exec(
      'mkdir -p /data && echo target-content > /data/real.txt && ln -sf /data/real.txt /tmp/link.txt',
    )
    expect(await s.readFile('/tmp/link.txt')).toBe('target-content\n')
  })

  it('lists a directory by name, including dotfiles and names with spaces or newlines', async () => {
    await s.exec('mkdir -p /list && cd /list && touch a "b c" .hidden "$(printf "new\\nline")" && mkdir sub')
    const names = (await s.readdir('/list')).map((e) => e.name)
    expect(names).toEqual(['.hidden', 'a', 'b c', 'new\nline', 'sub'])
    expect(await s.readdir('/list/sub')).toEqual([])
  })

  it('answers a missing path with 404 and a directory read or a file listing with 400', async () => {
    const status = (p: Promise<unknown>) => p.then(() => 200).catch((e: IsorunError) => e.status)
    expect(await status(s.readFile('/does/not/exist'))).toBe(404)
    expect(await status(s.readdir('/does/not/exist'))).toBe(404)
    expect(await status(s.readFile('/list'))).toBe(400)
    expect(await status(s.readdir('/list/a'))).toBe(400)
    expect(await status(s.writeFile('relative/path.txt', 'x'))).toBe(400)
  })

  it('streams a 64 MiB file in and out', async () => {
    const big = Buffer.alloc(64 * 1024 * 1024, 'z')
    await s.writeFile('/tmp/big.txt', big)
    expect((await s.exec('wc -c < /tmp/big.txt')).stdout.trim()).toBe(String(big.length))
    const back = await s.readFile('/tmp/big.txt')
    expect(back.length).toBe(big.length)
  })
})
