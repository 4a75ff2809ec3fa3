/** The library entry point: start an emulator in-process (for tests) and the pieces behind it. */
export { buildApp } from './app.ts'
export { type AuditEntry, canonicalJson, signEntry } from './audit/chain.ts'
export { type AuditVerification, verifyAuditLog } from './audit/verify.ts'
export { type Config, loadConfig } from './config.ts'
export { EmulatorError } from './errors.ts'
export { publicUrl, type RunningServer, startServer } from './server.ts'
export { type StartEmulatorOptions, type StartedEmulator, startEmulator } from './testing.ts'
