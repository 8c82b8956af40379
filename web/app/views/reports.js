// Reports (managers): the location's inventory, pour volume by hour of day, style split, keg
// lifespans, kegs kicked per week and battery trend, with CSV/PDF export buttons. Every number
// comes from the server's reports, already in the location's time zone and units; this screen
// only draws them (uPlot, loaded when first needed, as in the history chart).
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, seg } from '../api.js';
import { useStore } from '../store.js';
import { Empty, ErrorNote } from '../components.js';

let uPlotModule = null;
const loadUPlot = () => (uPlotModule ??= import('../../vendor/uplot/uPlot.esm.js').then((m) => m.default));

const REPORTS = ['inventory', 'pour-by-hour', 'styles', 'lifespans', 'kicked', 'battery'];

const num = (v, digits = 1) => (v === null || v === undefined ? '—' : Number(v).toFixed(digits));

/** Bars drawn with uPlot's bar path builder: x is a category index. */
function BarChart({ labels, values, unit, testid }) {
  const box = useRef(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!box.current || values.length === 0) return undefined;
    let plot = null;
    let cancelled = false;
    loadUPlot().then((UPlot) => {
      if (cancelled || !box.current) return;
      const bars = UPlot.paths.bars({ size: [0.7, 60] });
      plot = new UPlot({
        width: box.current.clientWidth || 600,
        height: 220,
        scales: { x: { time: false } },
        series: [
          { value: (u, i) => labels[i] ?? '' },
          { label: unit, stroke: '#2b6cb0', fill: 'rgba(43,108,176,0.6)', paths: bars, points: { show: false },
            value: (u, v) => (v === null || v === undefined ? '—' : `${v.toFixed(2)} ${unit}`) },
        ],
        axes: [{ values: (u, ticks) => ticks.map((t) => labels[t] ?? '') }, {}],
        legend: { live: true },
      }, [values.map((_, i) => i), values], box.current);
    }).catch((e) => { if (!cancelled) setError(`The chart could not load: ${e.message}`); });
    return () => { cancelled = true; plot?.destroy(); };
  }, [labels.join('|'), values.join('|'), unit]);
  return html`<div data-testid=${testid}>
    <${ErrorNote} error=${error} />
    ${values.length === 0 ? html`<${Empty}>No data yet.</${Empty}>` : html`<div ref=${box} class="chart"></div>`}
  </div>`;
}

/** One line per scale over time (battery %). */
function BatteryChart({ report }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current || report.devices.length === 0) return undefined;
    let plot = null;
    let cancelled = false;
    loadUPlot().then((UPlot) => {
      if (cancelled || !box.current) return;
      const times = [...new Set(report.devices.flatMap((d) => d.points.map((p) => p.t)))].sort();
      const xs = times.map((t) => Date.parse(t) / 1000);
      const colours = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2'];
      const data = [xs, ...report.devices.map((d) => {
        const byT = new Map(d.points.map((p) => [p.t, p.battery_pct]));
        return times.map((t) => byT.get(t) ?? null);
      })];
      plot = new UPlot({
        width: box.current.clientWidth || 600,
        height: 220,
        tzDate: (ts) => UPlot.tzDate(new Date(ts * 1000), report.time_zone),
        scales: {
          x: { time: true, range: (u, min, max) => [Math.min(min, max - 7 * 86400), Math.max(max, min + 3600)] },
          pct: { auto: false, range: [0, 100] },
        },
        series: [{}, ...report.devices.map((d, i) => ({
          label: d.device_id || d.tap_name, scale: 'pct', stroke: colours[i % colours.length], width: 1.5,
          spanGaps: true, value: (u, v) => (v === null || v === undefined ? '—' : `${v.toFixed(0)} %`),
        }))],
        axes: [{}, { scale: 'pct', values: (u, ticks) => ticks.map((t) => `${t}%`) }],
      }, data, box.current);
    });
    return () => { cancelled = true; plot?.destroy(); };
  }, [report]);
  return report.devices.length === 0
    ? html`<${Empty}>No battery readings in the last 7 days.</${Empty}>`
    : html`<div ref=${box} class="chart" data-testid="battery-chart"></div>`;
}

function ExportButtons({ locationId }) {
  const [busy, setBusy] = useState(null);
  const [error, setError] = useState(null);
  async function exportAs(format) {
    setBusy(format);
    setError(null);
    try {
      const link = await api(`/locations/${seg(locationId)}/inventory/export`, { query: { format } });
      // The link is signed and short-lived: follow it at once.
      const a = document.createElement('a');
      a.href = link.url;
      a.download = link.file_name;
      document.body.appendChild(a);
      a.click();
      a.remove();
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(null);
    }
  }
  return html`<div class="actions">
    <button type="button" data-testid="export-csv" disabled=${busy !== null} onClick=${() => exportAs('csv')}>
      ${busy === 'csv' ? 'Exporting…' : 'Export CSV'}</button>
    <button type="button" data-testid="export-pdf" disabled=${busy !== null} onClick=${() => exportAs('pdf')}>
      ${busy === 'pdf' ? 'Exporting…' : 'Export PDF'}</button>
    <${ErrorNote} error=${error} />
  </div>`;
}

function Inventory({ report }) {
  const unit = report.volume_unit;
  return html`<div class="table-wrap"><table class="table" data-testid="inventory">
    <thead><tr><th>Tap</th><th>Beer</th><th>Style</th><th>Keg type</th><th>Level %</th>
      <th>Left (${unit})</th><th>Hours left</th><th>Tapped</th></tr></thead>
    <tbody>${report.taps.map((t) => html`<tr key=${t.tap_id} class=${t.low || ''} data-low=${t.low || ''}>
      <td>${t.tap_number} ${t.tap_name}</td><td>${t.beer || '—'}</td><td>${t.style || ''}</td>
      <td>${t.keg_type || ''}</td><td>${num(t.level_pct)}</td><td>${num(t.volume_left)}</td>
      <td>${num(t.hours_remaining)}</td><td>${t.tapped_date || ''}</td></tr>`)}</tbody>
  </table></div>`;
}

export function Reports() {
  const s = useStore();
  const locationId = s.locationId;
  const [reports, setReports] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let cancelled = false;
    setReports(null);
    setError(null);
    Promise.all(REPORTS.map((r) => api(`/locations/${seg(locationId)}/reports/${r}`)))
      .then(([inventory, pourByHour, styles, lifespans, kicked, battery]) => {
        if (!cancelled) setReports({ inventory, pourByHour, styles, lifespans, kicked, battery });
      })
      .catch((e) => { if (!cancelled) setError(e.message); });
    return () => { cancelled = true; };
  }, [locationId]);
  if (error) return html`<${ErrorNote} error=${error} />`;
  if (!reports) return html`<p class="muted">Loading reports…</p>`;
  const { inventory, pourByHour, styles, lifespans, kicked, battery } = reports;
  const unit = inventory.volume_unit;
  return html`<div class="reports" data-testid="reports">
    <section class="card">
      <h2>Inventory <span class="muted small">${inventory.local_time} (${inventory.time_zone})</span></h2>
      <${ExportButtons} locationId=${locationId} />
      <${Inventory} report=${inventory} />
    </section>
    <section class="card">
      <h2>Pour volume by hour of day <span class="muted small">average per day, last ${pourByHour.days} days</span></h2>
      <${BarChart} testid="pour-by-hour" unit=${unit}
        labels=${pourByHour.hours.map((h) => String(h.hour).padStart(2, '0'))}
        values=${pourByHour.hours.map((h) => h.average_per_day)} />
    </section>
    <section class="card">
      <h2>Style split <span class="muted small">last ${styles.days} days</span></h2>
      ${styles.styles.length === 0 ? html`<${Empty}>Nothing poured yet.</${Empty}>` : html`<div class="table-wrap"><table class="table" data-testid="styles">
        <thead><tr><th>Style</th><th>Poured (${unit})</th><th>Share</th></tr></thead>
        <tbody>${styles.styles.map((x) => html`<tr key=${x.style}><td>${x.style}</td><td>${num(x.volume)}</td>
          <td>${num(x.share_pct)} %</td></tr>`)}</tbody></table></div>`}
    </section>
    <section class="card">
      <h2>Kegs kicked per week</h2>
      <${BarChart} testid="kicked" unit="kegs" labels=${kicked.weeks.map((w) => w.week_start.slice(5))}
        values=${kicked.weeks.map((w) => w.kicked)} />
    </section>
    <section class="card">
      <h2>Keg lifespans <span class="muted small">${lifespans.average_kicked_hours === null ? '' : `kicked kegs last ${num(lifespans.average_kicked_hours)} h on average`}</span></h2>
      ${lifespans.kegs.length === 0 ? html`<${Empty}>No kegs in the last 90 days.</${Empty}>` : html`<div class="table-wrap"><table class="table" data-testid="lifespans">
        <thead><tr><th>Keg</th><th>Beer</th><th>Tapped</th><th>Ended</th><th>Hours</th><th>Poured (${unit})</th></tr></thead>
        <tbody>${lifespans.kegs.map((k) => html`<tr key=${k.keg_id}><td>${k.keg_id}</td><td>${k.beer}</td>
          <td>${k.tapped_at || ''}</td><td>${k.ended_at || ''}${k.kicked ? ' (kicked)' : ''}</td>
          <td>${num(k.lifespan_hours)}</td><td>${num(k.poured)}</td></tr>`)}</tbody></table></div>`}
    </section>
    <section class="card">
      <h2>Battery <span class="muted small">last 7 days</span></h2>
      <${BatteryChart} report=${battery} />
    </section>
  </div>`;
}
