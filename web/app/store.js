// The app's state in one object, changed only through update(); components re-render through
// useStore(). Changes in one tick are coalesced into one render.
import { useEffect, useReducer } from 'preact/hooks';

export const state = {
  booted: false,
  bootError: null,
  me: null,
  permissions: {},
  locations: [],
  locationId: null,
  live: { status: 'idle', retryAt: 0 },
  offline: typeof navigator !== 'undefined' && navigator.onLine === false,
  board: { loading: false, loaded: false, error: null },
  units: 'imperial',
  taps: {},
  tapOrder: [],
  devices: {},
  alerts: [],
  beers: {},
  reports: {},
  pouring: {},
  commands: {},
  settings: null,
  /** Bumped on every reading of a tap, so open charts can refresh. */
  readingsSeen: {},
};

const listeners = new Set();
let scheduled = false;

export function update(change) {
  change(state);
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(() => {
    scheduled = false;
    for (const listener of [...listeners]) listener();
  });
}

export function useStore() {
  const [, rerender] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    listeners.add(rerender);
    return () => listeners.delete(rerender);
  }, []);
  return state;
}

/** Whether the signed-in role may take `action` (the domain's matrix, served with the page). */
export function can(action) {
  const least = state.permissions[action];
  const role = state.me?.role;
  if (!least || !role) return false;
  const rank = { staff: 0, manager: 1, admin: 2 };
  return rank[role] >= rank[least];
}
