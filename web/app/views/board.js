import { html } from '../html.js';
import { useStore } from '../store.js';
import { href } from '../router.js';
import { ago } from '../format.js';
import { Empty, ErrorNote, Flags, LevelBar, TapSummary, beerOf, useTick } from '../components.js';

export function TapCard({ tap }) {
  const beer = beerOf(tap);
  return html`<a class="card tap-card" href=${href('tap', tap.id)} data-testid="tap-card" data-tap=${tap.id}>
    <div class="tap-head">
      <span class="tap-name">${tap.name}</span>
      <${Flags} tap=${tap} />
    </div>
    <div class="beer-name">${beer?.name || (tap.beer_id ? '…' : 'No beer assigned')}</div>
    <div class="beer-style muted">${beer ? `${beer.style || 'Beer'} · ${beer.abv.toFixed(1)} %` : '\u00a0'}</div>
    <${LevelBar} level=${tap.level_pct} />
    <${TapSummary} tap=${tap} />
    <div class="updated muted">Updated ${ago(tap.updated_at)}</div>
  </a>`;
}

export function Board() {
  const s = useStore();
  useTick(15000);
  const taps = s.tapOrder.map((id) => s.taps[id]).filter(Boolean);
  return html`<section class="board" aria-label="Tap board">
    <${ErrorNote} error=${s.board.error} />
    ${s.board.loaded && taps.length === 0 ? html`<${Empty}>No taps at this location yet.</${Empty}>` : null}
    ${!s.board.loaded && s.board.loading ? html`<p class="muted">Loading taps…</p>` : null}
    <div class="tap-grid">${taps.map((tap) => html`<${TapCard} key=${tap.id} tap=${tap} />`)}</div>
  </section>`;
}
