import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { OperationDoc } from '../openapi.ts'
import type { OriginUrls } from '../origins.ts'
import { dashboardHtml } from '../ui/dashboard.ts'

const UI_DOC: OperationDoc = {
  operationId: 'dashboard',
  tag: 'emulator',
  security: 'none',
  origin: 'admin',
  summary: 'The dashboard (a page; its script calls /v1 on its own origin, with a key or as a tenant)',
  responses: { 200: { description: 'the page', contentType: 'text/html' } },
}

/**
 * The dashboard at `/_emulator/ui`, on the dashboard's own origin (origins.ts): a static page (no auth to
 * fetch it); its script calls /v1 on this origin with the API key the user types in, or as a tenant the
 * control plane lists. The page's only script and style are inline, so the Content-Security-Policy
 * allows exactly those two blocks (by hash) and requests to this origin, and nothing else: no other
 * script, no inline handler, no frame, no form post, no fetch elsewhere. The API's port is given in a
 * `<meta>` for the url(port) links the page makes (to the API's origin, never this one).
 */
export function uiRoutes(app: FastifyInstance, origins: OriginUrls): void {
  const template = dashboardHtml()
  const headers = {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': contentSecurityPolicy(template),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'cache-control': 'no-store',
  }
  const serve = async (_request: unknown, reply: FastifyReply) =>
    reply.headers(headers).send(withApiPort(template, origins.api))
  app.get('/ui', { schema: { openapi: UI_DOC } }, serve)
  app.get('/ui/', { schema: { openapi: { ...UI_DOC, operationId: 'dashboardSlash' } } }, serve)
}

const API_PORT_META = '<meta name="isorun-api-port" content="">'

/** The page with the API's port in its `<meta>` (empty before the server listens, as in app.inject). */
function withApiPort(html: string, apiUrl: string | undefined): string {
  const port = apiUrl ? new URL(apiUrl).port : ''
  return html.replace(
    API_PORT_META,
    () => `<meta name="isorun-api-port" content="${port.replace(/\D/g, '')}">`,
  )
}

/** A CSP that admits the page's own inline `<script>` and `<style>` blocks by their SHA-256. */
export function contentSecurityPolicy(html: string): string {
  const hashes = (tag: string) =>
    [...html.matchAll(new RegExp(`<${tag}(?: [^>]*)?>([\\s\\S]*?)</${tag}>`, 'g'))]
      .map(
        (m) =>
          `'sha256-${createHash('sha256')
            .update(m[1] ?? '', 'utf8')
            .digest('base64')}'`,
      )
      .join(' ')
  return [
    "default-src 'none'",
    `script-src ${hashes('script')}`,
    `style-src ${hashes('style')}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ')
}
