// The TV tap list for a screen behind the bar: read-only, large type, no navigation. It stays
// live through the same WebSocket as the rest of the app.
import { html } from '../html.js';
import { useStore } from '../store.js';
import { clock, volume } from '../format.js';
import { currentLocation } from '../data.js';
import { LevelBar, LiveStatus, beerOf, useTick } from '../components.js';

export function Tv() {
  const s = useStore();
  useTick(10000);
  const location = currentLocation();
  const taps = s.tapOrder.map((id) => s.taps[id]).filter(Boolean);
  const now = Date.now();
  return html`<main class="tv" data-testid="tv">
    <header class="tv-head">
      <h1>${location?.name || 'On tap'}</h1>
      <div class="tv-meta"><${LiveStatus} /><span class="tv-clock">${clock(location?.time_zone)}</span></div>
    </header>
    <ol class="tv-list">
      ${taps.map((tap) => {
        const beer = beerOf(tap);
        const pouring = (s.pouring[tap.id] || 0) > now;
        return html`<li key=${tap.id} class=${`tv-tap ${pouring ? 'pouring' : ''}`} data-tap=${tap.id}>
          <span class="tv-number">${tap.number}</span>
          <div class="tv-beer">
            <div class="tv-name">${beer?.name || '—'}</div>
            <div class="tv-style">${beer ? `${beer.style} · ${beer.abv.toFixed(1)} %` : ''}</div>
          </div>
          <div class="tv-level">
            <${LevelBar} level=${tap.level_pct} large />
            <span class="tv-left">${volume(tap.volume_l, s.units)}</span>
          </div>
        </li>`;
      })}
    </ol>
  </main>`;
}
