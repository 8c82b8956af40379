// Putting a new keg on a tap (managers): beer, keg type and weights. Weights start from the
// beer's own for that keg type (badge: default / set / calculated, seed 002) and can be
// changed; the server checks them again.
import { useEffect, useState } from 'preact/hooks';
import { html } from './html.js';
import { api, seg } from './api.js';
import { state } from './store.js';
import { KEG_TYPES, fromLbs, toLbs, weightUnit } from './format.js';
import { loadBeer, reloadTap } from './data.js';
import { Badge, ErrorNote, Field } from './components.js';

const SOURCE_TONES = { default: 'neutral', set: 'ok', calculated: 'info' };

export function WeightBadge({ source }) {
  return html`<${Badge} tone=${SOURCE_TONES[source] || 'neutral'} testid="weight-badge"
    title="Where these weights come from">${source}</${Badge}>`;
}

function toDisplay(kg, units) {
  return units === 'metric' ? kg : toLbs(kg);
}

function toKg(value, units) {
  return units === 'metric' ? value : fromLbs(value);
}

export function BeerPicker({ value, onChange, locationId }) {
  const [q, setQ] = useState('');
  const [results, setResults] = useState([]);
  useEffect(() => {
    let cancelled = false;
    const t = setTimeout(() => {
      api('/beers', { query: { q, location_id: locationId, limit: 50 } })
        .then((page) => { if (!cancelled) setResults(page.items); })
        .catch(() => {});
    }, 200);
    return () => { cancelled = true; clearTimeout(t); };
  }, [q, locationId]);
  const chosen = value ? state.beers[value] : null;
  const options = chosen && !results.some((b) => b.id === chosen.id) ? [chosen, ...results] : results;
  return html`<div class="beer-picker">
    <input type="search" placeholder="Search beers" value=${q} aria-label="Search beers"
      onInput=${(e) => setQ(e.currentTarget.value)} />
    <select name="beer" required value=${value || ''} aria-label="Beer"
      onChange=${(e) => onChange(e.currentTarget.value)}>
      <option value="" disabled>Choose a beer…</option>
      ${options.map((b) => html`<option key=${b.id} value=${b.id}>${b.name}${b.brewery ? ` — ${b.brewery}` : ''}${b.location_id ? ' (custom)' : ''}</option>`)}
    </select>
  </div>`;
}

export function AssignKeg({ tap, onDone }) {
  const units = state.units;
  const [beerId, setBeerId] = useState(tap.beer_id || '');
  const [kegType, setKegType] = useState('half_barrel');
  const [customType, setCustomType] = useState('');
  const [full, setFull] = useState('');
  const [empty, setEmpty] = useState('');
  const [edited, setEdited] = useState(false);
  const [source, setSource] = useState('default');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [fields, setFields] = useState({});
  const type = kegType === 'custom' ? customType.trim() : kegType;

  useEffect(() => {
    let cancelled = false;
    setEdited(false);
    const fill = (fullKg, emptyKg, src) => {
      if (cancelled) return;
      setFull(fullKg === null ? '' : toDisplay(fullKg, units).toFixed(1));
      setEmpty(emptyKg === null ? '' : toDisplay(emptyKg, units).toFixed(1));
      setSource(src);
    };
    const reference = KEG_TYPES[type];
    const fallback = () => (reference
      ? fill(fromLbs(reference.fullLbs), fromLbs(reference.emptyLbs), 'default')
      : fill(null, null, 'default'));
    if (!beerId) {
      fallback();
      return undefined;
    }
    loadBeer(beerId).then((beer) => {
      const w = beer.keg_weights?.find((k) => k.keg_type === type);
      if (w) fill(w.full_kg, w.empty_kg, w.source);
      else fallback();
    }).catch(fallback);
    return () => { cancelled = true; };
  }, [beerId, type, units]);

  async function submit(event) {
    event.preventDefault();
    setError(null);
    setFields({});
    setBusy(true);
    try {
      const body = { location_id: tap.location_id, beer_id: beerId, keg_type: type };
      if (edited || !KEG_TYPES[type]) {
        body.full_kg = toKg(Number(full), units);
        body.empty_kg = toKg(Number(empty), units);
      }
      const keg = await api('/kegs', { method: 'POST', body });
      if (tap.keg_id) await api(`/taps/${seg(tap.id)}`, { method: 'PATCH', body: { keg_id: null } });
      await api(`/taps/${seg(tap.id)}`, { method: 'PATCH', body: { keg_id: keg.id } });
      await reloadTap(tap.id);
      onDone?.(keg);
    } catch (e) {
      setError(e.message);
      setFields(e.fields || {});
    } finally {
      setBusy(false);
    }
  }

  const unit = weightUnit(units);
  return html`<form class="assign-keg" onSubmit=${submit} data-testid="assign-keg-form">
    <${Field} label="Beer" error=${fields.beer_id}>
      <${BeerPicker} value=${beerId} onChange=${setBeerId} locationId=${tap.location_id} />
    </${Field}>
    <${Field} label="Keg type" error=${fields.keg_type}>
      <select name="keg_type" value=${kegType} onChange=${(e) => setKegType(e.currentTarget.value)}>
        ${Object.entries(KEG_TYPES).map(([id, t]) => html`<option key=${id} value=${id}>${t.label}</option>`)}
        <option value="custom">Other…</option>
      </select>
    </${Field}>
    ${kegType === 'custom' ? html`<${Field} label="Type name" hint="Letters, digits, _ and -">
        <input name="custom_type" required pattern="[A-Za-z0-9_-]{1,40}" value=${customType}
          onInput=${(e) => setCustomType(e.currentTarget.value)} />
      </${Field}>` : null}
    <div class="row">
      <${Field} label=${`Full (${unit})`} error=${fields.full_kg}>
        <input name="full" type="number" step="0.1" min="0" required value=${full}
          onInput=${(e) => { setFull(e.currentTarget.value); setEdited(true); }} />
      </${Field}>
      <${Field} label=${`Empty (${unit})`} error=${fields.empty_kg}>
        <input name="empty" type="number" step="0.1" min="0" required value=${empty}
          onInput=${(e) => { setEmpty(e.currentTarget.value); setEdited(true); }} />
      </${Field}>
      <div class="weight-source">${edited ? html`<${Badge}>edited</${Badge}>` : html`<${WeightBadge} source=${source} />`}</div>
    </div>
    ${tap.keg_id ? html`<p class="note">This replaces keg ${tap.keg_id}, which is marked kicked.</p>` : null}
    <${ErrorNote} error=${error} />
    <div class="actions">
      <button type="submit" class="primary" disabled=${busy || !beerId || !type}>
        ${busy ? 'Assigning…' : tap.keg_id ? 'Replace keg' : 'Put keg on tap'}</button>
      ${onDone ? html`<button type="button" onClick=${() => onDone(null)}>Cancel</button>` : null}
    </div>
  </form>`;
}
