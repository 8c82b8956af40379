// Small pieces shared by the screens.
import { useEffect, useState } from 'preact/hooks';
import { html } from './html.js';
import { state, useStore } from './store.js';
import { ALERT_KINDS, actorName, ago, pct, volume, hours } from './format.js';
import { staleAfterMs } from './data.js';

export function LevelBar({ level, large = false }) {
  const value = Math.max(0, Math.min(100, level ?? 0));
  const tone = level === null || level === undefined ? 'none' : value <= 10 ? 'critical' : value <= 20 ? 'warning' : 'ok';
  return html`<div class=${`level-bar ${large ? 'large' : ''} ${tone}`} role="meter" aria-valuemin="0"
      aria-valuemax="100" aria-valuenow=${level ?? 0} aria-label="Keg level">
    <div class="level-fill" style=${`width: ${value}%`}></div>
  </div>`;
}

export function Badge({ tone = 'neutral', children, title, testid }) {
  return html`<span class=${`badge ${tone}`} title=${title} data-testid=${testid}>${children}</span>`;
}

/** Re-renders every `ms` so relative times and "pouring now" stay true without events. */
export function useTick(ms = 15000) {
  const [, setNow] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
}

/** What is wrong or notable about a tap right now, as badges. */
export function tapFlags(tap, now = Date.now()) {
  const flags = [];
  const device = tap.device_id ? state.devices[tap.device_id] : null;
  if ((state.pouring[tap.id] || 0) > now) flags.push({ key: 'pouring', tone: 'pouring', label: 'Pouring now' });
  for (const alert of state.alerts) {
    const mine = alert.entity === tap.id || (tap.device_id && alert.entity === tap.device_id);
    if (mine && alert.state !== 'resolved' && alert.state !== 'firing') {
      flags.push({
        key: `alert-${alert.kind}`,
        tone: alert.severity === 'critical' ? 'critical' : 'warning',
        label: ALERT_KINDS[alert.kind] || alert.kind,
        title: alert.state === 'acknowledged' ? `acknowledged by ${actorName(alert.acknowledged_by)}` : alert.state,
      });
    }
  }
  if (device?.status === 'offline') flags.push({ key: 'offline', tone: 'critical', label: 'Offline' });
  else if (tap.updated_at && now - Date.parse(tap.updated_at) > staleAfterMs()) {
    flags.push({ key: 'stale', tone: 'warning', label: 'Stale', title: `last reading ${ago(tap.updated_at, now)}` });
  }
  if (tap.maintenance) flags.push({ key: 'maintenance', tone: 'neutral', label: 'Maintenance' });
  if (!tap.device_id) flags.push({ key: 'no-scale', tone: 'neutral', label: 'No scale' });
  return flags;
}

export function Flags({ tap }) {
  return html`<div class="flags">${tapFlags(tap).map((f) => html`<${Badge} key=${f.key} tone=${f.tone}
      title=${f.title} testid=${`flag-${f.key}`}>${f.label}</${Badge}>`)}</div>`;
}

export function remaining(tap) {
  const report = state.reports[tap.id];
  return hours(report?.pour_rate?.hours_remaining);
}

export function TapSummary({ tap }) {
  const units = state.units;
  const left = remaining(tap);
  return html`<div class="tap-numbers">
    <span class="level-pct" data-testid="level-pct">${pct(tap.level_pct)}</span>
    <span class="volume" data-testid="volume">${volume(tap.volume_l, units)}</span>
    ${left ? html`<span class="eta" title="At the recent pour rate">≈ ${left} left</span>` : null}
  </div>`;
}

export function LiveStatus() {
  const { live, offline } = useStore();
  useTick(1000);
  let text = 'Connecting…';
  let tone = 'connecting';
  if (live.status === 'live') {
    text = 'Live';
    tone = 'live';
  } else if (live.status === 'offline' || offline) {
    const seconds = Math.max(0, Math.ceil((live.retryAt - Date.now()) / 1000));
    text = offline ? 'Offline' : `Reconnecting${seconds ? ` in ${seconds} s` : '…'}`;
    tone = 'offline';
  }
  return html`<span class=${`live-status ${tone}`} data-testid="live-status" data-state=${live.status}
    role="status" aria-live="polite"><span class="dot"></span>${text}</span>`;
}

export function ErrorNote({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${typeof error === 'string' ? error : error.message}</p>`;
}

/** A form field with its label and (from a 422) its error. */
export function Field({ label, error, hint, children }) {
  return html`<label class="field"><span class="label">${label}</span>${children}
    ${hint ? html`<span class="hint">${hint}</span>` : null}
    ${error ? html`<span class="field-error">${error}</span>` : null}</label>`;
}

export function Empty({ children }) {
  return html`<p class="empty">${children}</p>`;
}

export function beerOf(tap) {
  return tap.beer_id ? state.beers[tap.beer_id] : null;
}
