import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { all, api, seg } from '../api.js';
import { can, state, useStore } from '../store.js';
import { href } from '../router.js';
import { dateTime, weight } from '../format.js';
import { currentLocation, loadBeer } from '../data.js';
import { Empty, ErrorNote, Field } from '../components.js';
import { AssignKeg, WeightBadge } from '../kegform.js';

function BeerDetail({ id }) {
  const [beer, setBeer] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { loadBeer(id).then(setBeer).catch((e) => setError(e.message)); }, [id]);
  if (error) return html`<${ErrorNote} error=${error} />`;
  if (!beer) return html`<p class="muted">Loading…</p>`;
  return html`<div class="beer-detail">
    <p>${beer.brewery || 'Unknown brewery'} · ${beer.style || 'Beer'} · ${beer.abv.toFixed(1)} % ABV ·
      gravity ${beer.specific_gravity.toFixed(3)} ${beer.location_id ? '· custom to this bar' : '· library'}</p>
    ${beer.keg_weights?.length ? html`<div class="table-wrap"><table class="table">
      <thead><tr><th>Keg type</th><th>Full</th><th>Empty</th><th>Weights</th></tr></thead>
      <tbody>${beer.keg_weights.map((w) => html`<tr key=${w.keg_type}>
        <td>${w.keg_type.replace(/_/g, ' ')}</td><td>${weight(w.full_kg, state.units)}</td>
        <td>${weight(w.empty_kg, state.units)}</td>
        <td><${WeightBadge} source=${w.source} />${w.measured_count > 1 ? ` (${w.measured_count} tares)` : ''}</td></tr>`)}</tbody>
    </table></div>` : html`<p class="muted">No keg weights recorded.</p>`}
  </div>`;
}

function NewBeer({ onCreated }) {
  const [form, setForm] = useState({ name: '', brewery: '', style: '', abv: '', specific_gravity: '' });
  const [error, setError] = useState(null);
  const [fields, setFields] = useState({});
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setFields({});
    try {
      const body = {
        location_id: state.locationId,
        name: form.name.trim(),
        brewery: form.brewery.trim(),
        style: form.style.trim(),
        abv: Number(form.abv),
      };
      if (form.specific_gravity) body.specific_gravity = Number(form.specific_gravity);
      const beer = await api('/beers', { method: 'POST', body });
      setForm({ name: '', brewery: '', style: '', abv: '', specific_gravity: '' });
      onCreated(beer);
    } catch (e) {
      setError(e.message);
      setFields(e.fields);
    } finally {
      setBusy(false);
    }
  }
  return html`<form class="card" onSubmit=${submit} aria-label="New custom beer">
    <h2>New custom beer</h2>
    <div class="row">
      <${Field} label="Name" error=${fields.name}><input required value=${form.name} onInput=${set('name')} /></${Field}>
      <${Field} label="Brewery" error=${fields.brewery}><input value=${form.brewery} onInput=${set('brewery')} /></${Field}>
    </div>
    <div class="row">
      <${Field} label="Style" error=${fields.style}><input value=${form.style} onInput=${set('style')} /></${Field}>
      <${Field} label="ABV %" error=${fields.abv}><input type="number" min="0" max="100" step="0.1" required value=${form.abv} onInput=${set('abv')} /></${Field}>
      <${Field} label="Gravity" hint="Default 1.000" error=${fields.specific_gravity}><input type="number" min="0.9" max="1.2" step="0.001" value=${form.specific_gravity} onInput=${set('specific_gravity')} /></${Field}>
    </div>
    <${ErrorNote} error=${error} />
    <button type="submit" class="primary" disabled=${busy}>Add beer</button>
  </form>`;
}

function Kegs() {
  const s = useStore();
  const [kegs, setKegs] = useState([]);
  const [filter, setFilter] = useState('');
  const [error, setError] = useState(null);
  const tz = currentLocation()?.time_zone;
  useEffect(() => {
    if (!s.locationId) return;
    all(`/locations/${seg(s.locationId)}/kegs`, { state: filter || undefined }, 200)
      .then(setKegs).catch((e) => setError(e.message));
  }, [s.locationId, filter, s.tapOrder.map((id) => s.taps[id]?.keg_id).join()]);
  return html`<section class="card" aria-label="Kegs">
    <div class="card-head"><h2>Kegs</h2>
      <select aria-label="Keg state" value=${filter} onChange=${(e) => setFilter(e.currentTarget.value)}>
        <option value="">All</option><option value="created">New</option><option value="tapped">Tapped</option>
        <option value="kicked">Kicked</option><option value="removed">Removed</option>
      </select></div>
    <${ErrorNote} error=${error} />
    ${kegs.length ? html`<div class="table-wrap"><table class="table stack">
      <thead><tr><th>Keg</th><th>Beer</th><th>Type</th><th>State</th><th>Tap</th><th>Since</th></tr></thead>
      <tbody>${kegs.map((k) => html`<tr key=${k.id}><td data-label="Keg">${k.id}</td>
        <td data-label="Beer">${s.beers[k.beer_id]?.name || k.beer_id}</td>
        <td data-label="Type">${k.keg_type.replace(/_/g, ' ')}</td><td data-label="State">${k.state}</td>
        <td data-label="Tap">${k.tap_id && s.taps[k.tap_id] ? html`<a href=${href('tap', k.tap_id)}>${s.taps[k.tap_id].name}</a>` : '—'}</td>
        <td data-label="Since">${dateTime(k.kicked_at || k.tapped_at || k.created_at, tz)}</td></tr>`)}</tbody>
    </table></div>` : html`<${Empty}>No kegs.</${Empty}>`}
  </section>`;
}

function AssignToTap() {
  const s = useStore();
  const [tapId, setTapId] = useState('');
  const [done, setDone] = useState(null);
  const tap = s.taps[tapId];
  return html`<section class="card" aria-label="Assign a keg to a tap">
    <h2>Put a keg on a tap</h2>
    <${Field} label="Tap">
      <select value=${tapId} onChange=${(e) => { setTapId(e.currentTarget.value); setDone(null); }}>
        <option value="">Choose a tap…</option>
        ${s.tapOrder.map((id) => html`<option key=${id} value=${id}>${s.taps[id].name}${s.taps[id].beer_id && s.beers[s.taps[id].beer_id] ? ` — ${s.beers[s.taps[id].beer_id].name}` : ''}</option>`)}
      </select>
    </${Field}>
    ${done ? html`<p class="note">Keg ${done} is on ${s.taps[tapId]?.name}.</p>` : null}
    ${tap ? html`<${AssignKeg} key=${tapId} tap=${tap} onDone=${(keg) => { if (keg) setDone(keg.id); }} />` : null}
  </section>`;
}

export function Beers() {
  const [q, setQ] = useState('');
  const [results, setResults] = useState([]);
  const [open, setOpen] = useState(null);
  const [error, setError] = useState(null);
  const s = useStore();
  useEffect(() => {
    let cancelled = false;
    const t = setTimeout(() => {
      api('/beers', { query: { q, location_id: s.locationId, limit: 100 } })
        .then((page) => { if (!cancelled) setResults(page.items); })
        .catch((e) => { if (!cancelled) setError(e.message); });
    }, 200);
    return () => { cancelled = true; clearTimeout(t); };
  }, [q, s.locationId]);
  return html`<section aria-label="Beers and kegs">
    <h1>Beers & kegs</h1>
    <section class="card">
      <input type="search" class="search" placeholder="Search by name, brewery or style" aria-label="Search beers"
        value=${q} onInput=${(e) => setQ(e.currentTarget.value)} />
      <${ErrorNote} error=${error} />
      <ul class="beer-list">${results.map((b) => html`<li key=${b.id}>
        <button type="button" class="link" aria-expanded=${open === b.id} onClick=${() => setOpen(open === b.id ? null : b.id)}>
          <strong>${b.name}</strong> <span class="muted">${b.style} · ${b.abv.toFixed(1)} %${b.location_id ? ' · custom' : ''}</span>
        </button>
        ${open === b.id ? html`<${BeerDetail} id=${b.id} />` : null}
      </li>`)}</ul>
      ${results.length === 0 ? html`<${Empty}>No beer matches.</${Empty}>` : null}
    </section>
    ${can('assign_beer_keg') ? html`<${AssignToTap} />` : null}
    ${can('manage_beers') ? html`<${NewBeer} onCreated=${(beer) => { setQ(beer.name); setOpen(beer.id); }} />` : null}
    <${Kegs} />
  </section>`;
}
