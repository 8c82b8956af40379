import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, seg } from '../api.js';
import { can, useStore } from '../store.js';
import { href } from '../router.js';
import { ago } from '../format.js';
import { reloadTap } from '../data.js';
import { Badge, Empty, ErrorNote, Flags, LevelBar, TapSummary, beerOf, useTick } from '../components.js';

/**
 * "Kicked?": the server suspects the keg on this tap is empty (its level stayed near zero for
 * ten minutes). A manager confirms with the keg's kick move; nobody else sees the button.
 */
export function KickSuspected({ tap }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  if (!tap.kick_suspected || !tap.keg_id) return null;
  async function confirm(e) {
    // The board's card is a link: the button must not open the tap.
    e.preventDefault();
    e.stopPropagation();
    setBusy(true);
    setError(null);
    try {
      await api(`/kegs/${seg(tap.keg_id)}`, { method: 'PATCH', body: { state: 'kicked' } });
      await reloadTap(tap.id);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }
  return html`<div class="kick-suspected" data-testid="kick-suspected">
    <${Badge} tone="warning" title="The level has stayed near zero for 10 minutes">Kicked?</${Badge}>
    ${can('manage_kegs') ? html`<button type="button" class="small" data-testid="confirm-kick" disabled=${busy}
      onClick=${confirm}>Confirm kicked</button>` : null}
    <${ErrorNote} error=${error} />
  </div>`;
}

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
    <${KickSuspected} tap=${tap} />
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
