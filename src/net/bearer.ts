/**
 * The token of an `Authorization: Bearer <token>` header (RFC 6750), trimmed; undefined for another
 * scheme, no header, or no token. The one parser for the API's auth, the control plane, the fault
 * injector, the request journal and url(port) (which never forwards a bearer header to a guest).
 */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined
  const match = /^Bearer\s+(.+)$/i.exec(authorization.trim())
  return match?.[1]?.trim() || undefined
}
