// The edgeroute fleet dashboard. No library, no build step: it reads the center's fleet
// API (GET /api/v1/nodes, /api/v1/nodes/{node}, /api/v1/plans) with the admin key and
// redraws every POLL_MS. Everything from the API is written with textContent, never as
// HTML: node names and errors come from agents.
'use strict';

const POLL_MS = 2000;
const PAGE_SIZE = 50;
const KEY_STORE = 'edgeroute.adminKey';
const SVG_NS = 'http://www.w3.org/2000/svg';

let timer = null;
let generation = 0;

// ---- the admin key: from the fragment once, then session storage ----

function takeKeyFromFragment() {
  const m = /^#key=(.+)$/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY_STORE, decodeURIComponent(m[1]));
    // Out of the address bar and history, so it is not shared with a copied link.
    history.replaceState(null, '', location.pathname + location.search);
  }
}

function adminKey() {
  return sessionStorage.getItem(KEY_STORE);
}

class AuthError extends Error {}

// The center answered, with an error status (as opposed to not answering at all).
class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const res = await fetch(path, {
    headers: { Authorization: 'Bearer ' + adminKey(), Accept: 'application/json' },
    cache: 'no-store',
  });
  if (res.status === 401) throw new AuthError('the admin key was refused');
  let body = null;
  try {
    body = await res.json();
  } catch (_) {
    throw new Error('HTTP ' + res.status + ': not JSON');
  }
  if (!res.ok) throw new HttpError(res.status, (body && body.message) || 'HTTP ' + res.status);
  return body;
}

// ---- DOM helpers ----

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function setStatus(text, bad) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.className = 'conn' + (bad ? ' bad' : '');
}

// ---- formatting ----

function duration(ms) {
  if (ms < 1000) return Math.round(ms) + ' ms';
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h ' + (m % 60) + ' min';
  return Math.floor(h / 24) + ' d';
}

function num(v, digits) {
  if (v === null || v === undefined) return '—';
  return Number(v).toFixed(digits === undefined ? 1 : digits);
}

function pct(v) {
  if (!v) return '0 %';
  const p = v * 100;
  return (p < 0.1 ? p.toFixed(2) : p.toFixed(1)) + ' %';
}

function ms(v) {
  return v === null || v === undefined ? '—' : (v < 1 ? v : Math.round(v)) + ' ms';
}

function stateBadge(n) {
  return el('span', { class: 'state state-' + n.state, text: n.state + ' · ' + duration(n.state_for_ms) });
}

function problems(n) {
  const out = [];
  if (!n.ready) out.push('not ready');
  if (n.graph_error) out.push('graph: ' + n.graph_error);
  if (n.last_window.server_errors > 0) out.push(n.last_window.server_errors + ' × 5xx');
  return out;
}

// ---- the fleet page ----

function fleetParams() {
  const q = new URLSearchParams(location.search);
  return {
    region: q.get('region') || '',
    state: q.get('state') || '',
    q: q.get('q') || '',
    attention: q.get('attention') === '1',
    sort: q.get('sort') || 'node',
    page: Math.max(0, parseInt(q.get('page') || '0', 10) || 0),
  };
}

function setFleetParams(change) {
  const p = Object.assign(fleetParams(), change);
  if (!('page' in change)) p.page = 0;
  const q = new URLSearchParams();
  if (p.region) q.set('region', p.region);
  if (p.state) q.set('state', p.state);
  if (p.q) q.set('q', p.q);
  if (p.attention) q.set('attention', '1');
  if (p.sort && p.sort !== 'node') q.set('sort', p.sort);
  if (p.page) q.set('page', String(p.page));
  const search = q.toString();
  history.replaceState(null, '', '/' + (search ? '?' + search : ''));
  refresh();
}

function nodesQuery(p) {
  const q = new URLSearchParams({ offset: String(p.page * PAGE_SIZE), limit: String(PAGE_SIZE), sort: p.sort });
  if (p.region) q.set('region', p.region);
  if (p.state) q.set('state', p.state);
  if (p.q) q.set('q', p.q);
  if (p.attention) q.set('attention', 'true');
  return '/api/v1/nodes?' + q.toString();
}

const COLUMNS = [
  ['node', 'node'], ['region', 'region'], ['state', 'state'], ['age', 'last report'],
  [null, 'agent'], [null, 'graph'], [null, 'rollout'], [null, 'advertise URL'], ['rate', 'req/s'],
  ['errors', 'errors'], ['p99', 'p50 / p99'], ['outbox', 'outbox'], [null, 'acked seq'],
  [null, 'problems'],
];

function sortHeader(key, label, current) {
  if (!key) return el('th', { text: label });
  const active = current === key || current === '-' + key;
  const next = current === key ? '-' + key : key;
  const arrow = current === key ? ' ▲' : current === '-' + key ? ' ▼' : '';
  const b = el('button', { class: 'link', type: 'button', text: label + arrow });
  b.addEventListener('click', () => setFleetParams({ sort: next }));
  return el('th', { class: active ? 'sorted' : null }, b);
}

function filterButton(label, count, active, onClick, cls) {
  const b = el('button', { type: 'button', class: 'chip ' + (cls || '') + (active ? ' active' : '') },
    label, el('span', { class: 'count', text: String(count) }));
  b.addEventListener('click', onClick);
  return b;
}

// A running rollout (not Promoted or RolledBack) of the region, if any.
function activeRollout(rollouts, region) {
  const r = rollouts[region];
  return r && r.phase !== 'Promoted' && r.phase !== 'RolledBack' ? r : null;
}

// The node's part in its region's rollout: canary on the new version, or stable.
function rolloutRole(rollouts, n) {
  const r = activeRollout(rollouts, n.region);
  if (!r) return el('td', { class: 'rollout', text: '—' });
  const canary = (r.canaryNodes || []).includes(n.node);
  return el('td', { class: 'rollout ' + (canary ? 'warn' : 'dim'), 'data-role': canary ? 'canary' : 'stable',
    text: canary ? 'canary · ' + r.toVersion : 'stable · ' + (r.fromVersion || '—') });
}

function rolloutSummary(r) {
  if (!r) return '—';
  return r.phase + ' · step ' + (r.step + 1) + ' (' + r.stepPercent + '%) · ' + (r.fromVersion || '—') + ' → ' + r.toVersion;
}

function armText(name, a) {
  return name + ': ' + a.reportingNodes + '/' + a.nodes + ' nodes reporting, ' + a.requests + ' requests, ' +
    a.errors + ' errors (' + pct(a.requests ? a.errors / a.requests : 0) + '), p99 ' + ms(a.p99Ms);
}

function rolloutPanel(rollouts) {
  const regions = Object.keys(rollouts).filter((r) => rollouts[r]);
  if (!regions.length) return null;
  return el('section', { class: 'rollouts' },
    el('h2', { text: 'Rollouts' }),
    regions.map((region) => {
      const r = rollouts[region];
      const v = r.lastVerdict;
      return el('div', { class: 'rollout-panel', 'data-region': region },
        el('h3', { text: region + ': ' + rolloutSummary(r) }),
        el('p', { class: 'reason', text: r.reason }),
        el('p', { text: 'canary nodes: ' + ((r.canaryNodes || []).join(', ') || '—') }),
        v ? el('p', { class: 'verdict', text: 'last verdict ' + v.kind + ': ' + v.reason }) : null,
        v ? el('p', { class: 'figures', text: armText('canary', v.canary) }) : null,
        v ? el('p', { class: 'figures', text: armText('stable', v.stable) }) : null);
    }));
}

function renderFleet(page, p, rollouts) {
  rollouts = rollouts || {};
  const c = page.counts;
  const main = el('main', { id: 'main' });

  const states = el('div', { class: 'chips' },
    filterButton('all', c.all.online + c.all.stale + c.all.offline, !p.state && !p.attention,
      () => setFleetParams({ state: '', attention: false })),
    ['online', 'stale', 'offline'].map((s) =>
      filterButton(s, c.all[s], p.state === s, () => setFleetParams({ state: p.state === s ? '' : s }), 'chip-' + s)),
    filterButton('needs attention', c.all.attention, p.attention,
      () => setFleetParams({ attention: !p.attention }), 'chip-attention'));

  const regionSelect = el('select', { 'aria-label': 'region' },
    el('option', { value: '', text: 'every region' }),
    Object.keys(c.regions).map((r) => el('option', { value: r, text: r, selected: r === p.region })));
  regionSelect.addEventListener('change', () => setFleetParams({ region: regionSelect.value }));

  const search = el('input', { id: 'search', type: 'search', placeholder: 'node name contains…', value: p.q, 'aria-label': 'node name' });
  search.addEventListener('change', () => setFleetParams({ q: search.value.trim() }));

  main.append(el('section', { class: 'filters' }, states, regionSelect, search));

  // Regions at a glance, with each one's current or last rollout.
  const regionRows = Object.entries(c.regions).map(([name, rc]) => {
    const link = el('button', { class: 'link', type: 'button', text: name });
    link.addEventListener('click', () => setFleetParams({ region: p.region === name ? '' : name }));
    return el('tr', { class: p.region === name ? 'selected' : null, 'data-region': name },
      el('td', {}, link), el('td', { class: 'num', text: rc.online }),
      el('td', { class: 'num' + (rc.stale ? ' warn' : ''), text: rc.stale }),
      el('td', { class: 'num' + (rc.offline ? ' dim' : ''), text: rc.offline }),
      el('td', { class: 'num' + (rc.attention ? ' bad' : ''), text: rc.attention }),
      el('td', { class: 'rollout', text: rolloutSummary(rollouts[name]) }));
  });
  main.append(el('section', { class: 'regions' },
    el('h2', { text: 'Regions' }),
    el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, ['region', 'online', 'stale', 'offline', 'attention', 'rollout'].map((h) => el('th', { text: h })))),
      el('tbody', {}, regionRows.length ? regionRows : el('tr', {}, el('td', { colspan: 6, class: 'empty', text: 'no node has reported yet' }))))));
  const panel = rolloutPanel(rollouts);
  if (panel) main.append(panel);

  const rows = page.nodes.map((n) => {
    const w = n.last_window;
    const cls = ['node', 'row-' + n.state, n.attention ? 'row-attention' : ''].join(' ').trim();
    return el('tr', { class: cls, 'data-node': n.node, 'data-state': n.state },
      el('td', {}, el('a', { href: '/nodes/' + encodeURIComponent(n.node), text: n.node })),
      el('td', { text: n.region }),
      el('td', {}, stateBadge(n)),
      el('td', { class: 'num', text: duration(n.last_report_age_ms) + ' ago', title: n.last_report_at }),
      el('td', { text: n.agent_version }),
      el('td', { text: n.graph_version || '—', title: n.graph_sha256 || '' }),
      rolloutRole(rollouts, n),
      el('td', { class: 'url', text: n.advertise_url || '—' }),
      el('td', { class: 'num', text: num(w.request_rate) }),
      el('td', { class: 'num' + (w.error_rate > 0 ? ' bad' : ''), text: pct(w.error_rate) }),
      el('td', { class: 'num', text: ms(w.p50_ms) + ' / ' + ms(w.p99_ms) }),
      el('td', { class: 'num' + (n.outbox_depth > 0 ? ' warn' : ''), text: n.outbox_depth }),
      el('td', { class: 'num', text: n.acked_seq }),
      el('td', { class: 'problems', text: problems(n).join(', ') }));
  });

  const first = page.total ? page.offset + 1 : 0;
  const last = page.offset + page.nodes.length;
  const prev = el('button', { type: 'button', disabled: p.page === 0, text: '← previous' });
  prev.addEventListener('click', () => setFleetParams({ page: p.page - 1 }));
  const next = el('button', { type: 'button', disabled: last >= page.total, text: 'next →' });
  next.addEventListener('click', () => setFleetParams({ page: p.page + 1 }));

  main.append(el('section', { class: 'nodes' },
    el('h2', {}, 'Nodes ', el('span', { class: 'sub', id: 'range', text: first + '–' + last + ' of ' + page.total })),
    el('div', { class: 'scroll' },
      el('table', { class: 'grid', id: 'nodes' },
        el('thead', {}, el('tr', {}, COLUMNS.map(([k, label]) => sortHeader(k, label, p.sort)))),
        el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: COLUMNS.length, class: 'empty', text: 'no node matches' }))))),
    el('div', { class: 'pager' }, prev, next)));
  return main;
}

// ---- the node page ----

function chart(title, series, format, points) {
  const W = 320, H = 96, PAD = 4;
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const max = Math.max(...all, 0);
  const top = max || 1;
  const box = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  box.append(svg('line', { x1: 0, y1: H - PAD, x2: W, y2: H - PAD, class: 'axis' }));
  const times = points.map((p) => p.at_ms);
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const x = (i) => (t1 > t0 ? ((times[i] - t0) / (t1 - t0)) * (W - 2 * PAD) + PAD : W / 2);
  const y = (v) => H - PAD - (v / top) * (H - 2 * PAD);
  for (const s of series) {
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1) + ' ';
      pen = true;
    });
    if (d) box.append(svg('path', { d: d.trim(), class: 'line ' + s.cls }));
    // A single point draws no line: mark it.
    if (s.values.filter((v) => v !== null && v !== undefined).length === 1) {
      const i = s.values.findIndex((v) => v !== null && v !== undefined);
      box.append(svg('circle', { cx: x(i), cy: y(s.values[i]), r: 2.5, class: 'dot ' + s.cls }));
    }
  }
  const latest = series.map((s) => {
    const v = s.values[s.values.length - 1];
    return el('span', { class: 'legend ' + s.cls, text: s.label + ' ' + (v === null || v === undefined ? '—' : format(v)) });
  });
  return el('figure', { class: 'chartbox' },
    el('figcaption', {}, el('strong', { text: title }), ' ', el('span', { class: 'sub', text: 'max ' + format(max) }), ' ', latest),
    box);
}

function field(label, value, cls) {
  return [el('dt', { text: label }), el('dd', { class: cls || null }, value)];
}

function renderNode(detail, plans) {
  const n = detail.node;
  const w = n.last_window;
  const h = detail.history;
  const main = el('main', { id: 'main' });
  main.append(el('p', {}, el('a', { href: '/', text: '← fleet' })));
  main.append(el('h1', { class: 'nodename', 'data-state': n.state }, n.node, ' ', stateBadge(n)));
  const probs = problems(n);
  if (probs.length) main.append(el('p', { class: 'alert', text: probs.join(' · ') }));
  main.append(el('dl', { class: 'facts' },
    field('region', n.region),
    field('last report', duration(n.last_report_age_ms) + ' ago (' + n.last_report_at + ')'),
    field('agent', n.agent_version),
    field('graph', (n.graph_version || '—') + (n.graph_sha256 ? ' · ' + n.graph_sha256.slice(0, 12) : '')),
    field('advertise URL', n.advertise_url || '—'),
    field('ready', n.ready ? 'yes' : 'no', n.ready ? null : 'bad'),
    field('requests', num(w.request_rate) + ' /s over ' + duration(w.window_ms) + ' (' + w.requests + ')'),
    field('errors', pct(w.error_rate) + ' 5xx · ' + w.client_errors + ' × 4xx', w.error_rate > 0 ? 'bad' : null),
    field('latency', 'p50 ' + ms(w.p50_ms) + ' · p99 ' + ms(w.p99_ms)),
    field('outbox', n.outbox_depth + ' events waiting', n.outbox_depth > 0 ? 'warn' : null),
    field('acked seq', n.acked_seq + ' (stream ' + n.stream.slice(0, 8) + ')'),
    field('boot', n.boot_id.slice(0, 8))));

  const span = h.length ? duration(h[h.length - 1].at_ms - h[0].at_ms) : '0 s';
  const section = el('section', { class: 'history' },
    el('h2', {}, 'Recent history ', el('span', { class: 'sub', text: h.length + ' points of up to ' + duration(detail.history_point_ms) + ', over ' + span + ' (kept in the center\'s memory)' })));
  if (h.length === 0) {
    section.append(el('p', { class: 'empty', text: 'No report since the center started.' }));
  } else {
    section.append(el('div', { class: 'charts' },
      chart('request rate', [{ label: 'req/s', cls: 's-rate', values: h.map((p) => p.window.request_rate) }], (v) => num(v) + '/s', h),
      chart('error rate', [{ label: '5xx', cls: 's-err', values: h.map((p) => p.window.error_rate) }], pct, h),
      chart('latency', [
        { label: 'p50', cls: 's-p50', values: h.map((p) => p.window.p50_ms) },
        { label: 'p99', cls: 's-p99', values: h.map((p) => p.window.p99_ms) },
      ], ms, h),
      chart('outbox depth', [{ label: 'events', cls: 's-outbox', values: h.map((p) => p.outbox_depth) }], (v) => num(v, 0), h)));
  }
  main.append(section);

  const rows = plans.plans.map((p) => {
    const s = p.summary || {};
    return el('tr', { 'data-plan': p.plan_id },
      el('td', { class: 'num', text: p.seq }), el('td', { text: p.plan_id }), el('td', { text: p.created_at }),
      el('td', { text: p.graph_version || '—' }),
      el('td', { class: 'num', text: s.routes !== undefined ? s.routes : '—' }),
      el('td', { class: 'num', text: s.unassigned !== undefined ? s.unassigned : '—' }),
      el('td', { class: 'num', text: s.cost !== undefined ? s.cost : '—' }),
      el('td', { class: 'num', text: s.duration !== undefined ? duration(s.duration * 1000) : '—' }));
  });
  main.append(el('section', { class: 'plans' },
    el('h2', {}, 'Latest plans ', el('span', { class: 'sub', text: 'newest first, as collected by the center' })),
    el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, ['seq', 'plan id', 'created', 'graph', 'routes', 'unassigned', 'cost', 'duration'].map((t) => el('th', { text: t })))),
      el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: 8, class: 'empty', text: 'no plan collected from this node' }))))));
  return main;
}

// ---- the loop ----

function replaceMain(node) {
  const old = document.getElementById('main');
  // Redraws must not steal the search box from someone typing in it.
  const active = document.activeElement;
  const typing = active && active.id === 'search' && old.contains(active)
    ? { value: active.value, start: active.selectionStart, end: active.selectionEnd } : null;
  old.replaceWith(node);
  const search = typing && document.getElementById('search');
  if (search) {
    search.value = typing.value;
    search.focus();
    search.setSelectionRange(typing.start, typing.end);
  }
}

function showKeyForm(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(KEY_STORE);
  document.getElementById('forget').hidden = true;
  setStatus('');
  const form = document.getElementById('key-form').content.firstElementChild.cloneNode(true);
  const err = form.querySelector('.error');
  if (message) {
    err.textContent = message;
    err.hidden = false;
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const key = form.elements.key.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    refresh();
  });
  replaceMain(el('main', { id: 'main' }, form));
  form.elements.key.focus();
}

// Each region's current or last rollout (a region without one answers 404: no entry).
const MAX_ROLLOUT_REGIONS = 32;
async function regionRollouts(regions) {
  const out = {};
  await Promise.all(regions.slice(0, MAX_ROLLOUT_REGIONS).map(async (r) => {
    try {
      out[r] = await api('/api/v1/regions/' + encodeURIComponent(r) + '/rollout');
    } catch (e) {
      if (e instanceof AuthError) throw e;
      out[r] = null;
    }
  }));
  return out;
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  if (!adminKey()) {
    showKeyForm('');
    return;
  }
  document.getElementById('forget').hidden = false;
  const nodePath = /^\/nodes\/(.+)$/.exec(location.pathname);
  try {
    let view;
    if (nodePath) {
      const name = decodeURIComponent(nodePath[1]);
      document.title = name + ' · edgeroute fleet';
      const [detail, plans] = await Promise.all([
        api('/api/v1/nodes/' + encodeURIComponent(name)),
        api('/api/v1/plans?order=desc&limit=10&node=' + encodeURIComponent(name)),
      ]);
      view = renderNode(detail, plans);
    } else {
      const p = fleetParams();
      const page = await api(nodesQuery(p));
      // Past the last page (nodes went away): go to the last one.
      if (page.nodes.length === 0 && page.total > 0 && p.page > 0) {
        setFleetParams({ page: Math.floor((page.total - 1) / PAGE_SIZE) });
        return;
      }
      const c = page.counts.all;
      document.title = (c.stale + c.offline ? '⚠ ' : '') + 'edgeroute fleet';
      view = renderFleet(page, p, await regionRollouts(Object.keys(page.counts.regions)));
    }
    if (mine !== generation) return;
    replaceMain(view);
    setStatus('live · updated ' + new Date().toLocaleTimeString(), false);
  } catch (e) {
    if (e instanceof AuthError) {
      showKeyForm('The center refused that key.');
      return;
    }
    if (e instanceof HttpError && e.status === 404 && nodePath) {
      replaceMain(el('main', { id: 'main' }, el('p', {}, el('a', { href: '/', text: '← fleet' })),
        el('p', { class: 'notice', text: e.message })));
      setStatus('live · updated ' + new Date().toLocaleTimeString(), false);
    } else if (e instanceof HttpError) {
      setStatus('the center answered ' + e.status + ': ' + e.message + '; retrying', true);
    } else {
      setStatus('cannot reach the center (' + e.message + '); retrying', true);
    }
  }
  if (mine === generation) timer = setTimeout(refresh, POLL_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  takeKeyFromFragment();
  document.getElementById('forget').addEventListener('click', () => showKeyForm(''));
  refresh();
});
