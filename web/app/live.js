// The live connection (GET /api/v1/ws, docs/contract.md "WebSocket events"). The session cookie
// authenticates it. It reconnects with exponential backoff and jitter, treats a silent
// connection as dead (the server pings every `ping_interval_s`), and after every (re)connect
// asks the app to resync from the REST API: events missed while away are never replayed.

const CLOSE_UNAUTHENTICATED = 4401;
const MIN_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;

export function startLive({ onEvent, onStatus, onResync, onAuthLost }) {
  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let watchdog = null;
  let lastHeard = 0;
  let silenceLimitMs = 75000;
  let stopped = false;

  const status = (name, extra = {}) => onStatus({ status: name, ...extra });

  function connect() {
    clearTimeout(retryTimer);
    if (stopped) return;
    status('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
    const current = socket;
    socket.onmessage = (message) => {
      if (current !== socket) return;
      lastHeard = Date.now();
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.type === 'hello') {
        attempt = 0;
        silenceLimitMs = Math.max(10000, (event.ping_interval_s || 30) * 2500);
        status('live');
        onResync();
      } else if (event.type !== 'ping') {
        onEvent(event);
      }
    };
    socket.onclose = (close) => {
      if (current !== socket) return;
      socket = null;
      if (stopped) return;
      if (close.code === CLOSE_UNAUTHENTICATED) {
        status('closed');
        onAuthLost();
        return;
      }
      scheduleRetry();
    };
  }

  function scheduleRetry() {
    const base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** attempt);
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    attempt += 1;
    status('offline', { retryAt: Date.now() + delay });
    retryTimer = setTimeout(connect, delay);
  }

  function checkSilence() {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastHeard > silenceLimitMs) {
      // Half-open connection: nothing arrived, not even a ping. Start over.
      const dead = socket;
      socket = null;
      dead.onclose = null;
      dead.close();
      scheduleRetry();
    }
  }

  const reconnectNow = () => {
    if (!socket && !stopped) {
      attempt = 0;
      connect();
    }
  };

  lastHeard = Date.now();
  watchdog = setInterval(checkSilence, 5000);
  window.addEventListener('online', reconnectNow);
  connect();

  return {
    stop() {
      stopped = true;
      clearTimeout(retryTimer);
      clearInterval(watchdog);
      window.removeEventListener('online', reconnectNow);
      if (socket) {
        socket.onclose = null;
        socket.close(1000, 'logged out');
        socket = null;
      }
      status('idle');
    },
  };
}
