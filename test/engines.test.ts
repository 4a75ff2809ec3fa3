import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Capabilities } from '../src/capabilities.ts'
import { abilitiesMarkdown, ENGINE_ABILITIES, says, withAbilitiesTable } from '../src/engine-abilities.ts'
import { testEngine } from './support/engine.ts'
import { apiUrl, describeWithDocker } from './support/sdk.ts'

describe('the engine abilities table', () => {
  it('is what docs/engines.md shows (npm run docs:engines rewrites it)', () => {
    const docs = readFileSync(join(import.meta.dirname, '..', 'docs', 'engines.md'), 'utf8')
    expect(docs).toContain(abilitiesMarkdown())
    expect(withAbilitiesTable(docs)).toBe(docs)
  })
})

describeWithDocker('GET /_emulator/capabilities on the engine under test', () => {
  it('names the engine, and its row of the table agrees with what this engine really does', async () => {
    const caps = (await (await fetch(`${apiUrl}/_emulator/capabilities`)).json()) as Capabilities
    expect(caps.engine).toMatchObject({ engine: testEngine, endpoint: expect.stringMatching(/^unix:\/\/\//) })
    // The socket the emulator really talks to (docker-modem's default is a function that finds it).
    expect(statSync((caps.engine?.endpoint ?? '').slice('unix://'.length)).isSocket()).toBe(true)
    expect(caps.engine?.remote).toBeFalsy()
    expect(caps.engines).toEqual(ENGINE_ABILITIES)
    const here = caps.engines[testEngine].local
    expect(says(here.memory_snapshots)).toBe(caps.memory_state.criu)
    expect(says(here.egress_policies)).toBe(caps.egress.enforced)
    expect(says(here.sandboxes_apart)).toBe(caps.engine?.sandboxNetwork?.isolated)
    expect(here.hibernate.split(' ')[0]).toBe(caps.memory_state.hibernate)
    // Unless it is turned off for this run (the agent-off pass), as the table says.
    if (process.env.ISORUN_EMULATOR_AGENT !== 'off') expect(says(here.agent)).toBe(caps.exec.transport.agent)
  })
})
