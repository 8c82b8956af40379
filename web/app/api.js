// The REST API client. Same-origin cookies carry the session; every write echoes the session's
// CSRF token; errors are the API's problem+json, thrown as ApiError. Nothing here caches: the
// server is the only source of truth (the service worker never caches /api/ either).

let csrfToken = null;
const unauthenticatedListeners = new Set();

export function setCsrfToken(token) {
  csrfToken = token;
}

/** Called when any request answers 401 (the session ended). */
export function onUnauthenticated(listener) {
  unauthenticatedListeners.add(listener);
  return () => unauthenticatedListeners.delete(listener);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    /** field → message, from a 422's `errors`. */
    this.fields = Object.fromEntries((problem?.errors || []).map((e) => [e.field, e.message]));
  }
}

/** Path segments: tap ids contain `#`. */
export const seg = (id) => encodeURIComponent(id);

export async function api(path, { method = 'GET', body, query, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let url = `/api/v1${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, v);
    const qs = params.toString();
    if (qs) url += `?${qs}`;
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { title: 'Offline', detail: 'The server cannot be reached right now.' });
  }
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    if (response.status === 401 && path !== '/auth/login') {
      for (const listener of unauthenticatedListeners) listener();
    }
    throw new ApiError(response.status, data);
  }
  return data;
}

/** Every page of a paginated list (`items`, `next_cursor`), up to `max` items. */
export async function all(path, query = {}, max = 2000) {
  const items = [];
  let cursor;
  do {
    const page = await api(path, { query: { ...query, limit: 500, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
