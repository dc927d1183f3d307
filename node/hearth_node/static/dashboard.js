// The node dashboard. Job data is written by strangers (prompts, skip reasons that quote a bad
// spec), so it is only ever put on the page as text (textContent, createElement), never parsed
// as HTML; the Content-Security-Policy blocks any script that slips in anyway. The chart is SVG
// built node by node for the same reason, and carries geometry only: inline style attributes are
// refused by the CSP, so its colours come from dashboard.css through classes.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
// The pipeline's steps in order, then the ends a job can reach; other steps sort after these.
const STEP_ORDER = ['seen', 'claim_signed', 'claimed', 'ran', 'uploaded', 'complete_signed', 'completed',
  'skipped', 'lost', 'expired', 'failed'];

// Children become text nodes unless already nodes: strings are never parsed as markup.
function fill(e, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ''));
  return e;
}

function el(tag, attrs, ...children) { return fill(document.createElement(tag), attrs, children); }
function svg(tag, attrs, ...children) { return fill(document.createElementNS(SVG_NS, tag), attrs, children); }

function fmt(v) { return v === null || v === undefined ? '?' : String(v); }

// At most `digits` decimals, no trailing zeros, no locale (the page reads the same everywhere).
function num(v, digits = 4) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '?';
  const f = 10 ** digits;
  return String(Math.round(Number(v) * f) / f);
}

function bytes(n) {
  if (!Number.isFinite(Number(n))) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n), i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${num(v, 1)} ${units[i]}`;
}

function ago(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${num(s / 3600, 1)} h ago`;
}

// The smallest of 1, 2, 5 × 10^k at or above v: an axis top a person can read at a glance.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p * (1 + 1e-9)) return m * p;
  return 10 * p;
}

// One series over time as an SVG line chart: a frame, three gridlines, the line, its last point.
function lineChart(key, cls, title, unit, samples, nowT) {
  const W = 420, H = 180, L = 46, R = 14, T = 30, B = 24, w = W - L - R, h = H - T - B;
  const pts = samples.map(s => [Number(s.t), Number(s[key])]).filter(([t, v]) => Number.isFinite(t) && Number.isFinite(v));
  const last = pts.length ? pts[pts.length - 1][1] : null;
  const chart = svg('svg', {
    class: `chart series-${cls}`,
    'data-series': key, viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
    'aria-label': `${title} over time`,
  }, svg('title', {}, `${title} over time`));
  chart.append(
    svg('text', { class: 'heading', x: L, y: 18 }, title),
    svg('text', { class: 'caption', x: W - R, y: 18, 'text-anchor': 'end' }, last === null ? '' : `now ${num(last, 2)} ${unit}`),
    svg('rect', { class: 'frame', x: L, y: T, width: w, height: h }),
  );
  if (pts.length === 0) {
    chart.append(svg('text', { class: 'empty', x: L + w / 2, y: T + h / 2, 'text-anchor': 'middle' }, 'no samples yet'));
    return chart;
  }
  const top = niceMax(Math.max(...pts.map(p => p[1])));
  for (const f of [0, 0.5, 1]) {
    const y = T + h - f * h;
    chart.append(svg('line', { class: 'grid', x1: L, x2: L + w, y1: y, y2: y }),
      svg('text', { class: 'axis', x: L - 6, y: y + 4, 'text-anchor': 'end' }, num(top * f, 2)));
  }
  const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
  const xy = ([t, v]) => [L + ((t - t0) / (t1 - t0)) * w, T + h - (Math.max(0, v) / top) * h];
  const coords = pts.map(p => xy(p).map(c => c.toFixed(1)).join(','));
  const [lx, ly] = xy(pts[pts.length - 1]);
  chart.append(
    svg('polyline', { class: 'line', points: coords.join(' ') }),
    svg('circle', { class: 'dot', cx: lx.toFixed(1), cy: ly.toFixed(1), r: 3 }),
    svg('text', { class: 'axis', x: L, y: H - 6 }, ago(nowT - t0)),
    svg('text', { class: 'axis', x: L + w, y: H - 6, 'text-anchor': 'end' }, ago(nowT - pts[pts.length - 1][0])),
  );
  return chart;
}

function renderHistory(hist) {
  const samples = Array.isArray(hist.samples) ? hist.samples : [];
  const nowT = samples.length ? Math.max(Date.now() / 1000, Number(samples[samples.length - 1].t)) : Date.now() / 1000;
  document.getElementById('charts').replaceChildren(
    lineChart('tokens_per_second', 'tps', 'Tokens per second', 'tok/s', samples, nowT),
    lineChart('queue_depth', 'queue', 'Queue depth', 'jobs', samples, nowT),
    lineChart('earnings_tokens', 'earnings', 'Earnings this run', 'HRT', samples, nowT),
  );
}

function card(name, label, value) {
  return el('div', { class: 'card', 'data-figure': name }, el('div', { class: 'value' }, value), el('div', { class: 'label' }, label));
}

function stepRank(step) { const i = STEP_ORDER.indexOf(step); return i < 0 ? STEP_ORDER.length : i; }

function renderStates(counts) {
  const rows = Object.entries(counts || {}).sort((a, b) => stepRank(a[0]) - stepRank(b[0]) || a[0].localeCompare(b[0]));
  const most = Math.max(1, ...rows.map(([, n]) => Number(n) || 0));
  document.getElementById('states').replaceChildren(...(rows.length ? rows.map(([step, n]) => el('tr', { 'data-step': step },
    el('td', {}, step), el('td', { class: 'num' }, fmt(n)),
    el('td', {}, svg('svg', { class: 'bar', width: 120, height: 10, viewBox: '0 0 120 10', 'aria-hidden': 'true' },
      svg('rect', { class: 'track', x: 0, y: 0, width: 120, height: 10 }),
      svg('rect', { class: 'fill', x: 0, y: 0, width: ((Number(n) || 0) / most * 120).toFixed(1), height: 10 })))))
    : [el('tr', {}, el('td', { colspan: 3, class: 'muted' }, 'no jobs seen yet'))]));
}

function renderModels(models) {
  document.getElementById('models').replaceChildren(...(models.length ? models.map(m => el('tr', {},
    el('td', {}, String(m.path).split('/').pop()), el('td', { class: 'num' }, bytes(m.bytes)),
    el('td', { class: 'num' }, fmt(m.queued)), el('td', { class: 'num' }, fmt(m.leases))))
    : [el('tr', {}, el('td', { colspan: 4, class: 'muted' }, 'none: a model is loaded with its first job'))]));
}

function renderStatus(s) {
  const rpc = el('span', { class: s.rpc_ok ? 'ok' : 'bad' }, s.rpc_ok ? 'up' : 'down');
  const chain = s.chain_error ? el('span', { class: 'bad' }, ` (chain unreadable: ${s.chain_error})`) : '';
  document.getElementById('status').replaceChildren(
    el('p', {}, 'address ', el('code', {}, fmt(s.address)), ` on chain ${fmt(s.chain_id)} — RPC `, rpc, chain),
  );
  document.getElementById('figures').replaceChildren(
    card('earnings', 'earned this run (HRT)', num(s.earnings_tokens)),
    card('balance', 'balance (HRT)', num(s.balance_tokens)),
    card('stake', 'stake (HRT)', num(s.stake_tokens)),
    card('open-jobs', 'open jobs on chain', fmt(s.open_jobs)),
    card('tokens-per-second', 'tokens/s (last job)', num(s.tokens_per_second, 1)),
    card('queue-depth', 'queued for inference', fmt(s.queue_depth)),
    card('tokens-generated', 'tokens generated', fmt(s.tokens_generated)),
    card('jobs-run', 'jobs run', fmt(s.jobs_run)),
  );
  renderStates(s.jobs);
  renderModels(Array.isArray(s.models_loaded) ? s.models_loaded : []);
}

function renderJobs(jobs) {
  document.getElementById('jobs').replaceChildren(...jobs.map(j => el('tr', {},
    el('td', {}, el('a', { href: '/jobs/' + encodeURIComponent(String(j.job_id)) }, fmt(j.job_id))),
    el('td', {}, fmt(j.step)), el('td', { class: 'num' }, num(j.payment_tokens)), el('td', {}, j.reason || ''))));
}

async function getJSON(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function refresh() {
  // each part on its own: a chain error in /status must not hide the job list or the chart
  try { renderStatus(await getJSON('/status')); } catch (e) {
    document.getElementById('status').replaceChildren(el('p', { class: 'bad' }, `status unavailable: ${e}`));
  }
  try { renderHistory(await getJSON('/history')); } catch (e) { /* keep the last chart */ }
  try { renderJobs(await getJSON('/jobs?limit=50')); } catch (e) { /* keep the last list */ }
  document.body.dataset.rendered = 'yes';  // for tests: one refresh has finished
}

refresh();
setInterval(refresh, 2000);
