// Day-2 progress (issue 17): what `slipway apply` tells the serve running with the same
// state (its plan, each machine started, its health wait, done or failed, why it stopped),
// loaded from /api/v1/activity and then live from the event stream's `activity` events.
const $ = (s) => document.querySelector(s);
const text = (tag, t, cls) => { const e = document.createElement(tag); e.textContent = t; if (cls) e.className = cls; return e; };
/** run id → { command, lines, ended, ok } in the order heard of */
const runs = new Map();
const SHOWN = 3;

function add(ev) {
  let r = runs.get(ev.run);
  if (!r) runs.set(ev.run, (r = { command: ev.command, lines: [], ended: false, ok: undefined, last: ev.at }));
  r.last = ev.at;
  if (ev.kind === 'heartbeat') return;
  if (ev.kind === 'end') { r.ended = true; r.ok = ev.ok; }
  r.lines.push(ev);
  if (r.lines.length > 500) r.lines.splice(0, r.lines.length - 500);
}

function render() {
  const box = $('#activity');
  if (!runs.size) { box.hidden = true; return; }
  box.hidden = false;
  const shown = [...runs.entries()].slice(-SHOWN).reverse();
  $('#activity-runs').replaceChildren(...shown.map(([id, r]) => {
    const state = r.ended ? (r.ok ? 'done' : 'stopped') : 'running';
    const div = text('div', '', `run ${state}`);
    div.dataset.run = id;
    div.dataset.state = state;
    div.append(text('h3', `${r.command} ${id} — ${state}`));
    const ol = text('ol', '');
    ol.append(...r.lines.map((ev) => {
      const li = text('li', `${new Date(ev.at).toLocaleTimeString()} ${ev.text}`, `kind-${ev.kind}`);
      li.dataset.kind = ev.kind;
      if (ev.machine) li.dataset.machine = ev.machine;
      return li;
    }));
    div.append(ol);
    return div;
  }));
}

/** The latest runs, then live events (`activity` on the console's EventSource). */
export async function loadActivity(api) {
  const v = await api('/api/v1/activity');
  for (const ev of v.events) add(ev);
  for (const r of v.runs) { const x = runs.get(r.run); if (x && r.ended) { x.ended = true; x.ok = r.ok; } }
  render();
}

export function watchActivity(es) {
  es.addEventListener('activity', (e) => { add(JSON.parse(e.data)); render(); });
}
