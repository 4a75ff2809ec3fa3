import { readFileSync } from 'node:fs'

/**
 * The dashboard served at `/_emulator/ui`: dashboard/index.html, app.js and style.css at the package's
 * root (checked by tsc and Biome like the rest), made into one self-contained page: the stylesheet and
 * the script are inlined where index.html links them, so the page fetches nothing and its
 * Content-Security-Policy admits exactly those two blocks by hash (see routes/ui.ts).
 *
 * The script keeps the API key the user types in localStorage and talks to the same /v1 API the SDK
 * uses, with that key as its bearer token, polling once a second. Everything from the API is put on the
 * page with textContent / setAttribute, never as HTML; no inline `style=` attributes, no inline event
 * handlers.
 */

// src/http/ui/ and dist/http/ui/ are both three levels below the package root.
const DIR = new URL('../../../dashboard/', import.meta.url)

const STYLESHEET = '<link rel="stylesheet" href="style.css">'
const SCRIPT = '<script type="module" src="app.js"></script>'

let page: string | undefined

/** The page, read once. */
export function dashboardHtml(): string {
  page ??= inline(
    readFileSync(new URL('index.html', DIR), 'utf8'),
    readFileSync(new URL('style.css', DIR), 'utf8'),
    readFileSync(new URL('app.js', DIR), 'utf8'),
  )
  return page
}

function inline(html: string, css: string, js: string): string {
  const once = (tag: string, what: string) => {
    if (html.split(tag).length !== 2)
      throw new Error(`dashboard/index.html must link its ${what} once: ${tag}`)
  }
  once(STYLESHEET, 'stylesheet')
  once(SCRIPT, 'script')
  // Functions as replacements, so `$&` and the like in the code stay as written.
  return html
    .replace(STYLESHEET, () => `<style>\n${css}</style>`)
    .replace(SCRIPT, () => `<script type="module">\n${js}</script>`)
}
