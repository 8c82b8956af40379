import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, seg } from '../api.js';
import { useStore, update } from '../store.js';
import { ErrorNote, Field } from '../components.js';

const THRESHOLDS = [
  ['low_keg_warning_pct', 'Low keg warning', '%'],
  ['low_keg_critical_pct', 'Low keg critical', '%'],
  ['low_keg_warning_hours', 'Runs dry warning', 'hours left'],
  ['low_keg_critical_hours', 'Runs dry critical', 'hours left'],
  ['offline_warning_secs', 'Scale offline warning', 'seconds'],
  ['offline_critical_secs', 'Scale offline critical', 'seconds'],
  ['battery_warning_pct', 'Battery warning', '%'],
  ['battery_critical_pct', 'Battery critical', '%'],
  ['calibration_drift_warn', 'Calibration drift warning', '%'],
  ['stale_readings_secs', 'No readings for', 'seconds'],
  ['grace_period_secs', 'Condition must hold for', 'seconds'],
];

function zones() {
  try {
    return Intl.supportedValuesOf('timeZone');
  } catch {
    return [];
  }
}

export function Settings() {
  const s = useStore();
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [fields, setFields] = useState({});
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!s.locationId) return;
    api(`/locations/${seg(s.locationId)}/settings`).then((v) => setForm(fromView(v))).catch((e) => setError(e.message));
  }, [s.locationId]);

  function fromView(v) {
    return {
      name: v.name,
      address: v.address,
      time_zone: v.time_zone,
      units: v.units,
      thresholds: Object.fromEntries(THRESHOLDS.map(([k]) => [k, String(v.thresholds[k] ?? '')])),
      quiet: Boolean(v.quiet_hours),
      open: v.quiet_hours?.open || '16:00',
      close: v.quiet_hours?.close || '02:00',
      window_hours: String((v.pour_rate.window_secs || 21600) / 3600),
    };
  }

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setFields({});
    setSaved(false);
    try {
      const body = {
        name: form.name,
        address: form.address,
        time_zone: form.time_zone,
        units: form.units,
        thresholds: Object.fromEntries(THRESHOLDS.map(([k]) => [k, Number(form.thresholds[k])])),
        quiet_hours: form.quiet ? { open: form.open, close: form.close } : null,
        pour_rate: { window_secs: Math.round(Number(form.window_hours) * 3600) },
      };
      const view = await api(`/locations/${seg(s.locationId)}/settings`, { method: 'PATCH', body });
      setForm(fromView(view));
      update((st) => {
        st.settings = view;
        st.units = view.units;
        st.locations = st.locations.map((l) => (l.id === view.location_id
          ? { ...l, name: view.name, units: view.units, time_zone: view.time_zone } : l));
      });
      setSaved(true);
    } catch (e) {
      setError(e.message);
      setFields(e.fields);
    } finally {
      setBusy(false);
    }
  }

  if (!form) return html`<section><h1>Settings</h1><${ErrorNote} error=${error} /><p class="muted">Loading…</p></section>`;
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.type === 'checkbox' ? e.currentTarget.checked : e.currentTarget.value });
  const setT = (k) => (e) => setForm({ ...form, thresholds: { ...form.thresholds, [k]: e.currentTarget.value } });
  return html`<section aria-label="Settings">
    <h1>Settings</h1>
    <form onSubmit=${submit}>
      <section class="card">
        <h2>Location</h2>
        <div class="row">
          <${Field} label="Name" error=${fields.name}><input required value=${form.name} onInput=${set('name')} /></${Field}>
          <${Field} label="Address" error=${fields.address}><input value=${form.address} onInput=${set('address')} /></${Field}>
        </div>
        <div class="row">
          <${Field} label="Time zone" error=${fields.time_zone}>
            <input list="zones" required value=${form.time_zone} onInput=${set('time_zone')} />
            <datalist id="zones">${zones().map((z) => html`<option key=${z} value=${z} />`)}</datalist>
          </${Field}>
          <${Field} label="Units" error=${fields.units}>
            <select value=${form.units} onChange=${set('units')}>
              <option value="imperial">US (gallons, pounds)</option>
              <option value="metric">Metric (litres, kilograms)</option>
            </select>
          </${Field}>
        </div>
      </section>
      <section class="card">
        <h2>Alert thresholds</h2>
        <div class="grid-fields">${THRESHOLDS.map(([k, label, unit]) => html`<${Field} key=${k}
            label=${`${label} (${unit})`} error=${fields[`thresholds.${k}`]}>
          <input type="number" step="any" min="0" required value=${form.thresholds[k]} onInput=${setT(k)} />
        </${Field}>`)}</div>
        <${ErrorNote} error=${fields.thresholds} />
      </section>
      <section class="card">
        <h2>Quiet hours</h2>
        <p class="muted small">E-mail and webhooks wait for opening time; the dashboard always shows alerts at once.</p>
        <label class="check"><input type="checkbox" checked=${form.quiet} onChange=${set('quiet')} /> Only notify during opening hours</label>
        ${form.quiet ? html`<div class="row">
          <${Field} label="Open" error=${fields['quiet_hours.open']}><input type="time" required value=${form.open} onInput=${set('open')} /></${Field}>
          <${Field} label="Close" error=${fields['quiet_hours.close']}><input type="time" required value=${form.close} onInput=${set('close')} /></${Field}>
        </div>` : null}
      </section>
      <section class="card">
        <h2>Pour rate</h2>
        <${Field} label="Look back (hours)" error=${fields['pour_rate.window_secs']}>
          <input type="number" min="0.1" max="168" step="0.5" required value=${form.window_hours} onInput=${set('window_hours')} />
        </${Field}>
      </section>
      <${ErrorNote} error=${error} />
      ${saved ? html`<p class="note" role="status">Saved.</p>` : null}
      <button type="submit" class="primary" disabled=${busy}>Save settings</button>
    </form>
  </section>`;
}
