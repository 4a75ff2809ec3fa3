import { Isorun } from 'isorun'
import { beforeAll, expect, it } from 'vitest'
import { apiUrl, containerOf, describeWithDocker } from './support/sdk.ts'

describeWithDocker('the seed Quickstart, verbatim', () => {
  beforeAll(() => {
    // What a user pastes from the emulator's banner.
    process.env.ISORUN_API_URL = apiUrl
    process.env.ISORUN_API_KEY = 'isorun_local_dev'
  })

  it('creates a node:22-slim sandbox, runs node -v and destroys it', async () => {
    const isorun = new Isorun() // ISORUN_API_URL and ISORUN_API_KEY from the emulator's banner
    const sandbox = await isorun.create({ image: 'node:22-slim' })
    let stdout: string
    try {
      ;({ stdout } = await sandbox.exec('node -v')) // v22.x.x
    } finally {
      await sandbox.destroy()
    }
    expect(stdout).toMatch(/^v22\.\d+\.\d+\n$/)
    expect(await containerOf(sandbox.id)).toBeUndefined()
    isorun.close()
  })
})
