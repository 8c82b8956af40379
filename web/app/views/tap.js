import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, seg } from '../api.js';
import { can, state, useStore } from '../store.js';
import { COMMAND_NAMES, ago, dateTime, hours, pct, rate, volume, weight } from '../format.js';
import { currentLocation, issueCommand, loadBeers, reloadTap } from '../data.js';
import { Badge, ErrorNote, Field, Flags, LevelBar, TapSummary, beerOf, useTick } from '../components.js';
import { HistoryChart } from '../chart.js';
import { AssignKeg } from '../kegform.js';
import { KickSuspected } from './board.js';

const STATE_TONES = { pending: 'neutral', delivered: 'info', succeeded: 'ok', failed: 'critical', expired: 'warning' };
const STATE_WORDS = { pending: 'sent, waiting for the scale', delivered: 'delivered', succeeded: 'done', failed: 'failed', expired: 'expired (the scale did not answer)' };

function resultText(command) {
  const r = command.result;
  if (!r) return '';
  if (typeof r !== 'object') return String(r);
  const inner = r.result && typeof r.result === 'object' ? r.result : r;
  const error = r.error || inner.error;
  if (error) return String(error);
  return Object.entries(inner)
    .filter(([k]) => !['id', 'ok', 'v'].includes(k))
    .map(([k, v]) => `${k.replace(/_/g, ' ')}: ${typeof v === 'number' ? Number(v.toFixed(3)) : JSON.stringify(v)}`)
    .join(' · ');
}

function Commands({ tap }) {
  const s = useStore();
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(null);
  const [knownWeight, setKnownWeight] = useState('');
  const mine = Object.values(s.commands)
    .filter((c) => c.tap_id === tap.id)
    .sort((a, b) => Date.parse(b.issued_at) - Date.parse(a.issued_at))
    .slice(0, 6);
  // A calibration answered here, or announced live (`calibration_updated`), means new figures.
  const calibrations = Object.values(s.commands)
    .filter((c) => c.tap_id === tap.id && c.command === 'calibrate' && c.state === 'succeeded').length
    + (tap.device_id && s.devices[tap.device_id]?.calibrationStale ? 1 : 0);

  async function send(command, extra) {
    setError(null);
    setBusy(command);
    try {
      await issueCommand(tap.id, command, extra);
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(null);
    }
  }

  const button = (command, allowed, extra, label = COMMAND_NAMES[command]) => (allowed
    ? html`<button type="button" data-command=${command} disabled=${busy === command || !tap.device_id}
        onClick=${() => send(command, extra)}>${label}</button>`
    : null);

  return html`<section class="card" aria-label="Scale commands">
    <h2>Scale</h2>
    ${tap.device_id ? html`<p class="muted">Scale ${tap.device_id}</p>` : html`<p class="muted">No scale on this tap.</p>`}
    <div class="command-buttons">
      ${button('tare_empty', can('tare'))}
      ${button('tare_full', can('tare'))}
      ${button('identify', can('identify'), { duration_s: 30 }, 'Identify (flash)')}
      ${tap.maintenance
        ? button('maintenance_exit', can('maintenance'))
        : button('maintenance_enter', can('maintenance'))}
    </div>
    ${can('calibrate') && tap.device_id ? html`<form class="row calibrate" onSubmit=${(e) => {
        e.preventDefault();
        send('calibrate', { known_weight_lbs: Number(knownWeight) });
      }}>
      <${Field} label="Known weight on the scale (lb)">
        <input type="number" min="0.1" step="0.1" required value=${knownWeight}
          onInput=${(e) => setKnownWeight(e.currentTarget.value)} />
      </${Field}>
      <button type="submit" disabled=${busy === 'calibrate'}>Calibrate</button>
    </form>` : null}
    <${ErrorNote} error=${error} />
    <${CalibrationFacts} deviceId=${tap.device_id} refresh=${calibrations} />
    ${mine.length ? html`<ul class="command-log">
      ${mine.map((c) => html`<li key=${c.id} data-testid="command-result" data-command=${c.command} data-state=${c.state}>
        <${Badge} tone=${STATE_TONES[c.state]}>${STATE_WORDS[c.state] || c.state}</${Badge}>
        <strong>${COMMAND_NAMES[c.command] || c.command}</strong>
        <span class="muted"> ${ago(c.issued_at)}</span>
        ${resultText(c) ? html`<div class="result">${resultText(c)}</div>` : null}
      </li>`)}
    </ul>` : null}
  </section>`;
}

/** The scale's current calibration and its drift against the previous one. */
function CalibrationFacts({ deviceId, refresh }) {
  const [calibration, setCalibration] = useState(null);
  useEffect(() => {
    setCalibration(null);
    if (deviceId) api(`/devices/${seg(deviceId)}/calibration`).then((c) => setCalibration(c.current)).catch(() => {});
  }, [deviceId, refresh]);
  if (!calibration) return null;
  const drift = calibration.drift_pct;
  return html`<p class="muted small" data-testid="calibration">
    Calibrated ${ago(calibration.at)} · ${Math.round(calibration.scale_factor)} counts/kg
    ${drift === null || drift === undefined ? null : html` · drift <span class=${Math.abs(drift) > 2 ? 'warning' : ''}>${drift.toFixed(1)} %</span>`}
  </p>`;
}

function KegInfo({ tap, report, onAssign }) {
  const [keg, setKeg] = useState(null);
  const units = state.units;
  const tz = currentLocation()?.time_zone;
  useEffect(() => {
    setKeg(null);
    if (tap.keg_id) api(`/kegs/${seg(tap.keg_id)}`).then(setKeg).catch(() => setKeg(null));
  }, [tap.keg_id]);
  const life = report?.keg;
  return html`<section class="card" aria-label="Keg">
    <div class="card-head">
      <h2>Keg</h2>
      ${can('assign_beer_keg') ? html`<button type="button" data-testid="assign-keg" onClick=${onAssign}>
        ${tap.keg_id ? 'Replace keg' : 'Assign keg'}</button>` : null}
    </div>
    ${keg ? html`<dl class="facts">
      <dt>Keg</dt><dd data-testid="keg-id">${keg.id}</dd>
      <dt>Type</dt><dd>${keg.keg_type.replace(/_/g, ' ')}</dd>
      <dt>Full / empty</dt><dd>${weight(keg.full_kg, units)} / ${weight(keg.empty_kg, units)}</dd>
      <dt>Gravity</dt><dd>${keg.specific_gravity.toFixed(3)}</dd>
      <dt>Tapped</dt><dd>${dateTime(keg.tapped_at, tz)}</dd>
      ${life ? html`<dt>Poured so far</dt><dd>${volume(life.poured_l, units)} in ${hours(life.lifespan_secs / 3600) || '—'}</dd>` : null}
    </dl>` : html`<p class="muted">${tap.keg_id ? 'Loading…' : 'No keg on this tap.'}</p>`}
  </section>`;
}

function PourRate({ report }) {
  const units = state.units;
  const r = report?.pour_rate;
  return html`<section class="card" aria-label="Pour rate">
    <h2>Pour rate</h2>
    ${r ? html`<dl class="facts">
      <dt>Rate</dt><dd data-testid="pour-rate">${rate(r.litres_per_hour, units)}</dd>
      <dt>Runs dry in</dt><dd>${hours(r.hours_remaining) || 'not running down'}</dd>
      <dt>Poured</dt><dd>${volume(r.poured_l, units)} over the last ${hours(r.span_secs / 3600)}</dd>
    </dl>` : html`<p class="muted">Not enough readings yet for a rate.</p>`}
  </section>`;
}

export function TapDetail({ id }) {
  const s = useStore();
  useTick(15000);
  const [assigning, setAssigning] = useState(false);
  const [error, setError] = useState(null);
  const [telemetry, setTelemetry] = useState(null);
  const tap = s.taps[id];
  const deviceSeen = tap?.device_id ? s.devices[tap.device_id]?.last_seen : null;
  useEffect(() => {
    // A scale that never reported has no telemetry yet (the API answers 404).
    if (!tap?.device_id || !deviceSeen) return;
    api(`/devices/${seg(tap.device_id)}/telemetry`).then(setTelemetry).catch(() => setTelemetry(null));
  }, [tap?.device_id, deviceSeen && Math.floor(Date.parse(deviceSeen) / 300_000)]);
  useEffect(() => {
    if (!tap && s.board.loaded) reloadTap(id).catch((e) => setError(e.message));
    else if (tap) loadBeers([tap.beer_id]);
  }, [id, s.board.loaded]);
  if (!tap) return html`<section><a href="#/">← Board</a><${ErrorNote} error=${error} /><p class="muted">Loading…</p></section>`;
  const beer = beerOf(tap);
  const report = s.reports[id];
  const device = tap.device_id ? s.devices[tap.device_id] : null;
  const refreshKey = Math.floor((s.readingsSeen[id] || 0) / 5);
  return html`<section class="tap-detail" data-testid="tap-detail" data-tap=${tap.id}>
    <a class="back" href="#/">← Board</a>
    <header class="detail-head card">
      <div>
        <h1>${tap.name}: ${beer?.name || 'no beer'}</h1>
        <p class="muted">${beer ? `${beer.brewery ? `${beer.brewery} · ` : ''}${beer.style} · ${beer.abv.toFixed(1)} % ABV` : ''}</p>
        <${Flags} tap=${tap} />
        <${KickSuspected} tap=${tap} />
      </div>
      <div class="detail-level">
        <${LevelBar} level=${tap.level_pct} large />
        <${TapSummary} tap=${tap} />
        <p class="muted small">Updated ${ago(tap.updated_at)}
          ${device ? html` · scale ${device.status} · battery ${pct(device.battery_pct ?? telemetry?.battery_pct)}` : null}</p>
      </div>
    </header>
    ${assigning ? html`<section class="card" aria-label="Assign keg"><h2>New keg on ${tap.name}</h2>
      <${AssignKeg} tap=${tap} onDone=${() => setAssigning(false)} /></section>` : null}
    <${HistoryChart} tapId=${tap.id} timeZone=${currentLocation()?.time_zone} refreshKey=${refreshKey} />
    <div class="detail-grid">
      <${KegInfo} tap=${tap} report=${report} onAssign=${() => setAssigning(true)} />
      <${PourRate} report=${report} />
      <${Commands} tap=${tap} />
    </div>
  </section>`;
}
