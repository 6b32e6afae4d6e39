// Slipway console: no framework, no CDN (the sites it runs at have no internet).
// Data comes from the JSON API; live updates from /api/v1/events (SSE). The session
// cookie is set by POST /api/v1/session with the operator's token.
import { showDiscovered, historyButton } from './discovered.js';
import { loadActivity, watchActivity } from './activity.js';
const $ = (s) => document.querySelector(s);
const STATES = ['unknown', 'discovered', 'dhcp', 'booting', 'config-fetched', 'installing', 'installed', 'joined', 'ready', 'failed'];
let machines = new Map();
let selected = null;

async function api(path, init = {}) {
  const res = await fetch(path, { credentials: 'same-origin', ...init });
  if (res.status === 401) { showLogin(); throw new Error('unauthorized'); }
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

function showLogin() { $('#app').hidden = true; $('#login').hidden = false; }

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const res = await fetch('/api/v1/session', { method: 'POST', headers: { Authorization: `Bearer ${$('#token').value.trim()}` } });
  if (!res.ok) { $('#login-error').textContent = 'That token is not valid.'; $('#login-error').hidden = false; return; }
  $('#token').value = '';
  start();
});

const elapsed = (since) => {
  if (!since) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
};
const text = (tag, t, cls) => { const e = document.createElement(tag); e.textContent = t; if (cls) e.className = cls; return e; };
// What a machine reported it is (enlistment or its installed report; issue 18): one line each for the box, its disks, NICs and BMC
const GIB = 1024 ** 3;
const hardware = (f) => [
  `${[f.dmi.vendor, f.dmi.product].filter(Boolean).join(' ') || 'unknown product'}${f.dmi.serial ? ` #${f.dmi.serial}` : ''}, ${f.cpu.count} × ${f.cpu.model || 'CPU'}, ${(f.memoryBytes / GIB).toFixed(1)} GiB`,
  `disks: ${f.disks.map((d) => `${d.path} ${(d.size / GIB).toFixed(1)} GiB${d.rotational ? '' : ' SSD'}${d.serial ? ` ${d.serial}` : ''}${d.ids[0] ? ` (${d.ids[0]})` : ''}`).join('; ') || 'none'}`,
  `NICs: ${f.nics.map((n) => `${n.name} ${n.mac} ${n.driver}${n.link ? ' link' : ''}${n.speedMbps ? ` ${n.speedMbps} Mb/s` : ''}`).join('; ')}`,
  ...(f.bmc?.address ? [`BMC: ${f.bmc.address}${f.bmc.mac ? ` (${f.bmc.mac})` : ''}`] : []),
];
const describe = (ev) => ev ? `${ev.to} (${ev.source})${ev.reason ? `: ${ev.reason}` : ''}` : '';

function render() {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const m of machines.values()) counts[m.state]++;
  const tiles = [['machines', machines.size], ...STATES.filter((s) => counts[s]).map((s) => [s, counts[s]])];
  $('#summary').replaceChildren(...tiles.map(([label, n]) => { const d = text('div', '', 'tile'); d.append(text('b', String(n)), text('span', label)); d.dataset.state = label; return d; }));
  const cps = [...machines.values()].filter((m) => m.roles.includes('control-plane'));
  const cpReady = cps.filter((m) => m.state === 'ready').length;
  $('#health').textContent = `Control plane: ${cpReady}/${cps.length} ready${cps.some((m) => m.state === 'failed') ? ' — a control-plane machine failed' : ''}`;
  const rows = [...machines.values()].map((m) => {
    const tr = document.createElement('tr');
    tr.dataset.name = m.name;
    if (m.name === selected) tr.className = 'selected';
    tr.append(text('td', m.name), text('td', m.mac), text('td', m.ip), text('td', m.roles.join(', ')));
    const st = text('td', ''); st.append(text('span', m.state, `state ${m.state}`)); tr.append(st);
    tr.append(text('td', elapsed(m.since)), text('td', describe(m.lastEvent)));
    tr.addEventListener('click', () => select(m.name));
    return tr;
  });
  $('#machines tbody').replaceChildren(...rows);
}

async function select(name) {
  selected = name;
  const d = await api(`/api/v1/machines/${encodeURIComponent(name)}`);
  $('#detail').hidden = false;
  $('#detail-title').textContent = `${d.name} — ${d.state}`;
  const hist = text('div', '', 'facts-history');
  $('#facts').replaceChildren(...(d.facts ? [text('h3', `Hardware (${d.facts.source} ${new Date(d.facts.at).toLocaleString()})`), ...hardware(d.facts.facts).map((l) => text('div', l)), historyButton(d.mac, hist, hardware), hist] : []));
  $('#timeline').replaceChildren(...d.events.map((ev) => {
    const li = text('li', `${new Date(ev.at).toLocaleTimeString()} ${ev.from} → ${ev.to} (${ev.source})`);
    if (ev.reason) li.append(text('div', ev.reason, 'reason'));
    if (ev.detail?.unit) li.append(text('div', `unit: ${ev.detail.unit}`));
    if (ev.detail?.logs) li.append(text('pre', ev.detail.logs));
    return li;
  }));
  $('#artifacts').replaceChildren(...d.artifacts.map((a) => {
    const li = text('li', `${a.mode} ${a.path}${a.link ? ` → ${a.link}` : ''}`, a.secret ? 'secret' : '');
    li.addEventListener('click', () => { $('#artifact').textContent = a.link ? `symlink to ${a.link}` : a.contents; });
    return li;
  }));
  render();
}

$('#reprovision').addEventListener('click', async () => {
  if (!selected || !confirm(`Reprovision ${selected}? Its next network boot installs it again.`)) return;
  const name = selected;
  // the answer says which bootstrap token its window got, or why serve refused (issue 17)
  const res = await fetch(`/api/v1/machines/${encodeURIComponent(name)}/reprovision`, { method: 'POST', credentials: 'same-origin' });
  if (res.status === 401) return showLogin();
  const body = await res.json().catch(() => ({}));
  $('#reprovision-result').textContent = res.ok
    ? `${name}: reprovisioned${body.window ? `; bootstrap token ${body.window.id} for its next install (expires ${body.window.expires})` : ''}`
    : `${name}: ${body.error ?? `HTTP ${res.status}`}`;
  $('#reprovision-result').dataset.ok = String(res.ok);
});

// Power through the machine's BMC (machines[].bmc; docs/power.md): the API answers with
// the result, or the error's kind and message (a machine without a bmc: 409).
for (const b of document.querySelectorAll('[data-power]')) {
  b.addEventListener('click', async () => {
    const action = b.dataset.power;
    if (!selected || (action !== 'status' && !confirm(`Power ${action} ${selected}?`))) return;
    const name = selected;
    $('#power-result').textContent = `${name}: ${action}...`;
    const res = await fetch(`/api/v1/machines/${encodeURIComponent(name)}/power`, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ action }) });
    if (res.status === 401) return showLogin();
    const body = await res.json().catch(() => ({}));
    $('#power-result').textContent = res.ok ? `${name}: ${body.result}` : `${name}: ${body.kind ? `${body.kind}: ` : ''}${body.error ?? `HTTP ${res.status}`}`;
    $('#power-result').dataset.ok = String(res.ok);
  });
}

async function load() {
  const data = await api('/api/v1/machines');
  machines = new Map(data.machines.map((m) => [m.name, m]));
  showDiscovered(data, { hardware, reload: load }); // issue 18: with their facts history and Adopt (discovered.js)
  render();
}

function live() {
  const es = new EventSource('/api/v1/events');
  es.onopen = () => { $('#conn').textContent = 'live'; $('#conn').className = 'conn on'; };
  es.onerror = () => { $('#conn').textContent = 'reconnecting'; $('#conn').className = 'conn off'; };
  watchActivity(es); // apply's progress (activity.js)
  es.addEventListener('transition', (e) => {
    const ev = JSON.parse(e.data);
    const m = machines.get(ev.machine);
    if (!m) return;
    m.state = ev.to; m.since = ev.at; m.lastEvent = ev; m.reason = ev.reason;
    render();
    if (ev.machine === selected) select(selected);
  });
}

async function start() {
  try { await load(); } catch { return; }
  const info = await api('/api/v1/cluster');
  $('#cluster').textContent = `${info.name} · Kubernetes ${info.kubernetesVersion}`;
  $('#login').hidden = true; $('#app').hidden = false;
  await loadActivity(api).catch(() => {}); // a serve without the endpoint: no panel
  live();
  setInterval(render, 1000); // elapsed times tick
}

start();
