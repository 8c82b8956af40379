//! `GET /api/v1/ws`: the dashboard's live events (seed 001's list; payloads and rules in
//! `docs/contract.md`, "WebSocket events").
//!
//! A connection authenticates with the session cookie on the upgrade request (only when the
//! request comes from this site's own pages: a cross-site `Origin` never gets the cookie's
//! rights), with `Authorization: Bearer <token>` on the upgrade, or with
//! `{"action":"auth","token":"…"}` as its first message within [`WsConfig::auth_timeout`]; else it
//! is closed with [`close_code::UNAUTHENTICATED`]. It then receives a `hello` message and the
//! events of every location its user may see (or the ones it named with `?location=`), a
//! `ping` every [`WsConfig::ping_interval`], and nothing else.
//!
//! What this module must never do: let one client hold memory or delay anybody else. Every
//! connection has a bounded outgoing queue and a write timeout; a client that does not keep up
//! is disconnected ([`close_code::TOO_SLOW`]) rather than buffered for, and one that stops
//! answering pings is reaped. Credentials are re-checked every
//! [`WsConfig::revalidate_interval`], so a logged-out or demoted user stops receiving events.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream::{SelectAll, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use scalesense_domain::roles::Role;
use scalesense_proto::LocationId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tokio_util::sync::CancellationToken;

use crate::feed::{LiveFeed, LiveItem, LiveSubscription};

/// The WebSocket's path.
pub const PATH: &str = "/api/v1/ws";

/// Close codes the server uses (RFC 6455 §7.4: 4000–4999 are the application's).
pub mod close_code {
    /// The server is shutting down; reconnect (with backoff).
    pub const GOING_AWAY: u16 = 1001;
    /// Too many connections right now; reconnect later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// A client message that is not what the protocol allows.
    pub const BAD_MESSAGE: u16 = 4400;
    /// No valid credentials within the time allowed, or the session ended: log in again.
    pub const UNAUTHENTICATED: u16 = 4401;
    /// The user's access changed (role or locations): reconnect to get the new set.
    pub const ACCESS_CHANGED: u16 = 4403;
    /// `?location=` named a location the user may not see (or that does not exist).
    pub const UNKNOWN_LOCATION: u16 = 4404;
    /// No answer to the last ping: the connection is presumed dead.
    pub const NO_PONG: u16 = 4408;
    /// The client did not read its events fast enough; reconnect and reload from the REST API.
    pub const TOO_SLOW: u16 = 4429;
}

/// Who is on the other end of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The customer account (for logs).
    pub account: String,
    /// The user's id, or the API token's, for logs.
    pub user: String,
    pub role: Role,
    /// Every location whose events this viewer may receive (already resolved: "all of the
    /// account's" is the list of them).
    pub locations: Vec<LocationId>,
}

/// Resolves credentials to a [`Viewer`]; implemented by the server over the REST API's auth.
/// `None` means "not valid" (unknown, expired, revoked); implementations log their own errors.
#[async_trait]
pub trait WsAuth: Send + Sync + fmt::Debug + 'static {
    /// `cookie_header` is the upgrade request's whole `Cookie` header.
    async fn authenticate_cookie(&self, cookie_header: &str) -> Option<Viewer>;
    /// An API token (or any bearer credential the server accepts).
    async fn authenticate_token(&self, token: &str) -> Option<Viewer>;
}

/// Limits and timings of the WebSocket. `Default` is production's.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// How long an unauthenticated connection may wait before its `auth` message (issue: 5 s).
    pub auth_timeout: Duration,
    /// A `ping` event and a protocol ping go out this often; a connection that sent nothing
    /// since the previous ping is closed ([`close_code::NO_PONG`]).
    pub ping_interval: Duration,
    /// How often a connection's credentials are checked again.
    pub revalidate_interval: Duration,
    /// Messages waiting to be written to one client; more means it is too slow.
    pub queue_capacity: usize,
    /// Longest a single write to one client may take.
    pub write_timeout: Duration,
    /// Open connections accepted at once; more are answered `503` before upgrading.
    pub max_connections: usize,
    /// Largest message a client may send (it only ever sends `auth`).
    pub max_client_message: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            auth_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(30),
            revalidate_interval: Duration::from_mins(5),
            queue_capacity: 256,
            write_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_client_message: 4096,
        }
    }
}

/// What the WebSocket handler reaches. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WsState {
    auth: Arc<dyn WsAuth>,
    feed: Arc<dyn LiveFeed>,
    config: Arc<WsConfig>,
    shutdown: CancellationToken,
    open: Arc<AtomicUsize>,
}

impl WsState {
    /// `shutdown`: when cancelled, every connection is closed with
    /// [`close_code::GOING_AWAY`] (upgraded connections outlive the HTTP server's graceful
    /// shutdown otherwise).
    pub fn new(
        auth: Arc<dyn WsAuth>,
        feed: Arc<dyn LiveFeed>,
        config: WsConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            auth,
            feed,
            config: Arc::new(config),
            shutdown,
            open: Arc::default(),
        }
    }

    /// Connections open right now (authenticated or still authenticating).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// The WebSocket's router: `GET /api/v1/ws`.
pub fn router(state: WsState) -> Router {
    Router::new().route(PATH, get(upgrade)).with_state(state)
}

/// A slot among [`WsConfig::max_connections`], given back on drop.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let before = open.fetch_add(1, Ordering::SeqCst);
        if before >= max {
            open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        metrics::gauge!("scalesense_ws_connections").increment(1.0);
        Some(Self(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("scalesense_ws_connections").decrement(1.0);
    }
}

/// The credential a connection authenticated with, kept to check it again later.
#[derive(Clone)]
enum Credential {
    Cookie(String),
    Token(String),
}

impl fmt::Debug for Credential {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cookie(_) => "Cookie(..)",
            Self::Token(_) => "Token(..)",
        })
    }
}

impl Credential {
    async fn check(&self, auth: &dyn WsAuth) -> Option<Viewer> {
        match self {
            Self::Cookie(c) => auth.authenticate_cookie(c).await,
            Self::Token(t) => auth.authenticate_token(t).await,
        }
    }
}

/// Why a connection ends: the close frame to send, if one can still be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ending {
    code: u16,
    reason: &'static str,
}

impl Ending {
    const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }

    fn frame(&self) -> Message {
        Message::Close(Some(CloseFrame {
            code: self.code,
            reason: Utf8Bytes::from_static(self.reason),
        }))
    }

    /// The `reason` label of the closed-connections counter.
    fn label(&self) -> &'static str {
        match self.code {
            close_code::GOING_AWAY => "shutdown",
            close_code::BAD_MESSAGE => "bad_message",
            close_code::UNAUTHENTICATED => "unauthenticated",
            close_code::ACCESS_CHANGED => "access_changed",
            close_code::UNKNOWN_LOCATION => "unknown_location",
            close_code::NO_PONG => "no_pong",
            close_code::TOO_SLOW => "too_slow",
            1000 => "client",
            _ => "other",
        }
    }
}

const AUTH_TIMED_OUT: Ending = Ending::new(
    close_code::UNAUTHENTICATED,
    "authentication required: log in, or send {\"action\":\"auth\",\"token\":\"...\"} first",
);
const AUTH_REFUSED: Ending = Ending::new(
    close_code::UNAUTHENTICATED,
    "invalid or expired credentials",
);
const AUTH_EXPECTED: Ending = Ending::new(
    close_code::UNAUTHENTICATED,
    "the first message must be {\"action\":\"auth\",\"token\":\"...\"}",
);
const SESSION_ENDED: Ending = Ending::new(close_code::UNAUTHENTICATED, "session ended");
const ACCESS_CHANGED: Ending = Ending::new(close_code::ACCESS_CHANGED, "access changed: reconnect");
const UNKNOWN_LOCATION: Ending = Ending::new(
    close_code::UNKNOWN_LOCATION,
    "unknown location in ?location=",
);
const NO_PONG: Ending = Ending::new(close_code::NO_PONG, "no answer to ping");
const TOO_SLOW: Ending = Ending::new(
    close_code::TOO_SLOW,
    "too slow: events were not read in time; reconnect and reload",
);
const SHUTTING_DOWN: Ending = Ending::new(close_code::GOING_AWAY, "server shutting down");
const FEED_CLOSED: Ending = Ending::new(close_code::GOING_AWAY, "event feed closed");
const BAD_MESSAGE: Ending = Ending::new(close_code::BAD_MESSAGE, "unexpected binary message");
const CLIENT_GONE: Ending = Ending::new(1000, "closed by client");

/// Messages a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum ClientMessage {
    Auth { token: String },
}

/// The first message after authentication.
#[derive(Debug, Serialize)]
struct Hello<'a> {
    r#type: &'static str,
    user: &'a str,
    role: Role,
    locations: &'a [LocationId],
    ping_interval_s: u64,
}

const PING_EVENT: &str = r#"{"type":"ping"}"#;

async fn upgrade(
    State(state): State<WsState>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(slot) = Slot::take(&state.open, state.config.max_connections) else {
        metrics::counter!("scalesense_ws_refused_total").increment(1);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            "too many live connections; try again later",
        )
            .into_response();
    };
    let wanted = requested_locations(&uri);
    let authenticated = authenticate_upgrade(&state, &headers).await;
    let limit = state.config.max_client_message;
    ws
        // Clients send one small message; tungstenite allocates its read buffer eagerly, so a
        // small one keeps idle connections cheap.
        .read_buffer_size(limit)
        .max_message_size(limit)
        .max_frame_size(limit)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .on_upgrade(move |socket| async move {
            let ending = run(socket, state, authenticated, wanted).await;
            metrics::counter!("scalesense_ws_closed_total", "reason" => ending.label())
                .increment(1);
            drop(slot);
        })
}

/// Credentials on the upgrade request: a bearer token, else the session cookie from a
/// same-origin page.
async fn authenticate_upgrade(
    state: &WsState,
    headers: &HeaderMap,
) -> Option<(Viewer, Credential)> {
    if let Some(token) = bearer(headers) {
        let credential = Credential::Token(token.to_owned());
        return credential
            .check(state.auth.as_ref())
            .await
            .map(|v| (v, credential));
    }
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .filter(|c| !c.is_empty())?;
    if !same_origin(headers) {
        tracing::debug!("cross-origin WebSocket upgrade: its cookie is not used");
        return None;
    }
    let credential = Credential::Cookie(cookie.to_owned());
    credential
        .check(state.auth.as_ref())
        .await
        .map(|v| (v, credential))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether the request's `Origin` (if any) is this server itself: a browser always sends
/// `Origin` on a WebSocket upgrade, so a page of another site can be told apart. Clients that
/// are not browsers send none and are not affected.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// `?location=loc-001&location=loc-002` or `?location=loc-001,loc-002`: `None` for all the
/// viewer's locations; an id that does not parse is kept as `Err` so the connection is refused.
fn requested_locations(uri: &Uri) -> Option<Vec<Result<LocationId, String>>> {
    let query = uri.query()?;
    let wanted: Vec<_> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "location")
        .flat_map(|(_, v)| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| LocationId::try_from(s).map_err(|_| s.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    (!wanted.is_empty()).then_some(wanted)
}

/// The locations to subscribe to, or `None` when one asked for is not the viewer's.
fn choose_locations(
    viewer: &Viewer,
    wanted: Option<Vec<Result<LocationId, String>>>,
) -> Option<Vec<LocationId>> {
    let Some(wanted) = wanted else {
        return Some(viewer.locations.clone());
    };
    let mut chosen = Vec::with_capacity(wanted.len());
    for location in wanted {
        let location = location.ok()?;
        if !viewer.locations.contains(&location) {
            return None;
        }
        if !chosen.contains(&location) {
            chosen.push(location);
        }
    }
    Some(chosen)
}

/// An event's text as a WebSocket message without copying it.
fn text_message(text: Arc<str>) -> Message {
    struct Owner(Arc<str>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    // Valid UTF-8 by construction (it was a `str`), so the check cannot fail.
    let bytes = Bytes::from_owner(Owner(text));
    match Utf8Bytes::try_from(bytes) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Text(Utf8Bytes::from_static("")),
    }
}

type Sink = SplitSink<WebSocket, Message>;
type Source = SplitStream<WebSocket>;

/// One connection, from upgrade to close. Returns why it ended.
async fn run(
    socket: WebSocket,
    state: WsState,
    authenticated: Option<(Viewer, Credential)>,
    wanted: Option<Vec<Result<LocationId, String>>>,
) -> Ending {
    let (mut sink, mut source) = socket.split();
    let (viewer, credential) = match authenticated {
        Some(found) => found,
        None => match first_message_auth(&mut source, &state).await {
            Ok(found) => found,
            Err(ending) => {
                send_close(&mut sink, &ending, state.config.write_timeout).await;
                return ending;
            }
        },
    };
    let Some(locations) = choose_locations(&viewer, wanted) else {
        send_close(&mut sink, &UNKNOWN_LOCATION, state.config.write_timeout).await;
        return UNKNOWN_LOCATION;
    };
    // Subscribe before saying hello: a client that loads state from REST after `hello` misses
    // nothing committed after that.
    let mut events: SelectAll<LiveSubscription> = futures_util::stream::select_all(
        locations
            .iter()
            .map(|location| state.feed.subscribe(location)),
    );
    let hello = Hello {
        r#type: "hello",
        user: &viewer.user,
        role: viewer.role,
        locations: &locations,
        ping_interval_s: state.config.ping_interval.as_secs(),
    };
    let hello = match serde_json::to_string(&hello) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode hello");
            return FEED_CLOSED;
        }
    };
    tracing::debug!(account = %viewer.account, user = %viewer.user, locations = locations.len(), "live connection");

    let (queue, outgoing) = mpsc::channel(state.config.queue_capacity.max(1));
    let (close_tx, close_rx) = oneshot::channel();
    let mut writer = tokio::spawn(write_loop(
        sink,
        outgoing,
        close_rx,
        state.config.write_timeout,
    ));
    let ending = if queue.try_send(Message::Text(hello.into())).is_err() {
        TOO_SLOW
    } else {
        serve(
            &state,
            &mut source,
            &mut events,
            &queue,
            &mut writer,
            &viewer,
            &credential,
            &locations,
        )
        .await
    };
    drop(events);
    if ending == TOO_SLOW || ending == NO_PONG {
        tracing::info!(user = %viewer.user, reason = ending.reason, "live connection dropped");
    }
    finish(writer, close_tx, &ending, state.config.write_timeout).await;
    ending
}

/// Waits for `{"action":"auth","token":…}`.
async fn first_message_auth(
    source: &mut Source,
    state: &WsState,
) -> Result<(Viewer, Credential), Ending> {
    let deadline = sleep(state.config.auth_timeout);
    tokio::pin!(deadline);
    loop {
        let frame = tokio::select! {
            () = state.shutdown.cancelled() => return Err(SHUTTING_DOWN),
            () = &mut deadline => return Err(AUTH_TIMED_OUT),
            frame = source.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                let Ok(ClientMessage::Auth { token }) = serde_json::from_str(&text) else {
                    return Err(AUTH_EXPECTED);
                };
                let credential = Credential::Token(token);
                return match credential.check(state.auth.as_ref()).await {
                    Some(viewer) => Ok((viewer, credential)),
                    None => Err(AUTH_REFUSED),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Binary(_))) => return Err(AUTH_EXPECTED),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(CLIENT_GONE),
        }
    }
}

/// The authenticated connection's loop: client frames, events, pings, re-checks.
#[allow(clippy::too_many_arguments)]
async fn serve(
    state: &WsState,
    source: &mut Source,
    events: &mut SelectAll<LiveSubscription>,
    queue: &mpsc::Sender<Message>,
    writer: &mut JoinHandle<Ending>,
    viewer: &Viewer,
    credential: &Credential,
    locations: &[LocationId],
) -> Ending {
    let config = &state.config;
    let mut ping = interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut recheck = interval_at(
        Instant::now() + config.revalidate_interval,
        config.revalidate_interval,
    );
    recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard_since_ping = true;
    loop {
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => return SHUTTING_DOWN,
            ended = &mut *writer => return ended.unwrap_or(CLIENT_GONE),
            frame = source.next() => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return CLIENT_GONE,
                Some(Ok(Message::Binary(_))) => return BAD_MESSAGE,
                // Text (a repeated `auth`), pings and pongs all prove the client is alive.
                Some(Ok(_)) => heard_since_ping = true,
            },
            item = events.next() => match item {
                Some(LiveItem::Event(text)) => {
                    if queue.try_send(text_message(text)).is_err() {
                        return TOO_SLOW;
                    }
                }
                Some(LiveItem::Lagged(missed)) => {
                    tracing::debug!(missed, "live connection lagged behind the feed");
                    return TOO_SLOW;
                }
                None => return FEED_CLOSED,
            },
            _ = ping.tick() => {
                if !heard_since_ping {
                    return NO_PONG;
                }
                heard_since_ping = false;
                let ping_frame = Message::Ping(Bytes::new());
                let ping_event = Message::Text(Utf8Bytes::from_static(PING_EVENT));
                if queue.try_send(ping_frame).is_err() || queue.try_send(ping_event).is_err() {
                    return TOO_SLOW;
                }
            },
            _ = recheck.tick() => match credential.check(state.auth.as_ref()).await {
                None => return SESSION_ENDED,
                Some(now) if now.role != viewer.role
                    || !locations.iter().all(|l| now.locations.contains(l)) => {
                    return ACCESS_CHANGED;
                }
                Some(_) => {}
            },
        }
    }
}

/// Writes queued messages in order, each within `write_timeout`; on a close request it sends
/// the close frame (bounded by the same timeout) and stops. Ends early when a write times out
/// ([`TOO_SLOW`]) or fails (the client is gone), which the connection loop sees.
async fn write_loop(
    mut sink: Sink,
    mut outgoing: mpsc::Receiver<Message>,
    mut close: oneshot::Receiver<Message>,
    write_timeout: Duration,
) -> Ending {
    loop {
        let message = tokio::select! {
            biased;
            frame = &mut close => return send_final(&mut sink, frame.ok(), write_timeout).await,
            message = outgoing.recv() => match message {
                Some(message) => message,
                None => return CLIENT_GONE,
            },
        };
        tokio::select! {
            biased;
            frame = &mut close => return send_final(&mut sink, frame.ok(), write_timeout).await,
            written = timeout(write_timeout, sink.send(message)) => match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return CLIENT_GONE,
                Err(_) => return TOO_SLOW,
            },
        }
    }
}

async fn send_final(sink: &mut Sink, frame: Option<Message>, write_timeout: Duration) -> Ending {
    if let Some(frame) = frame {
        let _ = timeout(write_timeout, sink.send(frame)).await;
    }
    CLIENT_GONE
}

/// Asks the writer to send the close frame, and waits for it a bounded time.
async fn finish(
    mut writer: JoinHandle<Ending>,
    close: oneshot::Sender<Message>,
    ending: &Ending,
    write_timeout: Duration,
) {
    // The writer may have ended first (that is how a slow or vanished client is noticed); its
    // handle was then already awaited and must not be polled again.
    if writer.is_finished() {
        return;
    }
    let _ = close.send(ending.frame());
    if timeout(write_timeout + Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

async fn send_close(sink: &mut Sink, ending: &Ending, write_timeout: Duration) {
    let _ = timeout(write_timeout, sink.send(ending.frame())).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn loc(s: &str) -> LocationId {
        LocationId::try_from(s).unwrap()
    }

    fn viewer(locations: &[&str]) -> Viewer {
        Viewer {
            account: "demo".into(),
            user: "u1".into(),
            role: Role::Staff,
            locations: locations.iter().map(|l| loc(l)).collect(),
        }
    }

    #[test]
    fn origins_must_match_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h), "no Origin: not a browser");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9999"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
        h.remove(header::HOST);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(!same_origin(&h));
    }

    #[test]
    fn locations_are_narrowed_only_to_visible_ones() {
        let v = viewer(&["loc-001", "loc-002"]);
        let uri: Uri = "/api/v1/ws".parse().unwrap();
        assert_eq!(
            choose_locations(&v, requested_locations(&uri)),
            Some(v.locations.clone())
        );
        let uri: Uri = "/api/v1/ws?location=loc-002,loc-002".parse().unwrap();
        assert_eq!(
            choose_locations(&v, requested_locations(&uri)),
            Some(vec![loc("loc-002")])
        );
        let uri: Uri = "/api/v1/ws?location=loc-003".parse().unwrap();
        assert_eq!(choose_locations(&v, requested_locations(&uri)), None);
        let uri: Uri = "/api/v1/ws?location=not%20an%20id".parse().unwrap();
        assert_eq!(choose_locations(&v, requested_locations(&uri)), None);
    }

    #[test]
    fn bearer_tokens_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn event_texts_are_sent_as_they_are() {
        let Message::Text(t) = text_message(Arc::from(r#"{"type":"ping"}"#)) else {
            panic!("not text");
        };
        assert_eq!(t.as_str(), PING_EVENT);
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        for ending in [
            AUTH_TIMED_OUT,
            AUTH_REFUSED,
            AUTH_EXPECTED,
            SESSION_ENDED,
            ACCESS_CHANGED,
            UNKNOWN_LOCATION,
            NO_PONG,
            TOO_SLOW,
            SHUTTING_DOWN,
            FEED_CLOSED,
            BAD_MESSAGE,
            CLIENT_GONE,
        ] {
            // RFC 6455 §5.5: a control frame's payload is at most 125 bytes (2 for the code).
            assert!(ending.reason.len() <= 123, "{}", ending.reason);
        }
    }
}
