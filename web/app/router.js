// Hash routes (`#/tap/loc-001%23TAP%2301`): a static page needs no server-side fallback, and the
// offline shell serves every screen.
import { useEffect, useState } from 'preact/hooks';

export function parseRoute(hash = location.hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || 'board', args: parts.slice(1) };
}

export const href = (...parts) => `#/${parts.map(encodeURIComponent).join('/')}`;

export function navigate(...parts) {
  location.hash = href(...parts);
}

export function useRoute() {
  const [route, setRoute] = useState(parseRoute());
  useEffect(() => {
    const changed = () => setRoute(parseRoute());
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);
  return route;
}
