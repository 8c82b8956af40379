import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { all, api, seg } from '../api.js';
import { useStore, update } from '../store.js';
import { dateTime } from '../format.js';
import { Badge, Empty, ErrorNote, Field } from '../components.js';

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

const SEVERITIES = [['warning', 'Warning'], ['critical', 'Critical']];
const ALERT_TYPES = [
  ['low_keg', 'Low keg'],
  ['scale_offline', 'Scale offline'],
  ['low_battery', 'Low battery'],
  ['stale_reading', 'No readings'],
  ['calibration_drift', 'Calibration drift'],
];
const DELIVERY_TONE = { sent: 'ok', pending: 'info', failed: 'warning', dead: 'critical' };

function toggle(list, value, on) {
  return on ? [...list.filter((v) => v !== value), value] : list.filter((v) => v !== value);
}

/** Severity and alert-type checkboxes; an empty list means "all". */
function Filters({ value, onChange, fields = {} }) {
  const box = (key, v, label) => html`<label class="check" key=${v}><input type="checkbox"
    checked=${value[key].includes(v)} onChange=${(e) => onChange({ ...value, [key]: toggle(value[key], v, e.currentTarget.checked) })} /> ${label}</label>`;
  return html`<div class="row">
    <fieldset><legend>Severities (none ticked: all)</legend>${SEVERITIES.map(([v, l]) => box('severities', v, l))}
      <${ErrorNote} error=${fields.severities} /></fieldset>
    <fieldset><legend>Alert types (none ticked: all)</legend>${ALERT_TYPES.map(([v, l]) => box('alert_types', v, l))}
      <${ErrorNote} error=${fields.alert_types} /></fieldset>
  </div>`;
}

function NewChannel({ locationId, onCreated }) {
  const blank = { kind: 'email', target: '', everywhere: false, severities: [], alert_types: [], resolved: true };
  const [form, setForm] = useState(blank);
  const [error, setError] = useState(null);
  const [fields, setFields] = useState({});
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.type === 'checkbox' ? e.currentTarget.checked : e.currentTarget.value });
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setFields({});
    try {
      const channel = await api('/channels', {
        method: 'POST',
        body: {
          location_id: form.everywhere ? null : locationId,
          kind: form.kind,
          target: form.target.trim(),
          severities: form.severities,
          alert_types: form.alert_types,
          resolved: form.resolved,
        },
      });
      setForm(blank);
      onCreated(channel);
    } catch (e) {
      setError(e.message);
      setFields(e.fields);
    } finally {
      setBusy(false);
    }
  }
  const email = form.kind === 'email';
  return html`<form onSubmit=${submit} aria-label="New channel">
    <h3>Add a channel</h3>
    <div class="row">
      <${Field} label="Kind" error=${fields.kind}>
        <select value=${form.kind} onChange=${set('kind')} aria-label="Channel kind">
          <option value="email">E-mail</option>
          <option value="webhook">Webhook</option>
        </select>
      </${Field}>
      <${Field} label=${email ? 'E-mail address(es)' : 'Webhook URL'} error=${fields.target}
          hint=${email ? 'Several addresses: separate them with commas' : 'https://… — signed with a secret shown once'}>
        <input type=${email ? 'text' : 'url'} required value=${form.target} onInput=${set('target')}
          placeholder=${email ? 'manager@bar.example' : 'https://hooks.example/scalesense'} aria-label="Channel target" />
      </${Field}>
    </div>
    <${Filters} value=${form} fields=${fields} onChange=${(v) => setForm({ ...form, ...v })} />
    <label class="check"><input type="checkbox" checked=${form.resolved} onChange=${set('resolved')} /> Also tell when an alert clears</label>
    <label class="check"><input type="checkbox" checked=${form.everywhere} onChange=${set('everywhere')} /> For every location (not only this one)</label>
    <${ErrorNote} error=${error || fields.location_id} />
    <button type="submit" class="primary" disabled=${busy}>Add channel</button>
  </form>`;
}

function deliveryText(d) {
  if (d.notification === 'alert') return `${d.alert_kind} ${d.event} (${d.severity}) ${d.entity}`;
  return d.notification;
}

/** Notification channels of the location, their recent deliveries and the test button. */
function Channels({ locationId }) {
  const [channels, setChannels] = useState([]);
  const [deliveries, setDeliveries] = useState([]);
  const [error, setError] = useState(null);
  const [notes, setNotes] = useState({});
  const [secret, setSecret] = useState(null);
  const [busy, setBusy] = useState(null);
  const load = () => Promise.all([
    api(`/locations/${seg(locationId)}/channels`).then((r) => setChannels(r.items)),
    all(`/locations/${seg(locationId)}/notifications`, {}, 50).then((items) => setDeliveries(items.slice(0, 50))),
  ]).catch((e) => setError(e.message));
  useEffect(() => { load(); }, [locationId]);
  const note = (id, text, tone) => setNotes((n) => ({ ...n, [id]: { text, tone } }));

  async function act(channel, what) {
    setBusy(channel.id);
    setError(null);
    try {
      if (what === 'test') {
        note(channel.id, 'Sending…', 'neutral');
        await api(`/channels/${seg(channel.id)}/test`, { method: 'POST' });
        note(channel.id, 'Test delivered.', 'ok');
      } else if (what === 'toggle') {
        await api(`/channels/${seg(channel.id)}`, { method: 'PATCH', body: { enabled: !channel.enabled } });
      } else if (what === 'rotate') {
        const r = await api(`/channels/${seg(channel.id)}`, { method: 'PATCH', body: { rotate_secret: true } });
        setSecret({ id: r.id, secret: r.secret });
      } else if (what === 'delete') {
        if (!window.confirm(`Remove the channel ${channel.target}? Its delivery log goes with it.`)) return;
        await api(`/channels/${seg(channel.id)}`, { method: 'DELETE' });
      }
    } catch (e) {
      if (what === 'test') note(channel.id, `Not delivered: ${e.message}`, 'bad');
      else setError(e.message);
    } finally {
      setBusy(null);
      load();
    }
  }

  return html`<section class="card" aria-label="Notification channels">
    <h2>Notification channels</h2>
    <p class="muted small">Where alerts go besides the dashboard: e-mail addresses and webhooks.</p>
    <${ErrorNote} error=${error} />
    ${secret ? html`<p class="note" role="status" data-testid="channel-secret">Signing secret of ${secret.id} (shown only now,
      copy it to your receiver): <code>${secret.secret}</code></p>` : null}
    ${channels.length ? html`<table class="table stack">
      <thead><tr><th>Kind</th><th>Target</th><th>Scope</th><th>Filters</th><th>State</th><th>Last delivery</th><th></th></tr></thead>
      <tbody>${channels.map((c) => html`<tr key=${c.id} data-testid="channel-row">
        <td data-label="Kind">${c.kind === 'email' ? 'E-mail' : 'Webhook'}</td>
        <td data-label="Target">${[c.target, ...c.recipients].join(', ')}</td>
        <td data-label="Scope">${c.location_id ? 'this location' : 'every location'}</td>
        <td data-label="Filters">${c.severities.length ? c.severities.join(', ') : 'all severities'};
          ${c.alert_types.length ? c.alert_types.join(', ') : 'all types'}${c.resolved ? '; resolutions' : ''}</td>
        <td data-label="State"><${Badge} tone=${c.enabled ? 'ok' : 'neutral'}>${c.enabled ? 'enabled' : 'disabled'}</${Badge}>
          ${c.kind === 'webhook' && !c.has_secret ? html` <${Badge} tone="critical">no secret</${Badge}>` : null}</td>
        <td data-label="Last delivery">${c.last_delivery
          ? html`<${Badge} tone=${DELIVERY_TONE[c.last_delivery.state]}>${c.last_delivery.state}</${Badge}>
            ${' '}${dateTime(c.last_delivery.sent_at || c.last_delivery.created_at)}`
          : '—'}</td>
        <td class="actions">
          <button type="button" disabled=${busy === c.id} onClick=${() => act(c, 'test')}>Send test</button>
          <button type="button" disabled=${busy === c.id} onClick=${() => act(c, 'toggle')}>${c.enabled ? 'Disable' : 'Enable'}</button>
          ${c.kind === 'webhook' ? html`<button type="button" disabled=${busy === c.id} onClick=${() => act(c, 'rotate')}>New secret</button>` : null}
          <button type="button" disabled=${busy === c.id} onClick=${() => act(c, 'delete')}>Remove</button>
          ${notes[c.id] ? html`<p class=${`small ${notes[c.id].tone === 'bad' ? 'error' : 'note'}`} role="status"
            data-testid="channel-test-result">${notes[c.id].text}</p>` : null}
        </td></tr>`)}</tbody>
    </table>` : html`<${Empty}>No channels yet: alerts show on the dashboard only.</${Empty}>`}
    <${NewChannel} locationId=${locationId} onCreated=${(c) => {
      if (c.secret) setSecret({ id: c.id, secret: c.secret });
      load();
    }} />
    <h3>Recent deliveries</h3>
    ${deliveries.length ? html`<table class="table stack" aria-label="Recent deliveries">
      <thead><tr><th>When</th><th>Channel</th><th>What</th><th>State</th><th>Attempts</th><th>Error</th></tr></thead>
      <tbody>${deliveries.map((d) => html`<tr key=${d.id} data-testid="delivery-row">
        <td data-label="When">${dateTime(d.sent_at || d.created_at)}</td>
        <td data-label="Channel">${channels.find((c) => c.id === d.channel_id)?.target || d.channel_id}</td>
        <td data-label="What">${deliveryText(d)}</td>
        <td data-label="State"><${Badge} tone=${DELIVERY_TONE[d.state]}>${d.state}</${Badge}></td>
        <td data-label="Attempts">${d.attempts}</td>
        <td data-label="Error">${d.last_error || ''}${d.state === 'failed' && d.next_attempt_at ? ` (retry ${dateTime(d.next_attempt_at)})` : ''}</td>
      </tr>`)}</tbody>
    </table>` : html`<${Empty}>Nothing sent yet.</${Empty}>`}
  </section>`;
}

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
    <${Channels} locationId=${s.locationId} />
  </section>`;
}
