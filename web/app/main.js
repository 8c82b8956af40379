// Scale Sense dashboard: boots the session, draws the shell and the screen of the current route.
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { html } from './html.js';
import { onUnauthenticated } from './api.js';
import { can, update, useStore } from './store.js';
import { href, useRoute } from './router.js';
import { bootstrap, logout, selectLocation, signedOut } from './data.js';
import { LiveStatus } from './components.js';
import { Login } from './views/login.js';
import { Board } from './views/board.js';
import { TapDetail } from './views/tap.js';
import { Alerts } from './views/alerts.js';
import { Beers } from './views/beers.js';
import { Devices } from './views/devices.js';
import { Settings } from './views/settings.js';
import { Users } from './views/users.js';
import { Reports } from './views/reports.js';
import { Tv } from './views/tv.js';

const SCREENS = [
  { name: 'board', label: 'Taps', view: Board, allowed: () => true },
  { name: 'alerts', label: 'Alerts', view: Alerts, allowed: () => true },
  { name: 'beers', label: 'Beers & kegs', view: Beers, allowed: () => true },
  { name: 'devices', label: 'Scales', view: Devices, allowed: () => true },
  { name: 'reports', label: 'Reports', view: Reports, allowed: () => can('view_reports') },
  { name: 'settings', label: 'Settings', view: Settings, allowed: () => can('manage_settings') },
  { name: 'users', label: 'Users', view: Users, allowed: () => can('manage_users') },
];

function Nav({ current }) {
  const s = useStore();
  const open = s.alerts.filter((a) => a.state === 'active' || a.state === 'escalated').length;
  return html`<nav class="nav" aria-label="Screens">
    ${SCREENS.filter((x) => x.allowed()).map((x) => html`<a key=${x.name} href=${href(x.name)}
        class=${current === x.name ? 'on' : ''} aria-current=${current === x.name ? 'page' : undefined}
        data-nav=${x.name}>${x.label}${x.name === 'alerts' && open ? html` <span class="count" data-testid="alert-count">${open}</span>` : null}</a>`)}
    <a href=${href('tv')} data-nav="tv">TV board</a>
  </nav>`;
}

function Header() {
  const s = useStore();
  return html`<header class="top">
    <a class="brand" href="#/">Scale Sense</a>
    ${s.locations.length > 1
      ? html`<select class="location" aria-label="Location" value=${s.locationId}
          onChange=${(e) => selectLocation(e.currentTarget.value)}>
          ${s.locations.map((l) => html`<option key=${l.id} value=${l.id}>${l.name}</option>`)}
        </select>`
      : html`<span class="location">${s.locations[0]?.name || ''}</span>`}
    <span class="spacer"></span>
    <${LiveStatus} />
    <span class="who" title=${s.me?.name}>${s.me?.name} · ${s.me?.role}</span>
    <button type="button" class="link" onClick=${logout}>Log out</button>
  </header>`;
}

function App() {
  const s = useStore();
  const route = useRoute();
  useEffect(() => {
    bootstrap();
    const offline = () => update((st) => { st.offline = !navigator.onLine; });
    window.addEventListener('online', offline);
    window.addEventListener('offline', offline);
    const off = onUnauthenticated(signedOut);
    return () => {
      off();
      window.removeEventListener('online', offline);
      window.removeEventListener('offline', offline);
    };
  }, []);
  if (!s.booted) return html`<p class="boot">Loading Scale Sense…</p>`;
  if (!s.me) {
    return html`<${Login} note=${s.bootError || (s.offline ? 'You are offline: signing in needs the server.' : null)} />`;
  }
  if (s.locations.length === 0) {
    return html`<${Header} /><main class="content"><p class="empty">Your account has no location you may see.</p></main>`;
  }
  if (route.name === 'tv') return html`<${Tv} />`;
  let screen;
  if (route.name === 'tap' && route.args[0]) {
    screen = html`<${TapDetail} key=${route.args[0]} id=${route.args[0]} />`;
  } else {
    const found = SCREENS.find((x) => x.name === route.name && x.allowed()) || SCREENS[0];
    screen = html`<${found.view} />`;
  }
  return html`<div class="shell">
    <${Header} />
    <${Nav} current=${route.name === 'tap' ? 'board' : route.name} />
    ${s.offline ? html`<p class="banner" role="status">Offline: showing the last data; it updates when the connection returns.</p>` : null}
    <main class="content">${screen}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch(() => {
    // Without a service worker the app still works online; only the offline shell is missing.
  });
}
