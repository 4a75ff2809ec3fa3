/** Values shorter than this are not masked: "1" or "on" would blank out unrelated text. */
const MIN_SECRET_LENGTH = 4
export const MASK = '***'

/** A copy of `data` with every occurrence of a secret value inside its strings replaced by ***. */
export function maskSecrets<T>(data: T, secrets: readonly string[]): T {
  const values = secrets.filter((s) => s.length >= MIN_SECRET_LENGTH)
  if (values.length === 0) return data
  const mask = (v: unknown): unknown => {
    if (typeof v === 'string') return values.reduce((acc, s) => acc.split(s).join(MASK), v)
    if (Array.isArray(v)) return v.map(mask)
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mask(x)]))
    return v
  }
  return mask(data) as T
}
