import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { dashboardHtml } from '../ui/dashboard.ts'

/**
 * The dashboard at `/_emulator/ui`: a static page (no auth to fetch it); its script calls /v1 with the
 * API key the user types in. The page's only script and style are inline, so the Content-Security-Policy
 * allows exactly those two blocks (by hash) and requests to this origin, and nothing else: no other
 * script, no inline handler, no frame, no form post, no fetch elsewhere.
 */
export function uiRoutes(app: FastifyInstance): void {
  const html = dashboardHtml()
  const headers = {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': contentSecurityPolicy(html),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'cache-control': 'no-store',
  }
  const serve = async (_request: unknown, reply: FastifyReply) => reply.headers(headers).send(html)
  app.get('/ui', serve)
  app.get('/ui/', serve)
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
