// Slipway console, issue 18: the machines serve saw network-boot that the cluster file does
// not name, with the facts the enlisted ones reported (and their history), and the form
// that adopts one: POST /api/v1/adopt runs `slipway adopt`'s own code on the file (comments
// kept, validate's checks first, nothing written on a refusal, whose field is marked).
const $ = (s, root = document) => root.querySelector(s);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
};

/** A MAC's facts reports, newest first, shown in `into` (a list of time, source and the hardware's first line). */
async function showHistory(mac, into, hardware) {
  into.textContent = 'loading…';
  const res = await fetch(`/api/v1/facts/${mac.replaceAll(':', '-')}`, { credentials: 'same-origin' });
  if (!res.ok) { into.textContent = `history: HTTP ${res.status}`; return; }
  const { history } = await res.json();
  into.replaceChildren(el('div', { text: `${history.length} report${history.length === 1 ? '' : 's'} (newest first, the last 20 kept):` }),
    el('ol', {}, ...history.map((f) => el('li', { text: `${new Date(f.at).toLocaleString()} ${f.source}${f.machine ? ` (${f.machine})` : ''}: ${hardware(f.facts).join(' · ')}` }))));
}

/** A "History" button for a MAC's facts, filling `into` when pressed. */
export function historyButton(mac, into, hardware) {
  const b = el('button', { type: 'button', class: 'history', text: 'Facts history' });
  b.addEventListener('click', () => showHistory(mac, into, hardware));
  return b;
}

/** The adopt form for one discovered MAC; `done` after an adoption (the console reloads its lists). */
function adoptForm(mac, done) {
  const field = (name, label, attrs = {}) => el('label', {}, `${label} `, el('input', { name, autocomplete: 'off', ...attrs }));
  const error = el('div', { class: 'error adopt-error', role: 'alert' });
  const form = el('form', { class: 'adopt-form', dataset: { mac } },
    field('name', 'Name', { required: '', placeholder: 'w3' }),
    field('roles', 'Roles', { value: 'worker', placeholder: 'control-plane,etcd,worker' }),
    field('ip', 'IP (optional)', { placeholder: 'next free' }),
    field('bmcUsername', 'BMC user (optional)'),
    field('bmcPasswordFile', 'BMC password file (optional)', { placeholder: 'bmc/NAME.pw' }),
    el('button', { type: 'submit', text: 'Adopt into the cluster file' }),
    error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const i of form.querySelectorAll('input')) i.removeAttribute('aria-invalid');
    error.textContent = '';
    const body = { mac };
    for (const i of form.querySelectorAll('input')) if (i.value.trim()) body[i.name] = i.value.trim();
    const res = await fetch('/api/v1/adopt', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const r = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
    if (!res.ok) {
      // the field at fault is marked; the message is adopt's own (validate's FILE:LINE:COL lines included)
      const bad = { bmc: 'bmcUsername' }[r.field] ?? r.field;
      form.querySelector(`input[name="${bad}"]`)?.setAttribute('aria-invalid', 'true');
      error.dataset.field = r.field ?? '';
      error.textContent = `${r.field && r.field !== 'file' ? `${r.field}: ` : ''}${r.error}`;
      return;
    }
    $('#adopt-result').textContent = `Adopted ${r.mac} as ${r.name} (${r.roles.join(', ')}, ${r.ip}${r.disk ? `, disk ${r.disk}` : ''}${r.bmc ? `, bmc ${r.bmc}` : ''})${r.reloaded ? '; serve re-read the file' : ''}${r.notes?.length ? ` — ${r.notes.join('; ')}` : ''}`;
    done();
  });
  return form;
}

/**
 * The discovered list: each unknown MAC (not one the file names now) with how it was seen
 * or what it reported, its facts history, and Adopt.
 */
export function showDiscovered(data, { hardware, reload }) {
  const known = new Set(data.machines.map((m) => m.mac));
  const list = data.discovered.filter((d) => !known.has(d.mac));
  $('#discovered').replaceChildren(...(list.length ? [el('div', { text: 'Unknown machines seen (adopt one into the cluster file):' }),
    ...list.map((d) => {
      const row = el('div', { class: 'discovered', dataset: { mac: d.mac } });
      const info = el('span', { class: 'discovered-facts', text: d.facts ? `${d.mac} (enlisted ${new Date(d.facts.at).toLocaleString()}): ${hardware(d.facts.facts).join(' · ')}` : `${d.mac} (${d.via})` });
      const formBox = el('div', { class: 'discovered-adopt' });
      const hist = el('div', { class: 'facts-history' });
      const adopt = el('button', { type: 'button', class: 'adopt', text: 'Adopt' });
      adopt.addEventListener('click', () => { if (!$('form', formBox)) formBox.replaceChildren(adoptForm(d.mac, reload)); });
      row.append(info, ' ', adopt, ...(d.facts ? [' ', historyButton(d.mac, hist, hardware)] : []), formBox, hist);
      return row;
    })] : []));
}
