// The node dashboard. Job data is written by strangers (prompts, skip reasons that quote a bad
// spec), so it is only ever put on the page as text (textContent, createElement), never parsed
// as HTML; the Content-Security-Policy blocks any script that slips in anyway.
'use strict';

// An element with text children (strings become text nodes, never markup).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ''));
  return e;
}

function fmt(v) { return v === null || v === undefined ? '?' : String(v); }

function renderStatus(s) {
  const models = (s.models_loaded || []).map(m => String(m.path).split('/').pop()).join(', ') || 'none';
  const rpc = el('span', { class: s.rpc_ok ? 'ok' : 'bad' }, s.rpc_ok ? 'up' : 'down');
  document.getElementById('status').replaceChildren(
    el('p', {}, 'address ', el('code', {}, fmt(s.address)), ` on chain ${fmt(s.chain_id)} — RPC `, rpc),
    el('p', {}, `balance ${fmt(s.balance_tokens)} HRT · stake ${fmt(s.stake_tokens)} HRT · `
      + `open jobs ${fmt(s.open_jobs)} · earned ${fmt(s.earnings_tokens)} HRT this run`),
    el('p', {}, `models loaded: ${models}`),
  );
}

function renderJobs(jobs) {
  document.getElementById('jobs').replaceChildren(...jobs.map(j => el('tr', {},
    el('td', {}, el('a', { href: '/jobs/' + encodeURIComponent(String(j.job_id)) }, fmt(j.job_id))),
    el('td', {}, fmt(j.step)), el('td', {}, fmt(j.payment_tokens)), el('td', {}, j.reason || ''))));
}

async function getJSON(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function refresh() {
  // each part on its own: a chain error in /status must not hide the job list
  try { renderStatus(await getJSON('/status')); } catch (e) {
    document.getElementById('status').replaceChildren(el('p', { class: 'bad' }, `status unavailable: ${e}`));
  }
  try { renderJobs(await getJSON('/jobs?limit=50')); } catch (e) { /* keep the last list */ }
  document.body.dataset.rendered = 'yes';  // for tests: one refresh has finished
}

refresh();
setInterval(refresh, 2000);
