// @ts-check
;(() => {
  // sessionStorage: this tab only, gone with it, and (like everything of this origin) out of reach of
  // url(port) pages, which are on the API's origin, never this one.
  const KEY_STORAGE = 'isorun-emulator.dashboard.api-key'
  const TENANT_STORAGE = 'isorun-emulator.dashboard.tenant'
  const TENANT_HEADER = 'x-isorun-emulator-tenant'
  const POLL_MS = 1000
  let apiKey = ''
  // Without a key, on loopback: a tenant the control plane lists (its key's SHA-256).
  let tenant = ''
  // Whether GET /_emulator/tenants answers (loopback, no admin token); undefined until asked.
  /** @type {boolean | undefined} */
  let tenantsOpen
  /** What the SDK's records do not say, by sandbox id (from /_emulator/tenants). */
  let watched = new Map()
  let generation = 0
  let skewMs = 0
  const pending = new Map()
  const openAudits = new Set()
  let timer = null

  /**
   * An element of the page; tables keep their rows by key (see sync).
   * @param {string} id
   * @returns {HTMLElement & { rowsByKey?: Map<string, any> }}
   */
  function $(id) {
    return document.getElementById(id)
  }
  /** @param {string} id */
  function input(id) {
    return /** @type {HTMLInputElement} */ ($(id))
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag)
    if (cls) e.className = cls
    if (text !== undefined && text !== null) e.textContent = String(text)
    return e
  }
  function setText(e, text) {
    const t = String(text)
    if (e.textContent !== t) e.textContent = t
  }
  function button(label, cls, onClick) {
    const b = el('button', cls, label)
    b.type = 'button'
    b.addEventListener('click', onClick)
    return b
  }
  function serverNow() {
    return Date.now() + skewMs
  }
  function duration(ms) {
    if (!Number.isFinite(ms) || ms < 0) ms = 0
    if (ms < 1000) return `${Math.round(ms)} ms`
    const s = Math.floor(ms / 1000)
    const d = Math.floor(s / 86400),
      h = Math.floor((s % 86400) / 3600),
      m = Math.floor((s % 3600) / 60)
    const sec = s % 60
    if (d) return `${d}d ${h}h ${m}m`
    if (h) return `${h}h ${pad(m)}m ${pad(sec)}s`
    if (m) return `${m}m ${pad(sec)}s`
    return `${ms < 10000 ? (ms / 1000).toFixed(1) : String(sec)}s`
  }
  function pad(n) {
    return n < 10 ? `0${n}` : String(n)
  }
  function bytes(n) {
    n = Number(n)
    if (!Number.isFinite(n)) return '-'
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    let i = 0
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024
      i++
    }
    return `${i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`
  }
  function mem(mib) {
    return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`
  }
  function cents(c) {
    return `${Number(c).toFixed(4)} \u00a2`
  }
  function when(iso) {
    const t = Date.parse(iso)
    if (!Number.isFinite(t)) return String(iso)
    const d = new Date(t)
    const today = new Date()
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
    if (d.toDateString() === today.toDateString()) return time
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`
  }

  function toast(message, isError) {
    const box = el('div', isError ? 'error' : '', message)
    $('toast').appendChild(box)
    setTimeout(
      () => {
        box.remove()
      },
      isError ? 8000 : 3000,
    )
  }

  function ApiError(status, code, message) {
    this.status = status
    this.code = code
    this.message = message
  }
  function api(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = {}
    if (path.indexOf('/v1/') === 0) {
      if (apiKey) headers.authorization = `Bearer ${apiKey}`
      else headers[TENANT_HEADER] = tenant
    }
    /** @type {RequestInit} */
    const init = { method: method, headers: headers, cache: 'no-store' }
    if (body !== undefined) {
      headers['content-type'] = 'application/json'
      init.body = JSON.stringify(body)
    }
    return fetch(path, init).then((res) =>
      res.text().then((text) => {
        if (!res.ok) {
          let code = `http_${res.status}`,
            message = text || res.statusText
          try {
            // The emulator's error body: {"error": "<message>", "code", "details"}.
            const e = JSON.parse(text)
            if (e && typeof e.error === 'string') {
              code = e.code
              message = e.error
            }
          } catch (_) {
            /* not JSON: keep the text */
          }
          throw new ApiError(res.status, code, message)
        }
        const type = res.headers.get('content-type') || ''
        return type.indexOf('application/json') === 0 ? JSON.parse(text) : text
      }),
    )
  }

  // Keyed list rendering: nodes are made once per key and updated in place, so inputs keep their value
  // and focus across refreshes.
  function sync(table, items, keyOf, make, update) {
    if (!table.rowsByKey) table.rowsByKey = new Map()
    const rows = table.rowsByKey
    const seen = new Set()
    let prev = null
    items.forEach((item) => {
      const k = keyOf(item)
      seen.add(k)
      let node = rows.get(k)
      if (!node) {
        node = make(item)
        rows.set(k, node)
      }
      node.item = item
      update(node, item)
      const ref = prev ? prev.nextSibling : table.tHead ? table.tHead.nextSibling : table.firstChild
      if (node !== ref) table.insertBefore(node, ref)
      prev = node
    })
    rows.forEach((node, k) => {
      if (!seen.has(k)) {
        node.remove()
        rows.delete(k)
      }
    })
  }

  function clearAll() {
    ;['sandboxes', 'snapshots', 'history'].forEach((id) => {
      sync($(id), [], null, null, null)
    })
    ;['u-active', 'u-history', 'u-active-cost', 'u-total-cost', 'u-cpu', 'u-mem'].forEach((id) => {
      setText($(id), '-')
    })
    ;['sandbox-count', 'snapshot-count', 'history-count'].forEach((id) => {
      setText($(id), '')
    })
    openAudits.clear()
  }

  // --- actions --------------------------------------------------------------------------------------
  function act(id, label, method, path, body, done) {
    if (pending.has(id)) return
    pending.set(id, label)
    refreshSoon()
    const gen = generation
    api(method, path, body)
      .then(
        (result) => {
          if (gen !== generation) return
          if (done) done(result)
        },
        (err) => {
          if (gen !== generation) return
          toast(`${label} ${id} failed: ${err.code || 'error'}: ${err.message || err}`, true)
        },
      )
      .then(() => {
        pending.delete(id)
        refreshSoon()
      })
  }
  /** The API's origin (url(port) pages live there): this host, the API's port. */
  function apiOrigin() {
    const meta = document.querySelector('meta[name="isorun-api-port"]')
    const port = meta ? meta.getAttribute('content') : ''
    return port ? `${location.protocol}//${location.hostname}:${port}` : location.origin
  }
  function runPath(id, rest) {
    return `/v1/runs/${encodeURIComponent(id)}${rest || ''}`
  }

  // --- sandboxes ------------------------------------------------------------------------------------
  function makeSandbox() {
    const body = el('tbody')
    const tr = el('tr')
    const r = {}
    r.id = el('code')
    r.status = el('span', 'badge status')
    r.image = el('td')
    r.size = el('td', 'num')
    r.created = el('td', 'num created')
    r.uptime = el('td', 'num uptime')
    r.timeout = el('td', 'num idle')
    r.network = el('td', 'network')
    r.port = el('input', 'port')
    r.port.type = 'number'
    r.port.min = '1'
    r.port.max = '65535'
    r.port.placeholder = 'port'
    r.port.setAttribute('aria-label', 'port')
    r.link = el('a', 'off', 'open')
    r.link.target = '_blank'
    r.link.rel = 'noopener noreferrer'
    r.hibernate = button('hibernate', 'hibernate', () => {
      const s = body.item
      act(s.id, 'hibernate', 'POST', runPath(s.id, '/hibernate'))
    })
    r.resume = button('resume', 'resume', () => {
      const s = body.item
      act(s.id, 'resume', 'POST', runPath(s.id, '/resume'))
    })
    r.snapshot = button('snapshot', 'snapshot', () => {
      const s = body.item
      act(s.id, 'snapshot', 'POST', runPath(s.id, '/snapshot'), undefined, (snap) => {
        toast(`snapshot ${snap.snapshot_id} taken (${snap.memory ? 'files + memory' : 'files only'})`)
      })
    })
    r.destroy = button('destroy', 'destroy danger', () => {
      const s = body.item
      if (!window.confirm(`Destroy sandbox ${s.id}? This cannot be undone.`)) return
      act(s.id, 'destroy', 'DELETE', runPath(s.id), undefined, (res) => {
        toast(`destroyed ${s.id} (${cents(res.cost_cents)})`)
      })
    })
    r.audit = button('audit log', 'audit-toggle', () => {
      toggleAudit(body, body.item.id)
    })
    r.port.addEventListener('input', () => {
      updateLink(body)
    })

    const urlCell = el('td')
    const builder = el('div', 'urlbuilder')
    builder.append(r.port, r.link)
    urlCell.appendChild(builder)
    const actions = el('div', 'actions')
    actions.append(r.hibernate, r.resume, r.snapshot, r.destroy, r.audit)
    const actionCell = el('td')
    actionCell.appendChild(actions)
    const idCell = el('td')
    idCell.appendChild(r.id)
    const statusCell = el('td')
    statusCell.appendChild(r.status)
    tr.append(
      idCell,
      statusCell,
      r.image,
      r.size,
      r.created,
      r.uptime,
      r.timeout,
      r.network,
      urlCell,
      actionCell,
    )
    body.appendChild(tr)
    body.refs = r
    return body
  }
  function updateLink(body) {
    const r = body.refs,
      s = body.item
    const port = Number(r.port.value)
    const ok = s.status === 'running' && Number.isInteger(port) && port >= 1 && port <= 65535
    r.port.disabled = s.status !== 'running'
    if (ok) {
      const url = apiOrigin() + runPath(s.id, `/proxy/${port}/`)
      r.link.href = url
      r.link.title = url
      r.link.className = 'proxy-link'
      setText(r.link, `open :${port}`)
    } else {
      r.link.removeAttribute('href')
      r.link.removeAttribute('title')
      r.link.className = 'proxy-link off'
      setText(r.link, 'open')
    }
  }
  function updateSandbox(body, s) {
    const r = body.refs
    const busy = pending.get(s.id)
    body.dataset.id = s.id
    body.dataset.status = s.status
    setText(r.id, s.id)
    const shown = busy ? `${busy}\u2026` : s.status
    setText(r.status, shown)
    const cls = `badge status ${busy ? 'busy' : s.status}`
    if (r.status.className !== cls) r.status.className = cls
    setText(r.image, s.image)
    setText(r.size, `${s.vcpus} / ${mem(s.mem_mib)}`)
    setText(r.created, when(s.created_at))
    r.created.title = s.created_at
    setText(r.uptime, duration(serverNow() - Date.parse(s.created_at)))
    const w = watched.get(s.id)
    setText(r.timeout, idleText(s, w))
    if (w) r.timeout.title = `last activity ${when(w.last_activity_at)}`
    setText(r.network, w ? networkText(w.network) : '-')
    const running = s.status === 'running'
    r.hibernate.classList.toggle('hidden', !running)
    r.resume.classList.toggle('hidden', running)
    r.hibernate.disabled = r.resume.disabled = r.snapshot.disabled = r.destroy.disabled = Boolean(busy)
    r.snapshot.disabled = Boolean(busy) || !running
    updateLink(body)
    updateAudit(body, s.id)
  }

  /** The idle timeout and, where known, the time left before it destroys the sandbox. */
  function idleText(s, w) {
    if (!(s.timeout > 0)) return 'off'
    const of = duration(s.timeout * 1000)
    if (!w) return of
    if (s.status !== 'running') return `${of} (paused while hibernated)`
    if (w.busy) return `${of} (busy: not idle)`
    if (!w.idle_deadline_at) return of
    return `${duration(Date.parse(w.idle_deadline_at) - serverNow())} left of ${of}`
  }
  /** An egress policy in a few words: unrestricted, or its profile and rules. */
  function networkText(n) {
    if (!n || (n.allow.length === 0 && n.deny.length === 0)) return 'unrestricted'
    const parts = []
    if (n.profile) parts.push(`profile ${n.profile}`)
    if (n.allow.length) parts.push(`allow ${n.allow.join(', ')}`)
    if (n.deny.length) parts.push(`deny ${n.deny.join(', ')}`)
    return parts.join('; ')
  }

  // --- audit logs -----------------------------------------------------------------------------------
  function toggleAudit(body, id) {
    if (openAudits.has(id)) openAudits.delete(id)
    else openAudits.add(id)
    updateAudit(body, id)
    if (openAudits.has(id)) loadAudit(body, id)
  }
  function updateAudit(body, id) {
    const open = openAudits.has(id)
    const toggle = body.querySelector('button.audit-toggle')
    if (toggle) {
      setText(toggle, open ? 'hide audit' : 'audit log')
      toggle.setAttribute('aria-expanded', String(open))
    }
    if (!open) {
      if (body.auditRow) {
        body.auditRow.remove()
        body.auditRow = null
      }
      return
    }
    if (!body.auditRow) {
      const tr = el('tr', 'audit-row')
      const td = el('td')
      td.colSpan = body.firstChild.children.length
      const box = el('div', 'audit')
      const head = el('p', 'audit-head', 'loading the audit log\u2026')
      const table = el('table')
      const thead = el('thead')
      const hr = el('tr')
      ;['seq', 'time', 'event', 'data'].forEach((h) => {
        hr.appendChild(el('th', '', h))
      })
      thead.appendChild(hr)
      table.appendChild(thead)
      box.append(head, table)
      td.appendChild(box)
      tr.appendChild(td)
      body.appendChild(tr)
      body.auditRow = tr
      body.auditHead = head
      body.auditTable = table
    }
  }
  function loadAudit(body, id) {
    const gen = generation
    return api('GET', runPath(id, '/audit')).then(
      (text) => {
        if (gen !== generation || !body.auditRow) return
        const entries = []
        String(text)
          .split('\n')
          .forEach((line) => {
            if (!line.trim()) return
            try {
              entries.push(JSON.parse(line))
            } catch (_) {
              /* a torn line: skip */
            }
          })
        const last = entries[entries.length - 1]
        setText(
          body.auditHead,
          entries.length +
            (entries.length === 1 ? ' entry' : ' entries') +
            (last ? `, HMAC-chained; head ${String(last.hmac).slice(0, 23)}\u2026` : ''),
        )
        sync(
          body.auditTable,
          entries,
          (e) => String(e.seq),
          () => {
            const tr = el('tr')
            tr.append(el('td', 'num'), el('td', 'num mono'), el('td', 'mono event'), el('td', 'mono data'))
            return tr
          },
          (tr, e) => {
            const c = tr.children
            setText(c[0], e.seq)
            setText(c[1], when(e.ts))
            setText(c[2], e.event)
            const data = e.data && Object.keys(e.data).length ? JSON.stringify(e.data) : ''
            setText(c[3], data)
          },
        )
      },
      (err) => {
        if (gen !== generation || !body.auditHead) return
        setText(body.auditHead, `cannot read the audit log: ${err.code || ''} ${err.message || err}`)
      },
    )
  }

  // --- snapshots ------------------------------------------------------------------------------------
  function makeSnapshot() {
    const tr = el('tr')
    const r = {}
    r.id = el('code')
    r.run = el('code')
    r.size = el('td', 'num')
    r.memory = el('td')
    r.created = el('td', 'num')
    r.restore = button('restore', 'restore', () => {
      const s = tr.item
      act(s.snapshot_id, 'restore', 'POST', '/v1/runs/restore', { snapshot_id: s.snapshot_id }, (run) => {
        toast(`restored ${s.snapshot_id} as sandbox ${run.id}`)
      })
    })
    r.del = button('delete', 'delete danger', () => {
      const s = tr.item
      if (!window.confirm(`Delete snapshot ${s.snapshot_id}?`)) return
      act(s.snapshot_id, 'delete', 'DELETE', `/v1/snapshots/${encodeURIComponent(s.snapshot_id)}`)
    })
    const idCell = el('td')
    idCell.appendChild(r.id)
    const runCell = el('td')
    runCell.appendChild(r.run)
    const actions = el('div', 'actions')
    actions.append(r.restore, r.del)
    const actionCell = el('td')
    actionCell.appendChild(actions)
    tr.append(idCell, runCell, r.size, r.memory, r.created, actionCell)
    tr.refs = r
    return tr
  }
  function updateSnapshot(tr, s) {
    const r = tr.refs
    tr.dataset.id = s.snapshot_id
    tr.dataset.run = s.run_id
    setText(r.id, s.snapshot_id)
    setText(r.run, s.run_id)
    setText(r.size, bytes(s.size_bytes))
    setText(r.memory, s.memory ? 'files + memory' : 'files only')
    setText(r.created, when(s.created_at))
    r.restore.disabled = r.del.disabled = pending.has(s.snapshot_id)
  }

  // --- history --------------------------------------------------------------------------------------
  function makeHistory() {
    const body = el('tbody')
    const tr = el('tr')
    const cells = []
    for (let i = 0; i < 9; i++) cells.push(el('td', i >= 3 ? 'num' : ''))
    const id = el('code')
    cells[0].appendChild(id)
    const toggleCell = el('td')
    toggleCell.appendChild(
      button('audit log', 'audit-toggle', () => {
        toggleAudit(body, body.item.id)
      }),
    )
    cells.forEach((c) => {
      tr.appendChild(c)
    })
    tr.appendChild(toggleCell)
    body.appendChild(tr)
    body.refs = { id: id, cells: cells }
    return body
  }
  function updateHistory(body, h) {
    const c = body.refs.cells
    body.dataset.id = h.id
    setText(body.refs.id, h.id)
    setText(c[1], h.image)
    setText(c[2], `${h.vcpus} / ${mem(h.mem_mib)}`)
    setText(c[3], when(h.created_at))
    setText(c[4], when(h.destroyed_at))
    setText(c[5], duration(h.uptime_ms))
    setText(c[6], duration(h.cpu_ms))
    setText(c[7], bytes(h.mem_peak_bytes))
    setText(c[8], cents(h.cost_cents))
    updateAudit(body, h.id)
  }

  // --- polling --------------------------------------------------------------------------------------
  let inFlight = null
  let inFlightGen = -1
  function refresh() {
    if (!apiKey && tenantsOpen === false) return Promise.resolve()
    if (inFlight && inFlightGen === generation) return inFlight
    const gen = generation
    inFlightGen = gen
    const current = loadTenants()
      .then(() => {
        if (gen !== generation) return undefined
        if (!apiKey && !tenant) {
          if (tenantsOpen) conn('No sandboxes yet: whatever any key makes appears here.', false)
          return undefined
        }
        return Promise.all([
          api('GET', '/v1/runs'),
          api('GET', '/v1/snapshots'),
          api('GET', '/v1/runs/history'),
          api('GET', '/v1/usage'),
        ])
      })
      .then(
        (all) => {
          if (gen !== generation || !all) return
          const runs = all[0].runs,
            snaps = all[1].snapshots,
            hist = all[2].sandboxes,
            usage = all[3]
          const asOf = Date.parse(usage.as_of)
          if (Number.isFinite(asOf)) skewMs = asOf - Date.now()
          runs.sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))
          snaps.sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))
          sync($('sandboxes'), runs, (s) => s.id, makeSandbox, updateSandbox)
          sync($('snapshots'), snaps, (s) => s.snapshot_id, makeSnapshot, updateSnapshot)
          sync($('history'), hist, (h) => h.id, makeHistory, updateHistory)
          $('sandboxes-empty').classList.toggle('hidden', runs.length > 0)
          $('snapshots-empty').classList.toggle('hidden', snaps.length > 0)
          $('history-empty').classList.toggle('hidden', hist.length > 0)
          setText($('sandbox-count'), runs.length)
          setText($('snapshot-count'), snaps.length)
          setText($('history-count'), hist.length)
          setText($('u-active'), usage.active_sandboxes)
          setText($('u-history'), usage.history_sandboxes)
          setText($('u-active-cost'), cents(usage.active_cost_cents))
          setText($('u-total-cost'), cents(usage.total_cost_cents))
          setText($('u-cpu'), Number(usage.cpu_seconds).toFixed(1))
          setText($('u-mem'), Number(usage.mem_seconds).toFixed(1))
          const audits = []
          ;[$('sandboxes'), $('history')].forEach((table) => {
            ;(table.rowsByKey || new Map()).forEach((body, id) => {
              if (openAudits.has(id)) audits.push(loadAudit(body, id))
            })
          })
          const whose = apiKey ? 'the key above' : tenantLabel(tenant)
          conn(`live \u00b7 ${whose} \u00b7 updated ${when(new Date().toISOString())}`, false)
          return Promise.all(audits)
        },
        (err) => {
          if (gen !== generation) return
          if (err.status === 401) conn(`this API key is refused: ${err.message}`, true)
          else conn(`cannot reach the emulator: ${err.code || ''} ${err.message || err}`, true)
        },
      )
      .catch((err) => {
        conn(`dashboard error: ${err?.message ? err.message : err}`, true)
      })
      .then(() => {
        if (inFlight === current) inFlight = null
      })
    inFlight = current
    return current
  }
  // --- tenants (loopback, no admin token: the person running the emulator needs no key) ------------
  let tenantLabels = new Map()
  function tenantLabel(t) {
    return tenantLabels.get(t) || `key ${t.slice(0, 12)}`
  }
  function loadTenants() {
    if (tenantsOpen === false) return Promise.resolve()
    const gen = generation
    return api('GET', '/_emulator/tenants').then(
      (res) => {
        if (gen !== generation) return
        tenantsOpen = true
        const asOf = Date.parse(res.now)
        if (Number.isFinite(asOf)) skewMs = asOf - Date.now()
        watched = new Map()
        tenantLabels = new Map()
        res.tenants.forEach((t) => {
          tenantLabels.set(t.tenant, t.label)
          t.sandboxes.forEach((w) => {
            watched.set(w.id, w)
          })
        })
        if (!apiKey && !tenant && res.tenants.length > 0) {
          let saved = ''
          try {
            saved = sessionStorage.getItem(TENANT_STORAGE) || ''
          } catch (_) {
            /* storage off */
          }
          tenant = res.tenants.some((t) => t.tenant === saved) ? saved : res.tenants[0].tenant
        }
        showTenants(res.tenants)
      },
      (err) => {
        if (gen !== generation) return
        // 401 (an admin token is set) or 403 (not loopback): a key is the only way in.
        if (err.status === 401 || err.status === 403 || err.status === 404) {
          tenantsOpen = false
          $('tenant').classList.add('hidden')
          watched = new Map()
          if (!apiKey) conn('Enter an API key: the page shows that key\u2019s sandboxes.', false)
        }
      },
    )
  }
  let tenantOptions = ''
  function showTenants(tenants) {
    const select = /** @type {HTMLSelectElement} */ ($('tenant'))
    select.classList.remove('hidden')
    const options = [['', apiKey ? 'the key above' : 'no tenant yet']].concat(
      tenants.map((t) => [
        t.tenant,
        `${t.label} \u00b7 ${t.sandboxes.length} running or hibernated, ${t.destroyed} destroyed`,
      ]),
    )
    const signature = JSON.stringify(options)
    if (signature !== tenantOptions) {
      tenantOptions = signature
      select.replaceChildren(
        ...options.map((o) => {
          const option = /** @type {HTMLOptionElement} */ (el('option', '', o[1]))
          option.value = o[0]
          return option
        }),
      )
    }
    const value = apiKey ? '' : tenant
    if (select.value !== value) select.value = value
  }

  function conn(text, isError) {
    setText($('conn'), text)
    $('conn').className = isError ? 'error' : ''
  }
  function refreshSoon() {
    // Redraw pending states at once, then fetch.
    ;[$('sandboxes')].forEach((table) => {
      ;(table.rowsByKey || new Map()).forEach((body) => {
        updateSandbox(body, body.item)
      })
    })
    setTimeout(() => {
      refresh()
    }, 0)
  }
  // One polling loop at a time: a newer loop (new key, tab shown again) ends the older one.
  let loopToken = 0
  function loop() {
    const token = ++loopToken
    clearTimeout(timer)
    const p = document.hidden ? Promise.resolve() : refresh()
    p.then(() => {
      if (token === loopToken) timer = setTimeout(loop, POLL_MS)
    })
  }

  /** Shows `key`'s account, or ('' ) a tenant's where the control plane lists them. */
  function useKey(key, nextTenant) {
    generation++
    apiKey = key
    if (nextTenant !== undefined) tenant = nextTenant
    pending.clear()
    clearAll()
    loopToken++
    clearTimeout(timer)
    if (!key && tenantsOpen === false) {
      conn('Enter an API key: the page shows that key\u2019s sandboxes.', false)
      return
    }
    conn('loading\u2026', false)
    loop()
  }
  function store(name, value) {
    try {
      if (value) sessionStorage.setItem(name, value)
      else sessionStorage.removeItem(name)
    } catch (_) {
      /* storage off: kept in memory only */
    }
  }

  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault()
    const key = input('key').value.trim()
    store(KEY_STORAGE, key)
    useKey(key)
  })
  $('forget-key').addEventListener('click', () => {
    store(KEY_STORAGE, '')
    input('key').value = ''
    useKey('')
  })
  $('tenant').addEventListener('change', () => {
    const chosen = /** @type {HTMLSelectElement} */ ($('tenant')).value
    if (!chosen) return
    store(KEY_STORAGE, '')
    store(TENANT_STORAGE, chosen)
    input('key').value = ''
    useKey('', chosen)
  })
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && (apiKey || tenantsOpen !== false)) loop()
  })

  let saved = ''
  try {
    saved = sessionStorage.getItem(KEY_STORAGE) || ''
  } catch (_) {
    /* storage off */
  }
  input('key').value = saved
  useKey(saved)
})()
