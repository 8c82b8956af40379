// The history chart: level % and battery % of one tap over a range, drawn with uPlot. uPlot is
// loaded only when a chart is first shown, so the board's first load stays small.
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from './html.js';
import { api, seg } from './api.js';

let uPlotModule = null;
const loadUPlot = () => (uPlotModule ??= import('../vendor/uplot/uPlot.esm.js').then((m) => m.default));

export const RANGES = ['2h', '24h', '7d', '30d'];

function series(history) {
  const xs = history.data.map((p) => Date.parse(p.t) / 1000);
  const battery = new Map(history.battery_data.map((p) => [p.t, p.battery_pct]));
  return [
    xs,
    history.data.map((p) => p.level_pct),
    history.data.map((p) => battery.get(p.t) ?? null),
  ];
}

export function HistoryChart({ tapId, timeZone, refreshKey }) {
  const [range, setRange] = useState('24h');
  const [history, setHistory] = useState(null);
  const [error, setError] = useState(null);
  const box = useRef(null);
  const plot = useRef(null);

  useEffect(() => {
    let cancelled = false;
    setError(null);
    api(`/taps/${seg(tapId)}/history`, { query: { range } })
      .then((h) => { if (!cancelled) setHistory(h); })
      .catch((e) => { if (!cancelled) setError(e.message); });
    return () => { cancelled = true; };
  }, [tapId, range, refreshKey]);

  useEffect(() => {
    if (!history || !box.current || history.data.length === 0) return undefined;
    let cancelled = false;
    let observer = null;
    loadUPlot().then((UPlot) => {
      if (cancelled || !box.current) return;
      const width = box.current.clientWidth || 600;
      const options = {
        width,
        height: 260,
        tzDate: timeZone ? (ts) => UPlot.tzDate(new Date(ts * 1000), timeZone) : undefined,
        // The whole range asked for, even when readings cover only part of it.
        scales: {
          x: { time: true, auto: false, range: [Date.parse(history.start) / 1000, Date.parse(history.end) / 1000] },
          pct: { auto: false, range: [0, 100] },
        },
        series: [
          {},
          { label: 'Level', scale: 'pct', stroke: '#16a34a', fill: 'rgba(22,163,74,0.12)', width: 2,
            value: (u, v) => (v === null || v === undefined ? '—' : `${v.toFixed(1)} %`) },
          { label: 'Battery', scale: 'pct', stroke: '#2563eb', width: 1.5, dash: [6, 4],
            value: (u, v) => (v === null || v === undefined ? '—' : `${v.toFixed(0)} %`) },
        ],
        axes: [{}, { scale: 'pct', values: (u, ticks) => ticks.map((t) => `${t}%`) }],
        legend: { live: true },
      };
      plot.current?.destroy();
      plot.current = new UPlot(options, series(history), box.current);
      observer = new ResizeObserver(() => {
        if (plot.current && box.current) plot.current.setSize({ width: box.current.clientWidth, height: 260 });
      });
      observer.observe(box.current);
    }).catch((e) => { if (!cancelled) setError(`The chart could not load: ${e.message}`); });
    return () => {
      cancelled = true;
      observer?.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [history, timeZone]);

  const empty = history && history.data.length === 0;
  return html`<section class="card chart-card" aria-label="History">
    <div class="card-head">
      <h2>History</h2>
      <div class="segmented" role="group" aria-label="Range">
        ${RANGES.map((r) => html`<button type="button" key=${r} data-range=${r} aria-pressed=${r === range}
          class=${r === range ? 'on' : ''} onClick=${() => setRange(r)}>${r}</button>`)}
      </div>
    </div>
    ${error ? html`<p class="error">${error}</p>` : null}
    <div class="chart" ref=${box} data-testid="chart" data-range=${history?.range || ''}
      data-points=${history ? history.data.length : ''}></div>
    ${empty ? html`<p class="empty">No readings in the last ${range} yet.</p>` : null}
    ${history ? html`<p class="muted small">${history.data.length} points, ${history.bin_secs / 60} min bins
      · solid: level · dashed: battery</p>` : null}
  </section>`;
}
