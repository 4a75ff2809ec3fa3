/** The API URL in what the command printed: its `export ISORUN_API_URL='...'` line. */
export function apiUrlIn(output: string): string | undefined {
  return /^export ISORUN_API_URL='([^']+)'\r?$/m.exec(output)?.[1]
}
