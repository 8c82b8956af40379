// Scale Sense service worker: keeps the app shell (this version's files) for offline use.
// Live data is never cached: /api/ always goes to the network, so nothing stale is ever shown
// as current. The server fills in VERSION and SHELL when it serves this file.
const VERSION = '{{VERSION}}';
const SHELL = {{SHELL}};
const CACHE = `scalesense-${VERSION}`;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(
        keys.filter((k) => k.startsWith('scalesense-') && k !== CACHE).map((k) => caches.delete(k)),
      ))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/api/')) return;
  if (request.mode === 'navigate') {
    // The page itself: fresh when online (it names the current version), the kept one offline.
    event.respondWith(fetch(request).catch(() => caches.match('/', { cacheName: CACHE })));
    return;
  }
  if (url.pathname.startsWith('/assets/') || url.pathname === '/manifest.webmanifest') {
    // Versioned files never change: the kept copy is as good as the network's.
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
  }
});
