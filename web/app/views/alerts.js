import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, seg } from '../api.js';
import { can, state, useStore } from '../store.js';
import { href } from '../router.js';
import { ALERT_KINDS, actorName, ago, dateTime } from '../format.js';
import { acknowledgeAlert, currentLocation } from '../data.js';
import { Badge, Empty, ErrorNote, useTick } from '../components.js';

function entityName(entity) {
  const tap = state.taps[entity];
  if (tap) return html`<a href=${href('tap', tap.id)}>${tap.name}</a>`;
  const onTap = Object.values(state.taps).find((t) => t.device_id === entity);
  return onTap ? html`${entity} (<a href=${href('tap', onTap.id)}>${onTap.name}</a>)` : entity;
}

function contextText(context) {
  if (!context || typeof context !== 'object') return '';
  if (typeof context.summary === 'string') return context.summary;
  return Object.entries(context)
    .filter(([, v]) => v !== null && typeof v !== 'object')
    .map(([k, v]) => `${k.replace(/_/g, ' ')}: ${typeof v === 'number' ? Number(v.toFixed(2)) : v}`)
    .join(' · ');
}

function ActiveAlert({ alert }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const open = alert.state === 'active' || alert.state === 'escalated';
  async function ack() {
    setBusy(true);
    setError(null);
    try {
      await acknowledgeAlert(alert);
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  }
  return html`<li class=${`alert-row ${alert.severity}`} data-testid="active-alert" data-kind=${alert.kind}
      data-entity=${alert.entity} data-state=${alert.state}>
    <div>
      <${Badge} tone=${alert.severity === 'critical' ? 'critical' : 'warning'}>${alert.severity}</${Badge}>
      <strong>${ALERT_KINDS[alert.kind] || alert.kind}</strong> — ${entityName(alert.entity)}
      <div class="muted small">${alert.state === 'acknowledged'
        ? `acknowledged by ${actorName(alert.acknowledged_by)} ${ago(alert.acknowledged_at)}`
        : `${alert.state} since ${ago(alert.fired_at)}`} ${contextText(alert.context) ? `· ${contextText(alert.context)}` : ''}</div>
      <${ErrorNote} error=${error} />
    </div>
    ${open && can('acknowledge_alert')
      ? html`<button type="button" data-testid="acknowledge" disabled=${busy} onClick=${ack}>Acknowledge</button>`
      : null}
  </li>`;
}

export function Alerts() {
  const s = useStore();
  useTick(15000);
  const [history, setHistory] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);
  const tz = currentLocation()?.time_zone;

  async function loadHistory(next) {
    try {
      const page = await api(`/locations/${seg(s.locationId)}/alerts/history`, { query: { limit: 50, cursor: next } });
      setHistory((h) => (next ? [...h, ...page.items] : page.items));
      setCursor(page.next_cursor);
    } catch (e) {
      setError(e.message);
    }
  }
  useEffect(() => { if (s.locationId) loadHistory(null); }, [s.locationId, s.alerts.length]);

  const active = s.alerts.filter((a) => a.state !== 'firing' && a.state !== 'resolved');
  return html`<section aria-label="Alerts">
    <h1>Alerts</h1>
    <section class="card">
      <h2>Active</h2>
      ${active.length ? html`<ul class="alert-list">${active.map((a) => html`<${ActiveAlert} key=${`${a.kind}/${a.entity}`} alert=${a} />`)}</ul>`
        : html`<${Empty}>Nothing needs attention.</${Empty}>`}
    </section>
    <section class="card">
      <h2>History</h2>
      <${ErrorNote} error=${error} />
      ${history.length ? html`<div class="table-wrap"><table class="table stack">
        <thead><tr><th>When</th><th>Alert</th><th>On</th><th>State</th><th>By</th></tr></thead>
        <tbody>${history.map((h) => html`<tr key=${h.id}>
          <td data-label="When">${dateTime(h.at, tz)}</td>
          <td data-label="Alert">${ALERT_KINDS[h.kind] || h.kind} (${h.severity})</td>
          <td data-label="On">${entityName(h.entity)}</td><td data-label="State">${h.state}</td>
          <td data-label="By">${actorName(h.by) || '—'}</td></tr>`)}</tbody>
      </table></div>` : html`<${Empty}>No alerts yet.</${Empty}>`}
      ${cursor ? html`<button type="button" onClick=${() => loadHistory(cursor)}>Older</button>` : null}
    </section>
  </section>`;
}
