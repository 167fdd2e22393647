// The quick-tunnel web inspector: a live list of the requests through the tunnel (fed
// by Server-Sent Events from /api/events), their details, replay (with edits), copy as
// curl and clear. Plain browser JavaScript, no dependencies; every string from a request
// goes into the page as text (textContent), never as HTML.
// Over 500 lines on purpose: it is served as one file with no build step (no bundler in
// the package), so splitting it would mean more requests or a bundler for one page.
'use strict';

const TOKEN = document.querySelector('meta[name="qt-token"]').content;
const MAX_ROWS = 1000;
const state = {
  rows: new Map(), // id -> summary
  selected: undefined,
  details: undefined,
  tunnel: undefined,
  renderPending: false,
};

const $ = (id) => document.getElementById(id);

/** Builds an element: el('td', { class: 'num' }, 'text', child…). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function formatDuration(ms) {
  if (ms === null || ms === undefined) return '…';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function formatTime(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour12: false });
}

function statusClass(row) {
  if (row.error && row.status === null) return 'serr';
  return row.status === null ? '' : `s${String(row.status)[0]}`;
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-quick-tunnel-token'] = TOKEN;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return undefined;
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(data.error ?? `HTTP ${res.status}`);
  return data;
}

// ---- tunnel header -------------------------------------------------------------------

function showTunnel(tunnels) {
  const t = tunnels.tunnels[0];
  state.tunnel = t;
  state.tunnelCount = tunnels.tunnels.length;
  // Several tunnels (quick-tunnel start): the others after the first.
  $('more-tunnels').replaceChildren(
    ...tunnels.tunnels
      .slice(1)
      .map((o) =>
        el(
          'span',
          { class: 'more' },
          el('span', { class: `status ${o.status}` }, o.name),
          ' ',
          el(
            'a',
            { class: 'url', href: o.public_url ?? undefined, target: '_blank', rel: 'noreferrer' },
            o.public_url ?? '',
          ),
        ),
      ),
  );
  if (t === undefined) return;
  const status = $('status');
  status.textContent = t.status;
  status.className = `status ${t.status}`;
  const link = $('public-url');
  link.textContent = t.public_url ?? '';
  if (t.public_url) link.href = t.public_url;
  $('target').textContent = t.target ? `→ ${t.target}${t.local ? ' (local only)' : ''}` : '';
  if (state.tunnelCount > 1) status.textContent = `${t.name} ${t.status}`;
}

// ---- list ----------------------------------------------------------------------------

function upsert(summaries) {
  for (const s of summaries) state.rows.set(s.id, s);
  // Oldest out first (ids grow).
  while (state.rows.size > MAX_ROWS) state.rows.delete(state.rows.keys().next().value);
  scheduleRender();
  const sel = state.selected;
  if (sel !== undefined && summaries.some((s) => s.id === sel && !s.open)) {
    // The selected request finished: show its response.
    void select(sel, { keepScroll: true });
  }
}

function matches(row) {
  const method = $('filter-method').value;
  if (method && row.method !== method) return false;
  const status = $('filter-status').value;
  if (status === 'open' && !row.open) return false;
  if (status === 'error' && row.error === null) return false;
  if (/^\d$/.test(status) && String(row.status ?? '')[0] !== status) return false;
  const text = $('filter-text').value.trim().toLowerCase();
  if (text) {
    const hay =
      `${row.tunnel_name} ${row.label} ${row.method} ${row.path} ${row.status ?? ''} ${row.error ?? ''} ${
        row.queued ? 'queue' : ''
      }`.toLowerCase();
    if (!hay.includes(text)) return false;
  }
  return true;
}

function scheduleRender() {
  if (state.renderPending) return;
  state.renderPending = true;
  requestAnimationFrame(() => {
    state.renderPending = false;
    renderList();
  });
}

function renderList() {
  const tbody = $('requests').tBodies[0];
  const rows = [...state.rows.values()].reverse().filter(matches);
  tbody.replaceChildren(
    ...rows.map((r) =>
      el(
        'tr',
        {
          'data-id': r.id,
          class: r.id === state.selected ? 'selected' : undefined,
          onclick: () => void select(r.id),
        },
        el('td', { class: 'dim' }, formatTime(r.started_at)),
        el('td', {}, r.method),
        el(
          'td',
          { class: 'path', title: r.path },
          r.path,
          r.replay_of !== null
            ? el('span', { class: 'badge' }, r.edited ? 'edited replay' : 'replay')
            : null,
          r.queued ? el('span', { class: 'badge queue' }, 'from queue') : null,
          state.tunnelCount > 1 ? el('span', { class: 'badge' }, r.tunnel_name) : null,
          r.upgrade ? el('span', { class: 'badge' }, 'websocket') : null,
        ),
        el('td', { class: statusClass(r) }, r.status ?? (r.open ? '…' : '–')),
        el('td', { class: 'num' }, r.open ? '…' : formatDuration(r.duration_ms)),
        el('td', { class: 'num' }, formatBytes(r.bytes_out)),
      ),
    ),
  );
  $('empty').hidden = state.rows.size > 0;
}

// ---- bodies --------------------------------------------------------------------------

function base64Bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function utf8(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

function isText(text) {
  if (text === undefined) return false;
  let controls = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0) return false;
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12) || c === 0x7f) controls++;
  }
  return controls <= text.length / 100;
}

function hexDump(bytes) {
  const lines = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const slice = bytes.subarray(off, off + 16);
    let hex = '';
    let ascii = '';
    for (let i = 0; i < 16; i++) {
      if (i === 8) hex += ' ';
      const b = slice[i];
      hex += b === undefined ? '   ' : `${b.toString(16).padStart(2, '0')} `;
      if (b !== undefined) ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
    }
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex} |${ascii}|`);
  }
  return lines.join('\n');
}

/** A JSON value as a foldable tree (objects and arrays are <details>). */
function jsonTree(value, key, depth) {
  const keyPart =
    key === undefined ? [] : [el('span', { class: 'key' }, JSON.stringify(key)), ': '];
  if (value !== null && typeof value === 'object') {
    const isArray = Array.isArray(value);
    const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
    const [open, close] = isArray ? ['[', ']'] : ['{', '}'];
    if (entries.length === 0) return el('div', { class: 'entry' }, ...keyPart, `${open}${close}`);
    return el(
      'details',
      { open: depth < 4 },
      el(
        'summary',
        {},
        ...keyPart,
        open,
        el('span', { class: 'dim' }, ` ${entries.length} ${isArray ? 'items' : 'keys'} `),
      ),
      ...entries.map(([k, v]) => jsonTree(v, isArray ? undefined : k, depth + 1)),
      el('div', {}, close),
    );
  }
  const cls = typeof value === 'string' ? 'str' : typeof value === 'number' ? 'num' : 'lit';
  return el(
    'div',
    { class: 'entry' },
    ...keyPart,
    el('span', { class: cls }, JSON.stringify(value)),
  );
}

function formTable(text) {
  const params = new URLSearchParams(text);
  const rows = [...params.entries()];
  if (rows.length === 0) return undefined;
  return el(
    'table',
    { class: 'headers form' },
    el('tbody', {}, ...rows.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, v)))),
  );
}

/** The ways a body can be shown, best first. */
function bodyViews(body) {
  const bytes = base64Bytes(body.base64);
  const type = (body.content_type ?? '').split(';')[0].trim().toLowerCase();
  const text = utf8(bytes);
  const views = [];
  if (type.startsWith('image/') && !body.truncated) {
    views.push([
      'image',
      () =>
        el('img', { class: 'body', alt: 'image body', src: `data:${type};base64,${body.base64}` }),
    ]);
  }
  if (isText(text)) {
    let parsed;
    let json = false;
    if (type.includes('json') || /^\s*[[{]/.test(text)) {
      try {
        parsed = JSON.parse(text);
        json = true;
      } catch {
        json = false;
      }
    }
    if (json) {
      views.push(['json', () => el('div', { class: 'json' }, jsonTree(parsed, undefined, 0))]);
    }
    if (type === 'application/x-www-form-urlencoded') {
      const table = formTable(text);
      if (table) views.push(['form', () => table]);
    }
    views.push([
      'text',
      () => el('pre', { class: 'text' }, json ? JSON.stringify(parsed, null, 2) : text),
    ]);
  }
  views.push(['hex', () => el('pre', { class: 'hex' }, hexDump(bytes))]);
  return views;
}

function bodySection(title, body) {
  if (body.size === 0) return [el('h3', {}, title, el('span', { class: 'dim' }, ' · no body'))];
  const notes = [formatBytes(body.size)];
  if (body.content_type) notes.push(body.content_type);
  if (body.decoded) notes.push(`${body.content_encoding}, decoded`);
  if (body.released) notes.push('preview dropped to bound memory');
  else if (body.truncated) notes.push(`first ${formatBytes(body.captured)} shown`);
  const head = el(
    'div',
    { class: 'body-head' },
    el('h3', {}, title, el('span', { class: 'dim' }, ` · ${notes.join(' · ')}`)),
  );
  if (body.released) return [head];
  const views = bodyViews(body);
  const holder = el('div', { class: 'body-view' });
  const buttons = el('span', { class: 'views' });
  const show = (name) => {
    const view = views.find(([n]) => n === name) ?? views[0];
    holder.replaceChildren(view[1]());
    for (const b of buttons.children) b.classList.toggle('on', b.dataset.view === view[0]);
  };
  for (const [name] of views) {
    buttons.append(
      el('button', { type: 'button', 'data-view': name, onclick: () => show(name) }, name),
    );
  }
  head.append(buttons);
  show(views[0][0]);
  return [head, holder];
}

function headerTable(headers) {
  return el(
    'table',
    { class: 'headers' },
    el('tbody', {}, ...headers.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, v)))),
  );
}

// ---- details -------------------------------------------------------------------------

async function select(id, opts = {}) {
  state.selected = id;
  scheduleRender();
  let d;
  try {
    d = await api('GET', `/api/requests/${id}`);
  } catch (err) {
    $('details-pane').replaceChildren(el('p', { class: 'notice error' }, err.message));
    return;
  }
  if (state.selected !== id) return;
  const pane = $('details-pane');
  const scroll = pane.scrollTop;
  state.details = d;
  renderDetails(d);
  if (opts.keepScroll) pane.scrollTop = scroll;
}

function renderDetails(d, extra) {
  const cap = d.capture;
  const facts = [
    d.status !== null
      ? `${d.status}${cap?.response?.status_message ? ` ${cap.response.status_message}` : ''}`
      : d.open
        ? 'waiting for the response'
        : 'no response',
    d.open ? 'in progress' : formatDuration(d.duration_ms),
    `at ${new Date(d.started_at).toLocaleString()}`,
    `in ${formatBytes(d.bytes_in)}`,
    `out ${formatBytes(d.bytes_out)}`,
  ];
  if (cap) facts.push(`from ${cap.request.remote_addr}`);
  const nodes = [
    el('h2', {}, `${d.label}  ${d.method} ${d.path}`),
    el(
      'div',
      { class: 'facts' },
      ...facts.map((f, i) => el('span', { class: i === 0 ? statusClass(d) : undefined }, f)),
    ),
  ];
  if (d.queued) {
    nodes.push(
      el(
        'p',
        { class: 'notice queue' },
        'Delivered from queue',
        d.queued.queued_at
          ? ` · arrived at the relay ${new Date(d.queued.queued_at).toLocaleString()}`
          : '',
        ` · delivery id ${d.queued.delivery_id}`,
      ),
    );
  }
  if (d.replay_of !== null) {
    nodes.push(
      el(
        'p',
        { class: 'notice' },
        d.edited ? 'Replay with edits of ' : 'Replay of ',
        el(
          'a',
          { href: '#', onclick: (e) => (e.preventDefault(), void select(d.replay_of)) },
          `entry ${d.replay_of}`,
        ),
        ', sent straight to the local app.',
      ),
    );
  }
  if (d.error) nodes.push(el('p', { class: 'notice error' }, d.error));
  const message = el('div', { id: 'action-result' });
  nodes.push(
    el(
      'div',
      { class: 'actions' },
      el(
        'button',
        {
          id: 'replay',
          type: 'button',
          class: 'primary',
          disabled: d.replay_refusal !== null,
          title: d.replay_refusal ?? 'send it to the local app again',
          onclick: () => void replay(d, undefined, message),
        },
        'Replay',
      ),
      el(
        'button',
        {
          id: 'replay-edit',
          type: 'button',
          disabled: cap === null,
          onclick: () => editForm(d, message),
        },
        'Replay with edits',
      ),
      el(
        'button',
        {
          id: 'copy-curl',
          type: 'button',
          disabled: d.curl === null,
          onclick: () => void copyCurl(d, message),
        },
        'Copy as curl',
      ),
    ),
    message,
  );
  if (extra) message.append(extra);
  if (cap === null) {
    nodes.push(el('p', { class: 'dim' }, 'Nothing was captured for this request.'));
  } else {
    nodes.push(el('h3', {}, 'Request headers'), headerTable(cap.request.headers));
    nodes.push(...bodySection('Request body', cap.request.body));
    if (cap.response) {
      nodes.push(el('h3', {}, 'Response headers'), headerTable(cap.response.headers));
      nodes.push(...bodySection('Response body', cap.response.body));
    }
    if (cap.websocket) {
      const w = cap.websocket;
      nodes.push(
        el('h3', {}, 'WebSocket'),
        el(
          'p',
          {},
          w.counted
            ? `${w.messages_to_origin} messages to the app (${formatBytes(w.bytes_to_origin)}), ${w.messages_to_visitor} to the visitor (${formatBytes(w.bytes_to_visitor)})`
            : `${formatBytes(w.bytes_to_origin)} to the app, ${formatBytes(w.bytes_to_visitor)} to the visitor`,
        ),
      );
    }
    nodes.push(
      el('h3', {}, 'Timing'),
      el(
        'p',
        { class: 'dim' },
        `arrived ${new Date(d.started_at).toISOString()}`,
        cap.finished_at ? ` · finished ${cap.finished_at}` : '',
        d.duration_ms !== null ? ` · took ${formatDuration(d.duration_ms)}` : '',
      ),
    );
  }
  $('details-pane').replaceChildren(...nodes);
}

async function replay(d, edits, message) {
  message.replaceChildren(el('p', { class: 'notice' }, 'Replaying…'));
  try {
    const result = await api('POST', `/api/requests/${d.id}/replay`, edits ?? {});
    state.rows.set(result.id, result);
    scheduleRender();
    await select(result.id);
  } catch (err) {
    message.replaceChildren(el('p', { class: 'notice error' }, `Replay failed: ${err.message}`));
  }
}

function editForm(d, message) {
  const req = d.capture.request;
  const bytes = base64Bytes(req.body.base64);
  const text = utf8(bytes);
  const editableBody = !req.body.decoded && (bytes.length === 0 || isText(text));
  const method = el('input', { name: 'method', value: d.method });
  const path = el('input', { name: 'path', value: req.uri });
  const headers = el('textarea', { name: 'headers', rows: Math.min(16, req.headers.length + 1) });
  headers.value = req.headers
    .filter(([k]) => !['content-length', 'transfer-encoding'].includes(k.toLowerCase()))
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n');
  const body = el('textarea', { name: 'body', rows: 10, disabled: !editableBody });
  body.value = editableBody ? (text ?? '') : '(binary or encoded body: sent as captured)';
  const error = el('div');
  const form = el(
    'form',
    {
      class: 'edit',
      onsubmit: (e) => {
        e.preventDefault();
        const pairs = [];
        for (const line of headers.value.split('\n')) {
          if (line.trim() === '') continue;
          const colon = line.indexOf(':');
          if (colon <= 0) {
            error.replaceChildren(el('p', { class: 'notice error' }, `Not a header line: ${line}`));
            return;
          }
          pairs.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
        }
        const edits = { method: method.value.trim(), path: path.value.trim(), headers: pairs };
        if (editableBody) edits.body = body.value;
        void replay(d, edits, message);
      },
    },
    el('label', {}, 'Method'),
    method,
    el('label', {}, 'Path'),
    path,
    el('label', {}, 'Headers'),
    headers,
    el('label', {}, 'Body'),
    body,
    el('span'),
    error,
    el(
      'div',
      { class: 'buttons' },
      el(
        'button',
        { type: 'submit', class: 'primary', id: 'send-edited' },
        'Send to the local app',
      ),
      el('button', { type: 'button', onclick: () => message.replaceChildren() }, 'Cancel'),
    ),
  );
  message.replaceChildren(form);
}

async function copyCurl(d, message) {
  let note = 'Copied to the clipboard.';
  try {
    await navigator.clipboard.writeText(d.curl);
  } catch {
    note = 'The browser did not allow copying: select the command below.';
  }
  message.replaceChildren(
    el('p', { class: 'dim' }, note, ...d.curl_notes.map((n) => ` Note: ${n}.`)),
    el('pre', { id: 'curl' }, d.curl),
  );
}

// ---- live updates --------------------------------------------------------------------

function connect() {
  const events = new EventSource('/api/events');
  const live = $('live');
  events.addEventListener('open', () => {
    live.textContent = '● live';
  });
  events.addEventListener('error', () => {
    live.textContent = '○ reconnecting…';
  });
  events.addEventListener('snapshot', (e) => {
    const data = JSON.parse(e.data);
    showTunnel(data);
    state.rows.clear();
    upsert(data.requests);
    if (state.selected !== undefined && !state.rows.has(state.selected)) {
      state.selected = undefined;
      $('details-pane').replaceChildren(
        el('p', { class: 'dim' }, 'Select a request to see its headers and bodies.'),
      );
    }
  });
  events.addEventListener('requests', (e) => upsert(JSON.parse(e.data)));
  events.addEventListener('tunnels', (e) => showTunnel(JSON.parse(e.data)));
}

for (const id of ['filter-text', 'filter-method', 'filter-status']) {
  $(id).addEventListener('input', scheduleRender);
}
$('clear').addEventListener('click', () => {
  api('DELETE', '/api/requests').catch((err) => alert(`Clear failed: ${err.message}`));
});
connect();
