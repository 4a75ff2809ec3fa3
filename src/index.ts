/** The library entry point: start an emulator in-process (for tests) and the pieces behind it. */
export { buildApp } from './app.ts'
export { type Config, loadConfig } from './config.ts'
export { EmulatorError } from './errors.ts'
export { publicUrl, type RunningServer, startServer } from './server.ts'
