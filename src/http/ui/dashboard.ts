/**
 * The dashboard served at `/_emulator/ui`: one self-contained page (inline CSS and JS, nothing fetched
 * from elsewhere, no build step). It keeps the API key the user types in localStorage and talks to the
 * same /v1 API the SDK uses, with that key as its bearer token, polling once a second.
 *
 * Everything from the API is put on the page with textContent / setAttribute, never as HTML. A TS module
 * (rather than an .html file read at run time) so that `node src/cli.ts`, vitest and tsc's dist/ all find
 * it. The script and style blocks must stay free of backticks and dollar-brace: this is a template string.
 * Their hashes go into the page's Content-Security-Policy (see routes/ui.ts), so no inline `style=`
 * attributes and no inline event handlers.
 */
export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>isorun-emulator dashboard</title>
<style>
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --panel: #fff; --fg: #1c2330; --muted: #667085; --line: #e3e6eb;
  --accent: #2f6fde; --danger: #c9372c; --ok: #1f8a4c; --warn: #b7791f; --code: #eef1f5;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #12151b; --panel: #1a1f27; --fg: #e6e9ef; --muted: #8c95a5; --line: #2a313c;
    --accent: #6ea0ff; --danger: #ff7b72; --ok: #4cc38a; --warn: #e3b341; --code: #232a35;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: center; padding: 12px 20px;
  background: var(--panel); border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 1; }
header h1 { font-size: 16px; margin: 0; font-weight: 650; }
header h1 small { color: var(--muted); font-weight: 400; }
form { display: flex; gap: 8px; align-items: center; margin: 0; }
input { font: inherit; color: inherit; background: var(--bg); border: 1px solid var(--line);
  border-radius: 6px; padding: 4px 8px; }
input#key { width: 22em; }
input.port { width: 6.5em; }
button { font: inherit; color: inherit; background: var(--panel); border: 1px solid var(--line);
  border-radius: 6px; padding: 3px 10px; cursor: pointer; }
button:hover:not(:disabled) { border-color: var(--accent); }
button:disabled { opacity: .45; cursor: default; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { color: var(--danger); }
#conn { color: var(--muted); font-size: 13px; }
#conn.error { color: var(--danger); }
main { padding: 16px 20px 40px; max-width: 1500px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; margin: 0 0 16px;
  overflow-x: auto; }
section > h2 { font-size: 14px; margin: 0; padding: 10px 14px; border-bottom: 1px solid var(--line);
  display: flex; gap: 10px; align-items: baseline; }
section > h2 .count { color: var(--muted); font-weight: 400; }
#usage { display: flex; flex-wrap: wrap; gap: 8px 28px; padding: 10px 14px; }
#usage div span { display: block; color: var(--muted); font-size: 12px; }
#usage div b { font-variant-numeric: tabular-nums; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 14px; border-bottom: 1px solid var(--line); white-space: nowrap;
  vertical-align: middle; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num { font-variant-numeric: tabular-nums; }
tbody:last-child > tr:last-child > td { border-bottom: 0; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, monospace;
  font-size: 12.5px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 999px; font-size: 12px; font-weight: 600;
  border: 1px solid currentColor; }
.badge.running { color: var(--ok); }
.badge.hibernated { color: var(--warn); }
.badge.busy { color: var(--accent); }
.actions { display: flex; gap: 6px; }
.urlbuilder { display: flex; gap: 6px; align-items: center; }
.urlbuilder a { color: var(--accent); }
.urlbuilder a.off { color: var(--muted); pointer-events: none; text-decoration: none; }
.empty { color: var(--muted); padding: 10px 14px; margin: 0; }
.hidden { display: none !important; }
tr.audit-row > td { background: var(--bg); padding: 8px 14px 12px; white-space: normal; }
.audit-head { color: var(--muted); font-size: 12px; margin: 0 0 6px; }
.audit table td, .audit table th { padding: 3px 10px; font-size: 12.5px; }
.audit td.data { white-space: pre-wrap; word-break: break-all; max-width: 70ch; }
#toast { position: fixed; right: 16px; bottom: 16px; max-width: 60ch; display: flex; flex-direction: column;
  gap: 8px; }
#toast div { background: var(--panel); border: 1px solid var(--line); border-left: 4px solid var(--accent);
  border-radius: 6px; padding: 8px 12px; box-shadow: 0 4px 16px rgba(0,0,0,.12); }
#toast div.error { border-left-color: var(--danger); }
footer { color: var(--muted); font-size: 12px; padding: 0 20px 20px; }
</style>
</head>
<body>
<header>
  <h1>isorun-emulator <small>dashboard</small></h1>
  <form id="key-form" autocomplete="off">
    <label for="key">API key</label>
    <input id="key" name="key" type="password" autocomplete="off" spellcheck="false" placeholder="isorun_local_dev">
    <button type="submit" class="primary" id="use-key">Use key</button>
    <button type="button" id="forget-key">Forget</button>
  </form>
  <span id="conn" role="status">Enter an API key: the page shows that key's sandboxes.</span>
</header>
<main>
  <section id="usage-section">
    <h2>Usage</h2>
    <div id="usage">
      <div><span>active sandboxes</span><b id="u-active">-</b></div>
      <div><span>destroyed</span><b id="u-history">-</b></div>
      <div><span>active cost</span><b id="u-active-cost">-</b></div>
      <div><span>total cost</span><b id="u-total-cost">-</b></div>
      <div><span>vCPU-seconds</span><b id="u-cpu">-</b></div>
      <div><span>GiB-seconds</span><b id="u-mem">-</b></div>
    </div>
  </section>
  <section>
    <h2>Sandboxes <span class="count" id="sandbox-count"></span></h2>
    <table id="sandboxes">
      <thead><tr>
        <th>id</th><th>status</th><th>image</th><th>vCPUs / memory</th><th>uptime</th><th>idle timeout</th>
        <th>url(port)</th><th>actions</th>
      </tr></thead>
    </table>
    <p class="empty" id="sandboxes-empty">No sandboxes.</p>
  </section>
  <section>
    <h2>Snapshots <span class="count" id="snapshot-count"></span></h2>
    <table id="snapshots">
      <thead><tr>
        <th>id</th><th>from sandbox</th><th>size</th><th>memory</th><th>created</th><th>actions</th>
      </tr></thead>
    </table>
    <p class="empty" id="snapshots-empty">No snapshots.</p>
  </section>
  <section>
    <h2>History <span class="count" id="history-count"></span></h2>
    <table id="history">
      <thead><tr>
        <th>id</th><th>image</th><th>vCPUs / memory</th><th>created</th><th>destroyed</th><th>uptime</th>
        <th>CPU time</th><th>peak memory</th><th>cost</th><th></th>
      </tr></thead>
    </table>
    <p class="empty" id="history-empty">No destroyed sandboxes.</p>
  </section>
</main>
<footer>
  Refreshes every second from the /v1 API with the key above (kept in this browser's localStorage).
  Reading does not count as activity: a sandbox's idle timeout keeps running while you watch it.
</footer>
<div id="toast" aria-live="polite"></div>
<script>
(function () {
  'use strict';
  var KEY_STORAGE = 'isorun-emulator.dashboard.api-key';
  var POLL_MS = 1000;
  var apiKey = '';
  var generation = 0;
  var skewMs = 0;
  var pending = new Map();
  var openAudits = new Set();
  var timer = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function setText(e, text) {
    var t = String(text);
    if (e.textContent !== t) e.textContent = t;
  }
  function button(label, cls, onClick) {
    var b = el('button', cls, label);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }
  function serverNow() { return Date.now() + skewMs; }
  function duration(ms) {
    if (!isFinite(ms) || ms < 0) ms = 0;
    if (ms < 1000) return Math.round(ms) + ' ms';
    var s = Math.floor(ms / 1000);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    var sec = s % 60;
    if (d) return d + 'd ' + h + 'h ' + m + 'm';
    if (h) return h + 'h ' + pad(m) + 'm ' + pad(sec) + 's';
    if (m) return m + 'm ' + pad(sec) + 's';
    return (ms < 10000 ? (ms / 1000).toFixed(1) : String(sec)) + 's';
  }
  function pad(n) { return n < 10 ? '0' + n : String(n); }
  function bytes(n) {
    n = Number(n);
    if (!isFinite(n)) return '-';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function mem(mib) { return mib >= 1024 && mib % 1024 === 0 ? (mib / 1024) + ' GiB' : mib + ' MiB'; }
  function cents(c) { return Number(c).toFixed(4) + ' \u00a2'; }
  function when(iso) {
    var t = Date.parse(iso);
    if (!isFinite(t)) return String(iso);
    var d = new Date(t);
    var today = new Date();
    var time = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    if (d.toDateString() === today.toDateString()) return time;
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + time;
  }

  function toast(message, isError) {
    var box = el('div', isError ? 'error' : '', message);
    $('toast').appendChild(box);
    setTimeout(function () { box.remove(); }, isError ? 8000 : 3000);
  }

  function ApiError(status, code, message) {
    this.status = status; this.code = code; this.message = message;
  }
  function api(method, path, body) {
    var headers = { authorization: 'Bearer ' + apiKey };
    var init = { method: method, headers: headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        if (!res.ok) {
          var code = 'http_' + res.status, message = text || res.statusText;
          try {
            var e = JSON.parse(text).error;
            if (e) { code = e.code; message = e.message; }
          } catch (_) { /* not JSON: keep the text */ }
          throw new ApiError(res.status, code, message);
        }
        var type = res.headers.get('content-type') || '';
        return type.indexOf('application/json') === 0 ? JSON.parse(text) : text;
      });
    });
  }

  // Keyed list rendering: nodes are made once per key and updated in place, so inputs keep their value
  // and focus across refreshes.
  function sync(table, items, keyOf, make, update) {
    var rows = table.rowsByKey || (table.rowsByKey = new Map());
    var seen = new Set();
    var prev = null;
    items.forEach(function (item) {
      var k = keyOf(item);
      seen.add(k);
      var node = rows.get(k);
      if (!node) { node = make(item); rows.set(k, node); }
      node.item = item;
      update(node, item);
      var ref = prev ? prev.nextSibling : (table.tHead ? table.tHead.nextSibling : table.firstChild);
      if (node !== ref) table.insertBefore(node, ref);
      prev = node;
    });
    rows.forEach(function (node, k) {
      if (!seen.has(k)) { node.remove(); rows.delete(k); }
    });
  }

  function clearAll() {
    ['sandboxes', 'snapshots', 'history'].forEach(function (id) { sync($(id), [], null, null, null); });
    ['u-active', 'u-history', 'u-active-cost', 'u-total-cost', 'u-cpu', 'u-mem'].forEach(function (id) {
      setText($(id), '-');
    });
    ['sandbox-count', 'snapshot-count', 'history-count'].forEach(function (id) { setText($(id), ''); });
    openAudits.clear();
  }

  // --- actions --------------------------------------------------------------------------------------
  function act(id, label, method, path, body, done) {
    if (pending.has(id)) return;
    pending.set(id, label);
    refreshSoon();
    var gen = generation;
    api(method, path, body).then(function (result) {
      if (gen !== generation) return;
      if (done) done(result);
    }, function (err) {
      if (gen !== generation) return;
      toast(label + ' ' + id + ' failed: ' + (err.code || 'error') + ': ' + (err.message || err), true);
    }).then(function () {
      pending.delete(id);
      refreshSoon();
    });
  }
  function runPath(id, rest) { return '/v1/runs/' + encodeURIComponent(id) + (rest || ''); }

  // --- sandboxes ------------------------------------------------------------------------------------
  function makeSandbox() {
    var body = el('tbody');
    var tr = el('tr');
    var r = {};
    r.id = el('code');
    r.status = el('span', 'badge status');
    r.image = el('td');
    r.size = el('td', 'num');
    r.uptime = el('td', 'num uptime');
    r.timeout = el('td', 'num');
    r.port = el('input', 'port');
    r.port.type = 'number'; r.port.min = '1'; r.port.max = '65535'; r.port.placeholder = 'port';
    r.port.setAttribute('aria-label', 'port');
    r.link = el('a', 'off', 'open');
    r.link.target = '_blank';
    r.link.rel = 'noopener noreferrer';
    r.hibernate = button('hibernate', 'hibernate', function () {
      var s = body.item;
      act(s.id, 'hibernate', 'POST', runPath(s.id, '/hibernate'));
    });
    r.resume = button('resume', 'resume', function () {
      var s = body.item;
      act(s.id, 'resume', 'POST', runPath(s.id, '/resume'));
    });
    r.snapshot = button('snapshot', 'snapshot', function () {
      var s = body.item;
      act(s.id, 'snapshot', 'POST', runPath(s.id, '/snapshot'), undefined, function (snap) {
        toast('snapshot ' + snap.snapshot_id + ' taken (' + (snap.memory ? 'files + memory' : 'files only') + ')');
      });
    });
    r.destroy = button('destroy', 'destroy danger', function () {
      var s = body.item;
      if (!window.confirm('Destroy sandbox ' + s.id + '? This cannot be undone.')) return;
      act(s.id, 'destroy', 'DELETE', runPath(s.id), undefined, function (res) {
        toast('destroyed ' + s.id + ' (' + cents(res.cost_cents) + ')');
      });
    });
    r.audit = button('audit log', 'audit-toggle', function () { toggleAudit(body, body.item.id); });
    r.port.addEventListener('input', function () { updateLink(body); });

    var urlCell = el('td');
    var builder = el('div', 'urlbuilder');
    builder.append(r.port, r.link);
    urlCell.appendChild(builder);
    var actions = el('div', 'actions');
    actions.append(r.hibernate, r.resume, r.snapshot, r.destroy, r.audit);
    var actionCell = el('td');
    actionCell.appendChild(actions);
    var idCell = el('td');
    idCell.appendChild(r.id);
    var statusCell = el('td');
    statusCell.appendChild(r.status);
    tr.append(idCell, statusCell, r.image, r.size, r.uptime, r.timeout, urlCell, actionCell);
    body.appendChild(tr);
    body.refs = r;
    return body;
  }
  function updateLink(body) {
    var r = body.refs, s = body.item;
    var port = Number(r.port.value);
    var ok = s.status === 'running' && Number.isInteger(port) && port >= 1 && port <= 65535;
    r.port.disabled = s.status !== 'running';
    if (ok) {
      var url = location.origin + runPath(s.id, '/proxy/' + port + '/');
      r.link.href = url;
      r.link.title = url;
      r.link.className = 'proxy-link';
      setText(r.link, 'open :' + port);
    } else {
      r.link.removeAttribute('href');
      r.link.removeAttribute('title');
      r.link.className = 'proxy-link off';
      setText(r.link, 'open');
    }
  }
  function updateSandbox(body, s) {
    var r = body.refs;
    var busy = pending.get(s.id);
    body.dataset.id = s.id;
    body.dataset.status = s.status;
    setText(r.id, s.id);
    var shown = busy ? busy + '\u2026' : s.status;
    setText(r.status, shown);
    var cls = 'badge status ' + (busy ? 'busy' : s.status);
    if (r.status.className !== cls) r.status.className = cls;
    setText(r.image, s.image);
    setText(r.size, s.vcpus + ' / ' + mem(s.mem_mib));
    setText(r.uptime, duration(serverNow() - Date.parse(s.created_at)));
    setText(r.timeout, s.timeout > 0 ? duration(s.timeout * 1000) : 'off');
    var running = s.status === 'running';
    r.hibernate.classList.toggle('hidden', !running);
    r.resume.classList.toggle('hidden', running);
    r.hibernate.disabled = r.resume.disabled = r.snapshot.disabled = r.destroy.disabled = Boolean(busy);
    r.snapshot.disabled = Boolean(busy) || !running;
    updateLink(body);
    updateAudit(body, s.id);
  }

  // --- audit logs -----------------------------------------------------------------------------------
  function toggleAudit(body, id) {
    if (openAudits.has(id)) openAudits.delete(id);
    else openAudits.add(id);
    updateAudit(body, id);
    if (openAudits.has(id)) loadAudit(body, id);
  }
  function updateAudit(body, id) {
    var open = openAudits.has(id);
    var toggle = body.querySelector('button.audit-toggle');
    if (toggle) {
      setText(toggle, open ? 'hide audit' : 'audit log');
      toggle.setAttribute('aria-expanded', String(open));
    }
    if (!open) {
      if (body.auditRow) { body.auditRow.remove(); body.auditRow = null; }
      return;
    }
    if (!body.auditRow) {
      var tr = el('tr', 'audit-row');
      var td = el('td');
      td.colSpan = body.firstChild.children.length;
      var box = el('div', 'audit');
      var head = el('p', 'audit-head', 'loading the audit log\u2026');
      var table = el('table');
      var thead = el('thead');
      var hr = el('tr');
      ['seq', 'time', 'event', 'data'].forEach(function (h) { hr.appendChild(el('th', '', h)); });
      thead.appendChild(hr);
      table.appendChild(thead);
      box.append(head, table);
      td.appendChild(box);
      tr.appendChild(td);
      body.appendChild(tr);
      body.auditRow = tr;
      body.auditHead = head;
      body.auditTable = table;
    }
  }
  function loadAudit(body, id) {
    var gen = generation;
    return api('GET', runPath(id, '/audit')).then(function (text) {
      if (gen !== generation || !body.auditRow) return;
      var entries = [];
      String(text).split('\n').forEach(function (line) {
        if (!line.trim()) return;
        try { entries.push(JSON.parse(line)); } catch (_) { /* a torn line: skip */ }
      });
      var last = entries[entries.length - 1];
      setText(body.auditHead, entries.length + (entries.length === 1 ? ' entry' : ' entries') +
        (last ? ', HMAC-chained; head ' + String(last.hmac).slice(0, 23) + '\u2026' : ''));
      sync(body.auditTable, entries, function (e) { return String(e.seq); }, function () {
        var tr = el('tr');
        tr.append(el('td', 'num'), el('td', 'num mono'), el('td', 'mono event'), el('td', 'mono data'));
        return tr;
      }, function (tr, e) {
        var c = tr.children;
        setText(c[0], e.seq);
        setText(c[1], when(e.ts));
        setText(c[2], e.event);
        var data = e.data && Object.keys(e.data).length ? JSON.stringify(e.data) : '';
        setText(c[3], data);
      });
    }, function (err) {
      if (gen !== generation || !body.auditHead) return;
      setText(body.auditHead, 'cannot read the audit log: ' + (err.code || '') + ' ' + (err.message || err));
    });
  }

  // --- snapshots ------------------------------------------------------------------------------------
  function makeSnapshot() {
    var tr = el('tr');
    var r = {};
    r.id = el('code');
    r.run = el('code');
    r.size = el('td', 'num');
    r.memory = el('td');
    r.created = el('td', 'num');
    r.restore = button('restore', 'restore', function () {
      var s = tr.item;
      act(s.snapshot_id, 'restore', 'POST', '/v1/runs/restore', { snapshot_id: s.snapshot_id }, function (run) {
        toast('restored ' + s.snapshot_id + ' as sandbox ' + run.id);
      });
    });
    r.del = button('delete', 'delete danger', function () {
      var s = tr.item;
      if (!window.confirm('Delete snapshot ' + s.snapshot_id + '?')) return;
      act(s.snapshot_id, 'delete', 'DELETE', '/v1/snapshots/' + encodeURIComponent(s.snapshot_id));
    });
    var idCell = el('td');
    idCell.appendChild(r.id);
    var runCell = el('td');
    runCell.appendChild(r.run);
    var actions = el('div', 'actions');
    actions.append(r.restore, r.del);
    var actionCell = el('td');
    actionCell.appendChild(actions);
    tr.append(idCell, runCell, r.size, r.memory, r.created, actionCell);
    tr.refs = r;
    return tr;
  }
  function updateSnapshot(tr, s) {
    var r = tr.refs;
    tr.dataset.id = s.snapshot_id;
    tr.dataset.run = s.run_id;
    setText(r.id, s.snapshot_id);
    setText(r.run, s.run_id);
    setText(r.size, bytes(s.size_bytes));
    setText(r.memory, s.memory ? 'files + memory' : 'files only');
    setText(r.created, when(s.created_at));
    r.restore.disabled = r.del.disabled = pending.has(s.snapshot_id);
  }

  // --- history --------------------------------------------------------------------------------------
  function makeHistory() {
    var body = el('tbody');
    var tr = el('tr');
    var cells = [];
    for (var i = 0; i < 9; i++) cells.push(el('td', i >= 3 ? 'num' : ''));
    var id = el('code');
    cells[0].appendChild(id);
    var toggleCell = el('td');
    toggleCell.appendChild(button('audit log', 'audit-toggle', function () { toggleAudit(body, body.item.id); }));
    cells.forEach(function (c) { tr.appendChild(c); });
    tr.appendChild(toggleCell);
    body.appendChild(tr);
    body.refs = { id: id, cells: cells };
    return body;
  }
  function updateHistory(body, h) {
    var c = body.refs.cells;
    body.dataset.id = h.id;
    setText(body.refs.id, h.id);
    setText(c[1], h.image);
    setText(c[2], h.vcpus + ' / ' + mem(h.mem_mib));
    setText(c[3], when(h.created_at));
    setText(c[4], when(h.destroyed_at));
    setText(c[5], duration(h.uptime_ms));
    setText(c[6], duration(h.cpu_ms));
    setText(c[7], bytes(h.mem_peak_bytes));
    setText(c[8], cents(h.cost_cents));
    updateAudit(body, h.id);
  }

  // --- polling --------------------------------------------------------------------------------------
  var inFlight = null;
  var inFlightGen = -1;
  function refresh() {
    if (!apiKey) return Promise.resolve();
    if (inFlight && inFlightGen === generation) return inFlight;
    var gen = generation;
    inFlightGen = gen;
    var current = Promise.all([
      api('GET', '/v1/runs'),
      api('GET', '/v1/snapshots'),
      api('GET', '/v1/runs/history'),
      api('GET', '/v1/usage'),
    ]).then(function (all) {
      if (gen !== generation) return;
      var runs = all[0].runs, snaps = all[1].snapshots, hist = all[2].sandboxes, usage = all[3];
      var asOf = Date.parse(usage.as_of);
      if (isFinite(asOf)) skewMs = asOf - Date.now();
      runs.sort(function (a, b) { return Date.parse(b.created_at) - Date.parse(a.created_at); });
      snaps.sort(function (a, b) { return Date.parse(b.created_at) - Date.parse(a.created_at); });
      sync($('sandboxes'), runs, function (s) { return s.id; }, makeSandbox, updateSandbox);
      sync($('snapshots'), snaps, function (s) { return s.snapshot_id; }, makeSnapshot, updateSnapshot);
      sync($('history'), hist, function (h) { return h.id; }, makeHistory, updateHistory);
      $('sandboxes-empty').classList.toggle('hidden', runs.length > 0);
      $('snapshots-empty').classList.toggle('hidden', snaps.length > 0);
      $('history-empty').classList.toggle('hidden', hist.length > 0);
      setText($('sandbox-count'), runs.length);
      setText($('snapshot-count'), snaps.length);
      setText($('history-count'), hist.length);
      setText($('u-active'), usage.active_sandboxes);
      setText($('u-history'), usage.history_sandboxes);
      setText($('u-active-cost'), cents(usage.active_cost_cents));
      setText($('u-total-cost'), cents(usage.total_cost_cents));
      setText($('u-cpu'), Number(usage.cpu_seconds).toFixed(1));
      setText($('u-mem'), Number(usage.mem_seconds).toFixed(1));
      var audits = [];
      [$('sandboxes'), $('history')].forEach(function (table) {
        (table.rowsByKey || new Map()).forEach(function (body, id) {
          if (openAudits.has(id)) audits.push(loadAudit(body, id));
        });
      });
      conn('live \u00b7 updated ' + when(new Date().toISOString()), false);
      return Promise.all(audits);
    }, function (err) {
      if (gen !== generation) return;
      if (err.status === 401) conn('this API key is refused: ' + err.message, true);
      else conn('cannot reach the emulator: ' + (err.code || '') + ' ' + (err.message || err), true);
    }).catch(function (err) {
      conn('dashboard error: ' + (err && err.message ? err.message : err), true);
    }).then(function () { if (inFlight === current) inFlight = null; });
    inFlight = current;
    return current;
  }
  function conn(text, isError) {
    setText($('conn'), text);
    $('conn').className = isError ? 'error' : '';
  }
  function refreshSoon() {
    // Redraw pending states at once, then fetch.
    [$('sandboxes')].forEach(function (table) {
      (table.rowsByKey || new Map()).forEach(function (body) { updateSandbox(body, body.item); });
    });
    setTimeout(function () { refresh(); }, 0);
  }
  // One polling loop at a time: a newer loop (new key, tab shown again) ends the older one.
  var loopToken = 0;
  function loop() {
    var token = ++loopToken;
    clearTimeout(timer);
    var p = document.hidden ? Promise.resolve() : refresh();
    p.then(function () { if (token === loopToken) timer = setTimeout(loop, POLL_MS); });
  }

  function useKey(key) {
    generation++;
    apiKey = key;
    pending.clear();
    clearAll();
    loopToken++;
    clearTimeout(timer);
    if (!key) {
      conn('Enter an API key: the page shows that key\u2019s sandboxes.', false);
      return;
    }
    conn('loading\u2026', false);
    loop();
  }

  $('key-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var key = $('key').value.trim();
    try { localStorage.setItem(KEY_STORAGE, key); } catch (_) { /* storage off: keep it in memory */ }
    useKey(key);
  });
  $('forget-key').addEventListener('click', function () {
    try { localStorage.removeItem(KEY_STORAGE); } catch (_) { /* nothing stored */ }
    $('key').value = '';
    useKey('');
  });
  document.addEventListener('visibilitychange', function () { if (!document.hidden && apiKey) loop(); });

  var saved = '';
  try { saved = localStorage.getItem(KEY_STORAGE) || ''; } catch (_) { /* storage off */ }
  $('key').value = saved;
  useKey(saved);
})();
</script>
</body>
</html>
`
