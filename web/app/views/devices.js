import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, seg } from '../api.js';
import { useStore } from '../store.js';
import { href } from '../router.js';
import { ago, dateTime, pct } from '../format.js';
import { currentLocation } from '../data.js';
import { Badge, Empty, ErrorNote, useTick } from '../components.js';

function signal(rssi) {
  if (rssi === null || rssi === undefined) return '—';
  const bars = rssi >= -55 ? 4 : rssi >= -67 ? 3 : rssi >= -78 ? 2 : 1;
  return html`<span class="signal" title=${`${rssi} dBm`}>${'▮'.repeat(bars)}${'▯'.repeat(4 - bars)} ${rssi} dBm</span>`;
}

function DeviceRow({ device, driftLimit }) {
  const s = useStore();
  const [telemetry, setTelemetry] = useState(null);
  const [calibration, setCalibration] = useState(null);
  useEffect(() => {
    // A scale that never reported has no telemetry yet (the API answers 404).
    if (!device.last_seen) return;
    api(`/devices/${seg(device.id)}/telemetry`).then(setTelemetry).catch(() => setTelemetry(null));
  }, [device.id, device.last_seen]);
  useEffect(() => {
    api(`/devices/${seg(device.id)}/calibration`).then(setCalibration).catch(() => setCalibration(null));
  }, [device.id, device.calibrationStale]);
  const tap = device.tap_id ? s.taps[device.tap_id] : null;
  const battery = device.battery_pct ?? telemetry?.battery_pct;
  const current = calibration?.current;
  const drift = current?.drift_pct;
  const tz = currentLocation()?.time_zone;
  return html`<tr data-testid="device-row" data-device=${device.id}>
    <td data-label="Scale"><strong>${device.id}</strong>${device.maintenance ? html` <${Badge}>maintenance</${Badge}>` : null}</td>
    <td data-label="Tap">${tap ? html`<a href=${href('tap', tap.id)}>${tap.name}</a>` : '—'}</td>
    <td data-label="Status"><${Badge} tone=${device.status === 'online' ? 'ok' : 'critical'}>${device.status}</${Badge}></td>
    <td data-label="Battery" class=${battery !== undefined && battery !== null && battery <= 20 ? 'warn' : ''}>${pct(battery)}
      ${telemetry?.battery_v ? html`<span class="muted"> ${telemetry.battery_v.toFixed(2)} V</span>` : null}</td>
    <td data-label="Signal">${signal(device.rssi ?? telemetry?.rssi)}</td>
    <td data-label="Firmware">${device.fw_version || '—'}</td>
    <td data-label="Last seen" title=${dateTime(device.last_seen, tz)}>${ago(device.last_seen)}</td>
    <td data-label="Calibration">${current ? html`${current.method} · ${dateTime(current.at, tz)}
      ${drift !== null && drift !== undefined
        ? html` · drift <span class=${Math.abs(drift) >= driftLimit ? 'warn' : ''}>${drift.toFixed(2)} %</span>` : null}`
      : html`<span class="muted">not calibrated</span>`}</td>
  </tr>`;
}

export function Devices() {
  const s = useStore();
  useTick(15000);
  const devices = Object.values(s.devices).sort((a, b) => a.id.localeCompare(b.id));
  const driftLimit = s.settings?.thresholds?.calibration_drift_warn ?? 2;
  return html`<section aria-label="Scales">
    <h1>Scales</h1>
    <${ErrorNote} error=${s.board.error} />
    <div class="card table-wrap">
      ${devices.length ? html`<table class="table stack devices">
        <thead><tr><th>Scale</th><th>Tap</th><th>Status</th><th>Battery</th><th>Signal</th><th>Firmware</th>
          <th>Last seen</th><th>Calibration</th></tr></thead>
        <tbody>${devices.map((d) => html`<${DeviceRow} key=${d.id} device=${d} driftLimit=${driftLimit} />`)}</tbody>
      </table>` : html`<${Empty}>No scales at this location.</${Empty}>`}
    </div>
    <p class="muted small">Calibrate a scale from its tap's page (managers).</p>
  </section>`;
}
