import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IsorunError } from 'isorun'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.ts'
import { ImageMap, parseImageMap } from '../src/images/image-map.ts'
import { buildInjectApp } from './support/inject-app.ts'
import { describeWithDocker, newClient, sandboxTracker } from './support/sdk.ts'

const STAND_IN_NODE = 'isorun-emulator-stand-in/node:22'
const STAND_IN_PYTHON = 'isorun-emulator-stand-in/python:3'

describe('the image map', () => {
  it('runs the stand-ins for the images the SDK asks for, by canonical name', () => {
    const map = new ImageMap('isorun-emulator-stand-in')
    for (const name of ['node:22-slim', 'docker.io/library/node:22-slim', 'node:22', 'library/node:22']) {
      expect(map.resolve(name).image).toBe(STAND_IN_NODE)
    }
    expect(map.resolve('python:3.12-slim').image).toBe(STAND_IN_PYTHON)
    expect(map.resolve('busybox:latest')).toEqual({ image: 'busybox:latest' })
    expect(map.resolve('node:20-slim')).toEqual({ image: 'node:20-slim' })
    expect(map.standIns().sort()).toEqual(['node', 'python'])
  })

  it("takes the operator's entries over the built-in ones, and no built-ins when stand-ins are off", () => {
    const map = new ImageMap('isorun-emulator-stand-in', [
      ['node:22-slim', 'node:22-slim'],
      ['python:3.12-slim', 'my/python:3.12'],
      ['ghcr.io/acme/tool:1', 'busybox'],
    ])
    expect(map.resolve('node:22-slim').image).toBe('node:22-slim')
    expect(map.resolve('node:22').image).toBe(STAND_IN_NODE)
    expect(map.resolve('python:3.12-slim')).toMatchObject({
      image: 'my/python:3.12',
      entry: { from: 'setting' },
    })
    expect(map.resolve('ghcr.io/acme/tool:1').image).toBe('busybox')
    // No entry left uses the python stand-in: it is not built.
    expect(map.standIns()).toEqual(['node'])
    expect(new ImageMap('').entries()).toEqual([])
  })

  it('reads ISORUN_EMULATOR_IMAGE_MAP and ISORUN_EMULATOR_STAND_INS, refusing what is not a mapping', () => {
    expect(loadConfig({}).imageMap).toEqual([])
    expect(loadConfig({}).standIns).toBe('isorun-emulator-stand-in')
    expect(loadConfig({ ISORUN_EMULATOR_STAND_INS: 'off' }).standIns).toBe('')
    expect(
      loadConfig({ ISORUN_EMULATOR_IMAGE_MAP: ' node:22=my/node:22 , python:3.12-slim=py ' }).imageMap,
    ).toEqual([
      ['node:22', 'my/node:22'],
      ['python:3.12-slim', 'py'],
    ])
    for (const bad of [
      'node:22',
      '=busybox',
      'node:22=',
      'Node:22=busybox',
      'node:22=isorun-emulator-snapshot:x',
    ]) {
      expect(() => parseImageMap(bad), bad).toThrow()
      expect(() => loadConfig({ ISORUN_EMULATOR_IMAGE_MAP: bad }), bad).toThrow(/ISORUN_EMULATOR_IMAGE_MAP/)
    }
    expect(() => loadConfig({ ISORUN_EMULATOR_STAND_INS: 'Not A Repo' })).toThrow(/ISORUN_EMULATOR_STAND_INS/)
  })
})

describe('the image map in create (fake engine)', () => {
  let dataDir: string
  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'isorun-image-map-'))
  })
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }))
  let t: ReturnType<typeof buildInjectApp> | undefined
  afterEach(async () => {
    await t?.app.close()
    t = undefined
  })
  const create = (image: string) =>
    t?.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      payload: { image },
    })

  it('records the resolved image, and never pulls a stand-in (an operator entry follows the pull policy)', async () => {
    t = buildInjectApp(join(dataDir, 'a'), { env: { ISORUN_EMULATOR_IMAGE_MAP: 'tool:1=acme/tool:1' } })
    const res = await create('node:22')
    expect(res?.statusCode).toBe(201)
    expect(res?.json().image).toBe(STAND_IN_NODE)
    expect(t.engine.created[0]?.image).toBe(STAND_IN_NODE)
    expect((await create('tool:1'))?.json().image).toBe('acme/tool:1')
    expect(t.engine.ensured).toEqual([
      { image: STAND_IN_NODE, pull: false },
      { image: 'acme/tool:1', pull: true },
    ])
    const caps = (await t.app.inject({ url: '/_emulator/capabilities' })).json()
    expect(caps.image_map).toEqual(
      expect.arrayContaining([
        {
          requested: 'node:22-slim',
          image: STAND_IN_NODE,
          from: expect.stringMatching(/^built-in stand-in: Node 22/),
        },
        { requested: 'python:3.12-slim', image: STAND_IN_PYTHON, from: expect.stringContaining('python3') },
        { requested: 'tool:1', image: 'acme/tool:1', from: 'ISORUN_EMULATOR_IMAGE_MAP' },
      ]),
    )
  })

  it('says how to get a missing stand-in, naming what was asked for', async () => {
    // The fake engine has every image but those under missing/.
    t = buildInjectApp(join(dataDir, 'b'), { env: { ISORUN_EMULATOR_STAND_INS: 'missing/stand-ins' } })
    const res = await create('python:3.12-slim')
    expect(res?.statusCode).toBe(400)
    const error = res?.json()
    expect(error.code).toBe('image_unavailable')
    expect(error.error).toMatch(
      /^image python:3\.12-slim runs the stand-in missing\/stand-ins\/python:3, which is not built/,
    )
    expect(error.error).toContain('fixtures/build-images.sh --stand-ins missing/stand-ins')
    expect(error.error).toContain('ISORUN_EMULATOR_IMAGE_MAP')
    expect(error.details).toMatchObject({
      image: 'missing/stand-ins/python:3',
      requested: 'python:3.12-slim',
    })
  })

  it('says how to get any other missing image: docker pull, load, tag, build, or the map', async () => {
    t = buildInjectApp(join(dataDir, 'c'))
    const error = (await create('missing/app:1'))?.json()
    expect(error.code).toBe('image_unavailable')
    for (const way of [
      'docker pull missing/app:1',
      'docker load -i',
      'docker tag',
      'docker build -t missing/app:1',
      'ISORUN_EMULATOR_IMAGE_MAP',
    ]) {
      expect(error.error).toContain(way)
    }
  })
})

describeWithDocker('the image map through the SDK', () => {
  const isorun = newClient()
  const track = sandboxTracker()
  afterAll(() => isorun.close())

  it('runs the Node stand-in for node:22 and reports it as the image', async () => {
    const s = track(await isorun.create({ image: 'node:22' }))
    expect(s.image).toBe(STAND_IN_NODE)
    expect((await s.info()).image).toBe(STAND_IN_NODE)
    expect((await s.exec('node -v')).stdout).toMatch(/^v22\./)
    await s.destroy()
  })

  it("runs the Python stand-in for python:3.12-slim (the SDK adapters' code interpreter runs python3)", async () => {
    const s = track(await isorun.create({ image: 'python:3.12-slim' }))
    expect(s.image).toBe(STAND_IN_PYTHON)
    const r = await s.exec(`python3 -c 'import json, sys; print(json.dumps({"ok": sys.version_info[0]}))'`)
    expect(r).toMatchObject({ exitCode: 0, stdout: '{"ok": 3}\n' })
    await s.destroy()
  })

  it('answers a missing image with how to get it', async () => {
    const err = await isorun.create({ image: '127.0.0.1:1/missing:1' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(IsorunError)
    expect((err as IsorunError).status).toBe(400)
    expect((err as IsorunError).body).toContain('docker load')
    expect((err as IsorunError).body).toContain('ISORUN_EMULATOR_IMAGE_MAP')
  })
})
