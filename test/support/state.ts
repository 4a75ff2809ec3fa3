import type { Sandbox } from 'isorun'
import { apiUrl, waitFor } from './sdk.ts'

/**
 * Starts a shell loop that counts in a variable (memory only), mirroring it to /tmp/count. The file is
 * replaced by a rename, never truncated in place, so a reader never finds it empty mid-write.
 */
export async function startShellCounter(s: Sandbox): Promise<void> {
  await s.exec(
    `sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done' >/dev/null 2>&1 </dev/null &`,
  )
  await waitFor(async () => (Number(await readCount(s)) > 3 ? true : undefined), 10_000)
}

export async function readCount(s: Sandbox): Promise<number> {
  return Number((await s.exec('cat /tmp/count 2>/dev/null || echo 0')).stdout.trim())
}

/** Whether this emulator keeps memory (CRIU), from its own capabilities report. */
export async function memoryCapability(): Promise<{ criu: boolean; reason: string }> {
  const res = await fetch(`${apiUrl}/_emulator/capabilities`)
  const body = (await res.json()) as { memory_state: { criu: boolean; reason: string } }
  return body.memory_state
}
