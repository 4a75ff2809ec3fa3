import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { apiUrl, describeWithDocker, newApiKey, newClient, waitFor } from './support/sdk.ts'

/** The SDK's own MCP server, the `isorun-mcp` bin, run as an MCP host would run it. */
const MCP_CLI = join(import.meta.dirname, '..', 'node_modules', 'isorun', 'dist', 'mcp-cli.js')
const RUN_ID = /^run[0-9a-f]{20}$/

interface ToolResult {
  text: string
  isError: boolean
}

describeWithDocker('isorun-mcp (the SDK’s MCP server) over stdio, against the emulator', () => {
  const apiKey = newApiKey()
  const isorun = newClient(apiKey)
  const made: string[] = []
  const client = new Client({ name: 'isorun-emulator-test', version: '0.0.0' })
  let stderr = ''

  beforeAll(async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [MCP_CLI],
      env: { ISORUN_API_URL: apiUrl, ISORUN_API_KEY: apiKey },
      stderr: 'pipe',
    })
    // Kept for failure messages: a server that dies says why here.
    transport.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    await client.connect(transport)
  })

  afterAll(async () => {
    // Whatever an assertion left behind, restored sandboxes included; then the server process.
    await Promise.all(
      made.map(async (id) => (await isorun.get(id).catch(() => null))?.destroy().catch(() => undefined)),
    )
    await client.close()
    isorun.close()
  })

  async function call(name: string, args: Record<string, unknown> = {}): Promise<ToolResult> {
    const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })
    const content = result.content as { type: string; text?: string }[]
    expect(content[0]?.type, `${name}: ${JSON.stringify(result)} ${stderr}`).toBe('text')
    return { text: content[0]?.text ?? '', isError: result.isError === true }
  }

  const statusOf = async (id: string) => (await (await isorun.get(id))?.info())?.status

  /** A tool call that must succeed; returns its text. */
  async function ok(name: string, args: Record<string, unknown> = {}): Promise<string> {
    const r = await call(name, args)
    expect(r.isError, `${name} failed: ${r.text}\n${stderr}`).toBe(false)
    return r.text
  }

  it('lists the SDK’s tools', async () => {
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name).sort()).toEqual(
      [
        'checkpoint',
        'create_sandbox',
        'destroy_sandbox',
        'exec',
        'hibernate',
        'list_sandboxes',
        'restore',
        'resume',
        'url',
      ].sort(),
    )
  })

  it('drives a sandbox through every tool, with real effects', { timeout: 240_000 }, async () => {
    const id = await ok('create_sandbox', { image: 'busybox:latest', timeoutSec: 600 })
    made.push(id)
    expect(id).toMatch(RUN_ID)
    expect((await isorun.get(id))?.image).toBe('busybox:latest')

    // exec: the SDK's formatting of stdout, stderr and a non-zero exit code.
    expect(await ok('exec', { sandboxId: id, command: 'echo hello-from-mcp; uname -s' })).toBe(
      'hello-from-mcp\nLinux',
    )
    expect(await ok('exec', { sandboxId: id, command: 'echo oops >&2; exit 3' })).toBe(
      'STDERR:\noops\n[exit code: 3]',
    )

    // url: the emulator's proxy URL, and it reaches a server in the sandbox.
    await ok('exec', {
      sandboxId: id,
      command:
        'mkdir -p /www && echo served-by-busybox > /www/index.html && echo kept > /tmp/state && httpd -p 8080 -h /www',
    })
    const url = await ok('url', { sandboxId: id, port: 8080 })
    expect(url).toBe(`${apiUrl}/v1/runs/${id}/proxy/8080/`)
    const body = await waitFor(
      () =>
        fetch(url)
          .then(async (r) => (r.ok ? r.text() : undefined))
          .catch(() => undefined),
      10_000,
    )
    expect(body).toBe('served-by-busybox\n')

    // checkpoint + restore: a new sandbox with the parent's files.
    const snapshotId = await ok('checkpoint', { sandboxId: id })
    expect(snapshotId).toMatch(/^snap/)
    const restored = await ok('restore', { snapshotId })
    made.push(restored)
    expect(restored).toMatch(RUN_ID)
    expect(restored).not.toBe(id)
    expect(await ok('exec', { sandboxId: restored, command: 'cat /tmp/state' })).toBe('kept')

    // hibernate: the sandbox really is, and refuses exec (the tool reports the 409); resume brings it back.
    expect(await ok('hibernate', { sandboxId: id })).toBe('hibernated')
    expect(await statusOf(id)).toBe('hibernated')
    const refused = await call('exec', { sandboxId: id, command: 'true' })
    expect(refused.isError).toBe(true)
    expect(refused.text).toMatch(/409|hibernat/i)
    expect(await ok('resume', { sandboxId: id })).toBe('running')
    expect(await statusOf(id)).toBe('running')
    expect(await ok('exec', { sandboxId: id, command: 'cat /tmp/state' })).toBe('kept')

    const listed = (await ok('list_sandboxes')).split('\n')
    expect(listed.sort()).toEqual([id, restored].sort())

    // destroy: the usage JSON; both are gone afterwards.
    for (const sandboxId of [restored, id]) {
      const usage = JSON.parse(await ok('destroy_sandbox', { sandboxId }))
      expect(usage).toMatchObject({ status: 'destroyed' })
      expect(usage.uptimeMs).toBeGreaterThan(0)
      expect(typeof usage.costCents).toBe('number')
      expect(await isorun.get(sandboxId)).toBeNull()
    }
    expect(await ok('list_sandboxes')).toBe('(none)')
    const gone = await call('exec', { sandboxId: id, command: 'true' })
    expect(gone).toEqual({ isError: true, text: `No sandbox ${id}. Call create_sandbox first.` })

    await isorun.deleteSnapshot(snapshotId)
  })
})
