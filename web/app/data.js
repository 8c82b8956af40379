// Loading state from the REST API and applying live events to it. The resync rule
// (docs/contract.md): after every (re)connect the board is reloaded from REST; an event only
// ever moves a value forward (a reading older than what is shown is ignored).
import { api, all, seg, setCsrfToken, ApiError } from './api.js';
import { state, update, can } from './store.js';
import { startLive } from './live.js';
import { isoFromMs, toGallons } from './format.js';

const SESSION_HINT = 'scalesense.session';
const LOCATION_KEY = 'scalesense.location';
const POURING_MS = 90_000;
const REPORT_REFRESH_MS = 60_000;

let live = null;
const reportFetchedAt = {};
let boardRequest = 0;

function readPermissions() {
  try {
    return JSON.parse(document.getElementById('permissions')?.textContent || '{}');
  } catch {
    return {};
  }
}

/** At start: restore the session if there was one (no request at all when there was not). */
export async function bootstrap() {
  update((s) => { s.permissions = readPermissions(); });
  if (!localStorage.getItem(SESSION_HINT)) {
    update((s) => { s.me = null; s.booted = true; });
    return;
  }
  try {
    const me = await api('/auth/me');
    await signedIn(me);
  } catch (e) {
    localStorage.removeItem(SESSION_HINT);
    update((s) => {
      s.me = null;
      s.bootError = e instanceof ApiError && e.status === 0 ? e.message : null;
    });
  } finally {
    update((s) => { s.booted = true; });
  }
}

export async function login({ email, password, account }) {
  const body = { email, password };
  if (account) body.account = account;
  const answer = await api('/auth/login', { method: 'POST', body });
  setCsrfToken(answer.csrf_token);
  localStorage.setItem(SESSION_HINT, '1');
  const me = await api('/auth/me');
  await signedIn(me);
}

export async function logout() {
  try {
    await api('/auth/logout', { method: 'POST' });
  } catch {
    // The session is forgotten here either way.
  }
  signedOut();
}

export function signedOut() {
  localStorage.removeItem(SESSION_HINT);
  live?.stop();
  live = null;
  setCsrfToken(null);
  update((s) => {
    s.me = null;
    s.taps = {};
    s.tapOrder = [];
    s.devices = {};
    s.alerts = [];
    s.reports = {};
    s.settings = null;
    s.board = { loading: false, loaded: false, error: null };
  });
}

async function signedIn(me) {
  setCsrfToken(me.csrf_token);
  const locations = await all('/locations');
  const saved = localStorage.getItem(LOCATION_KEY);
  const chosen = locations.find((l) => l.id === saved) || locations[0] || null;
  update((s) => {
    s.me = me;
    s.locations = locations;
    s.locationId = chosen?.id || null;
    s.units = chosen?.units || 'imperial';
  });
  startLiveConnection();
  await loadBoard();
}

function startLiveConnection() {
  live?.stop();
  live = startLive({
    onEvent: applyEvent,
    onStatus: (status) => update((s) => { s.live = status; }),
    onResync: () => { loadBoard(); },
    onAuthLost: signedOut,
  });
}

export function currentLocation() {
  return state.locations.find((l) => l.id === state.locationId) || null;
}

export async function selectLocation(id) {
  localStorage.setItem(LOCATION_KEY, id);
  update((s) => {
    s.locationId = id;
    s.units = s.locations.find((l) => l.id === id)?.units || s.units;
    s.board = { loading: true, loaded: false, error: null };
  });
  await loadBoard();
}

/** Loads everything the board shows for the current location. */
export async function loadBoard() {
  const location = state.locationId;
  if (!location) return;
  const request = ++boardRequest;
  update((s) => { s.board = { ...s.board, loading: true, error: null }; });
  try {
    const [taps, devices, alerts, settings] = await Promise.all([
      api(`/locations/${seg(location)}/taps`, { query: { limit: 500 } }),
      all(`/locations/${seg(location)}/devices`),
      api(`/locations/${seg(location)}/alerts`),
      can('manage_settings') ? api(`/locations/${seg(location)}/settings`) : Promise.resolve(null),
    ]);
    if (request !== boardRequest) return;
    update((s) => {
      s.units = taps.units;
      s.taps = Object.fromEntries(taps.items.map((t) => [t.id, { ...s.taps[t.id], ...t }]));
      s.tapOrder = taps.items.map((t) => t.id);
      s.devices = Object.fromEntries(devices.map((d) => [d.id, { ...s.devices[d.id], ...d }]));
      s.alerts = alerts.items;
      s.settings = settings;
      s.board = { loading: false, loaded: true, error: null };
    });
    await Promise.all([
      loadBeers(taps.items.map((t) => t.beer_id)),
      Promise.all(taps.items.map((t) => loadReport(t.id))),
    ]);
  } catch (e) {
    if (request !== boardRequest) return;
    update((s) => { s.board = { ...s.board, loading: false, error: e.message }; });
  }
}

export async function loadBeers(ids) {
  const missing = [...new Set(ids.filter((id) => id && !state.beers[id]))];
  const beers = await Promise.all(missing.map((id) => api(`/beers/${seg(id)}`).catch(() => null)));
  update((s) => {
    for (const beer of beers) if (beer) s.beers[beer.id] = beer;
  });
}

export async function loadBeer(id) {
  const beer = await api(`/beers/${seg(id)}`);
  update((s) => { s.beers[beer.id] = beer; });
  return beer;
}

export async function loadReport(tapId) {
  reportFetchedAt[tapId] = Date.now();
  try {
    const report = await api(`/taps/${seg(tapId)}/report`);
    update((s) => { s.reports[tapId] = report; });
  } catch {
    // The board shows no estimate rather than a wrong one.
  }
}

export async function reloadTap(tapId) {
  const tap = await api(`/taps/${seg(tapId)}`);
  update((s) => {
    s.taps[tap.id] = { ...s.taps[tap.id], ...tap };
    if (!s.tapOrder.includes(tap.id)) s.tapOrder.push(tap.id);
  });
  await loadBeers([tap.beer_id]);
  await loadReport(tap.id);
  return state.taps[tap.id];
}

function applyReading(e) {
  const tap = state.taps[e.tap_id];
  if (!tap) return;
  const at = e.ts;
  if (tap.updated_at && Date.parse(tap.updated_at) > at) return;
  update((s) => {
    const before = s.taps[e.tap_id];
    const dropped = before.volume_l !== null && before.volume_l !== undefined
      && e.volume_l !== null && e.volume_l !== undefined && before.volume_l - e.volume_l > 0.05;
    s.taps[e.tap_id] = {
      ...before,
      level_pct: e.level_pct,
      volume_l: e.volume_l,
      volume_gal: e.volume_l === null || e.volume_l === undefined ? null : toGallons(e.volume_l),
      weight_kg: e.weight_kg,
      updated_at: isoFromMs(at),
      keg_id: e.keg_id ?? before.keg_id,
    };
    if (e.stable === false || dropped) s.pouring[e.tap_id] = Date.now() + POURING_MS;
    else if (s.pouring[e.tap_id] && e.stable) s.pouring[e.tap_id] = Math.min(s.pouring[e.tap_id], Date.now() + 15_000);
    const device = s.devices[e.device_id];
    if (device && e.battery_pct !== null && e.battery_pct !== undefined) {
      s.devices[e.device_id] = { ...device, battery_pct: e.battery_pct, last_seen: isoFromMs(at), status: 'online' };
    }
    s.readingsSeen[e.tap_id] = (s.readingsSeen[e.tap_id] || 0) + 1;
  });
  if (Date.now() - (reportFetchedAt[e.tap_id] || 0) > REPORT_REFRESH_MS) {
    loadReport(e.tap_id);
  }
}

function alertOf(e) {
  const a = e.alert || e;
  return {
    location_id: a.location_id,
    kind: a.kind,
    entity: a.entity,
    severity: a.severity,
    state: a.state,
    fired_at: typeof a.fired_at === 'number' ? isoFromMs(a.fired_at) : a.fired_at,
    updated_at: typeof a.at === 'number' ? isoFromMs(a.at) : a.updated_at,
    acknowledged_by: a.acknowledged_by ?? null,
    context: a.context ?? {},
  };
}

/** Applies one live event (seed 001's list; payloads in docs/contract.md). */
export function applyEvent(e) {
  if (e.location_id && e.location_id !== state.locationId) return;
  switch (e.type) {
    case 'reading':
      applyReading(e);
      break;
    case 'device_status':
      update((s) => {
        const d = s.devices[e.device_id];
        if (d) {
          s.devices[e.device_id] = {
            ...d,
            status: e.status,
            fw_version: e.fw_version ?? d.fw_version,
            maintenance: e.maintenance,
            battery_pct: e.battery_pct ?? d.battery_pct,
            rssi: e.rssi ?? d.rssi,
            last_seen: isoFromMs(e.at),
          };
        }
        if (e.tap_id && s.taps[e.tap_id]) s.taps[e.tap_id] = { ...s.taps[e.tap_id], maintenance: e.maintenance };
      });
      break;
    case 'maintenance_entered':
    case 'maintenance_exited': {
      const on = e.type === 'maintenance_entered';
      update((s) => {
        if (e.tap_id && s.taps[e.tap_id]) s.taps[e.tap_id] = { ...s.taps[e.tap_id], maintenance: on };
        if (s.devices[e.device_id]) s.devices[e.device_id] = { ...s.devices[e.device_id], maintenance: on };
      });
      break;
    }
    case 'command_completed':
      refreshCommand(e.command_id);
      break;
    case 'alert_fired': {
      const alert = alertOf(e);
      update((s) => {
        s.alerts = [alert, ...s.alerts.filter((a) => !(a.kind === alert.kind && a.entity === alert.entity))];
      });
      break;
    }
    case 'alert_cleared': {
      const alert = alertOf(e);
      const id = e.alert_id || e.id || `${alert.location_id}/${alert.kind}/${alert.entity}`;
      update((s) => {
        s.alerts = s.alerts.filter((a) => `${a.location_id}/${a.kind}/${a.entity}` !== id
          && !(a.kind === alert.kind && a.entity === alert.entity));
      });
      break;
    }
    case 'tare_updated':
    case 'tap_updated':
      if (e.tap_id) reloadTap(e.tap_id).catch(() => {});
      break;
    case 'calibration_updated':
      update((s) => {
        if (s.devices[e.device_id]) s.devices[e.device_id] = { ...s.devices[e.device_id], calibrationStale: true };
      });
      break;
    default:
      break;
  }
}

const TERMINAL = new Set(['succeeded', 'failed', 'expired']);

export async function issueCommand(tapId, command, extra = {}) {
  const issued = await api(`/taps/${seg(tapId)}/command`, { method: 'POST', body: { command, ...extra } });
  update((s) => { s.commands[issued.id] = { ...issued, tap_id: tapId }; });
  pollCommand(issued.id);
  return issued;
}

export async function refreshCommand(id) {
  if (!state.commands[id]) return null;
  try {
    const command = await api(`/commands/${seg(id)}`);
    update((s) => { s.commands[id] = { ...s.commands[id], ...command }; });
    return command;
  } catch {
    return null;
  }
}

/** Until the live event arrives (or if it never does), look every 2 s. */
async function pollCommand(id) {
  const deadline = Date.now() + 11 * 60_000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2000));
    const command = state.commands[id];
    if (!command || TERMINAL.has(command.state)) return;
    await refreshCommand(id);
  }
}

export async function acknowledgeAlert(alert) {
  const updated = await api(
    `/locations/${seg(alert.location_id)}/alerts/${seg(alert.kind)}/${seg(alert.entity)}/acknowledge`,
    { method: 'POST' },
  );
  update((s) => {
    s.alerts = s.alerts.map((a) => (a.kind === updated.kind && a.entity === updated.entity ? updated : a));
  });
  return updated;
}

export function staleAfterMs() {
  return (state.settings?.thresholds?.stale_readings_secs ?? 900) * 1000;
}
