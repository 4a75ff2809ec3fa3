import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Sandbox } from 'isorun'
import { waitFor } from './sdk.ts'

/** What the test guest (fixtures/guest/app.mjs) says it received. */
export interface Echo {
  method: string
  url: string
  headers: Record<string, string | undefined>
  bodyLength: number
  sha256: string
  body: string | null
}

const guestDir = join(import.meta.dirname, '..', 'fixtures', 'guest')

/** A test guest script (fixtures/guest), as text. */
export const guestFile = (name: string) => readFileSync(join(guestDir, name), 'utf8')

/**
 * Uploads the guest scripts to /srv and starts `script` on `port` in the background, then waits until
 * url(port)`probe` answers with anything but a 502.
 */
export async function startGuest(s: Sandbox, script: string, port: number, probe = '/'): Promise<void> {
  for (const name of ['ws.mjs', 'app.mjs', 'cdp.mjs']) await s.writeFile(`/srv/${name}`, guestFile(name))
  await s.exec(`node /srv/${script} ${port} > /tmp/${script}.log 2>&1 &`)
  const up = await waitFor(
    () =>
      fetch(s.url(port, probe))
        .then((r) => (r.status === 502 ? undefined : true))
        .catch(() => undefined),
    15_000,
    50,
  )
  if (!up)
    throw new Error(
      `guest ${script} never answered on ${port}: ${(await s.exec(`cat /tmp/${script}.log`)).stdout}`,
    )
}
