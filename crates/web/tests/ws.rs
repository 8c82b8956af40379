//! The WebSocket at its boundary: the real router on a real socket, a real WebSocket client,
//! and fake credentials and a [`LiveHub`] standing in for the server's auth and event bus.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use scalesense_domain::roles::Role;
use scalesense_proto::LocationId;
use scalesense_web::{
    LiveFeed, LiveHub, LiveItem, LiveSubscription, Viewer, WsAuth, WsConfig, WsState, close_code,
};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

fn loc(s: &str) -> LocationId {
    LocationId::try_from(s).unwrap()
}

fn viewer(user: &str, role: Role, locations: &[&str]) -> Viewer {
    Viewer {
        account: "demo".into(),
        user: user.into(),
        role,
        locations: locations.iter().map(|l| loc(l)).collect(),
    }
}

/// Credentials by cookie header and by token; either can be revoked while connected.
#[derive(Debug, Default)]
struct FakeAuth {
    cookies: Mutex<HashMap<String, Viewer>>,
    tokens: Mutex<HashMap<String, Viewer>>,
    checks: Mutex<Vec<String>>,
}

impl FakeAuth {
    fn with_cookie(self, cookie: &str, v: Viewer) -> Self {
        self.cookies.lock().unwrap().insert(cookie.into(), v);
        self
    }

    fn with_token(self, token: &str, v: Viewer) -> Self {
        self.tokens.lock().unwrap().insert(token.into(), v);
        self
    }

    fn revoke_cookie(&self, cookie: &str) {
        self.cookies.lock().unwrap().remove(cookie);
    }
}

#[async_trait]
impl WsAuth for FakeAuth {
    async fn authenticate_cookie(&self, cookie_header: &str) -> Option<Viewer> {
        self.checks
            .lock()
            .unwrap()
            .push(format!("cookie:{cookie_header}"));
        self.cookies.lock().unwrap().get(cookie_header).cloned()
    }

    async fn authenticate_token(&self, token: &str) -> Option<Viewer> {
        self.checks.lock().unwrap().push(format!("token:{token}"));
        self.tokens.lock().unwrap().get(token).cloned()
    }
}

struct Server {
    addr: SocketAddr,
    /// Where `publish` goes (the feed, unless a test brought its own).
    hub: Arc<LiveHub>,
    auth: Arc<FakeAuth>,
    state: WsState,
    shutdown: CancellationToken,
}

/// Production's settings; a test shortens the one timing it is about.
fn quick() -> WsConfig {
    WsConfig::default()
}

/// A short wait for credentials, for the tests that expect it to run out.
fn impatient() -> WsConfig {
    WsConfig {
        auth_timeout: Duration::from_millis(300),
        ..WsConfig::default()
    }
}

async fn start(auth: FakeAuth, config: WsConfig) -> Server {
    let hub = Arc::new(LiveHub::new(256));
    let mut server = start_with(auth, config, hub.clone()).await;
    server.hub = hub;
    server
}

/// Panics anywhere in this test binary, connection tasks included (their panics would
/// otherwise vanish inside the HTTP server).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

async fn start_with(auth: FakeAuth, config: WsConfig, feed: Arc<dyn LiveFeed>) -> Server {
    count_panics();
    let auth = Arc::new(auth);
    let shutdown = CancellationToken::new();
    let state = WsState::new(auth.clone(), feed, config, shutdown.clone());
    // The server nests the REST API under /api/v1 with its own fallback; the WebSocket route
    // must still win for its path when the two routers are merged.
    let api = axum::Router::new()
        .route("/locations", axum::routing::get(|| async { "api" }))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "api fallback") });
    let app = axum::Router::new()
        .nest("/api/v1", api)
        .merge(scalesense_web::router(state.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        addr,
        hub: Arc::new(LiveHub::default()),
        auth,
        state,
        shutdown,
    }
}

impl Server {
    fn url(&self, query: &str) -> String {
        format!("ws://{}/api/v1/ws{query}", self.addr)
    }

    /// Connects with the given extra headers (`Cookie`, `Origin`, `Authorization`).
    async fn connect(&self, query: &str, headers: &[(&'static str, &str)]) -> Client {
        let mut request = self.url(query).into_client_request().unwrap();
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).unwrap());
        }
        timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .unwrap()
            .unwrap()
            .0
    }

    /// A browser on this server's own page with a session cookie.
    async fn browser(&self, cookie: &str) -> Client {
        let origin = format!("http://{}", self.addr);
        self.connect("", &[("cookie", cookie), ("origin", &origin)])
            .await
    }

    fn publish(&self, location: &str, text: &str) -> usize {
        self.hub.publish(&loc(location), Arc::from(text))
    }

    async fn open_connections_become(&self, n: usize) {
        timeout(WAIT, async {
            while self.state.open_connections() != n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "open connections stayed {} instead of {n}",
                self.state.open_connections()
            )
        });
    }
}

/// The next text message as JSON, skipping protocol pings and pongs.
async fn next_json(ws: &mut Client) -> Value {
    loop {
        let frame = timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a valid frame");
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next message that is not a `ping` event.
async fn next_event(ws: &mut Client) -> Value {
    loop {
        let value = next_json(ws).await;
        if value["type"] != "ping" {
            return value;
        }
    }
}

/// Reads until the server closes; returns the close code and reason.
async fn closed(ws: &mut Client) -> (u16, String) {
    timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None)) | Err(_)) | None => {
                    return (1006, String::new());
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection in time")
}

#[tokio::test]
async fn a_session_cookie_authenticates_and_only_visible_locations_are_delivered() {
    let server = start(
        FakeAuth::default()
            .with_cookie(
                "scalesense_session=staff",
                viewer("staff", Role::Staff, &["loc-001"]),
            )
            .with_cookie(
                "scalesense_session=boss",
                viewer("boss", Role::Manager, &["loc-001", "loc-002"]),
            ),
        quick(),
    )
    .await;
    let mut staff = server.browser("scalesense_session=staff").await;
    let hello = next_json(&mut staff).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["user"], "staff");
    assert_eq!(hello["role"], "staff");
    assert_eq!(hello["locations"], serde_json::json!(["loc-001"]));
    assert_eq!(hello["ping_interval_s"], 30);
    let mut boss = server.browser("scalesense_session=boss").await;
    assert_eq!(
        next_json(&mut boss).await["locations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    assert_eq!(server.publish("loc-002", r#"{"type":"reading","n":1}"#), 1);
    assert_eq!(server.publish("loc-001", r#"{"type":"reading","n":2}"#), 2);
    // The staff user never sees loc-002's event: the first thing it gets is loc-001's.
    assert_eq!(next_event(&mut staff).await["n"], 2);
    assert_eq!(next_event(&mut boss).await["n"], 1);
    assert_eq!(next_event(&mut boss).await["n"], 2);
    assert_eq!(server.state.open_connections(), 2);
}

#[tokio::test]
async fn a_token_in_the_first_message_authenticates() {
    let server = start(
        FakeAuth::default().with_token("tok-1", viewer("tok", Role::Admin, &["loc-001"])),
        quick(),
    )
    .await;
    let mut ws = server.connect("", &[]).await;
    ws.send(Message::text(r#"{"action":"auth","token":"tok-1"}"#))
        .await
        .unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["role"], "admin");
    server.publish("loc-001", r#"{"type":"tap_updated"}"#);
    assert_eq!(next_event(&mut ws).await["type"], "tap_updated");
}

#[tokio::test]
async fn a_bearer_token_on_the_upgrade_authenticates() {
    let server = start(
        FakeAuth::default().with_token("tok-1", viewer("tok", Role::Staff, &["loc-001"])),
        quick(),
    )
    .await;
    let mut ws = server
        .connect("", &[("authorization", "Bearer tok-1")])
        .await;
    assert_eq!(next_json(&mut ws).await["type"], "hello");
}

#[tokio::test]
async fn without_credentials_the_connection_is_closed_after_the_auth_timeout() {
    let server = start(FakeAuth::default(), impatient()).await;
    let started = tokio::time::Instant::now();
    let mut ws = server.connect("", &[]).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, close_code::UNAUTHENTICATED);
    assert!(reason.contains("authentication required"), "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.open_connections_become(0).await;
}

#[tokio::test]
async fn a_wrong_token_or_a_wrong_first_message_is_refused() {
    let server = start(FakeAuth::default(), quick()).await;
    let mut ws = server.connect("", &[]).await;
    ws.send(Message::text(r#"{"action":"auth","token":"nope"}"#))
        .await
        .unwrap();
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, close_code::UNAUTHENTICATED);
    assert_eq!(reason, "invalid or expired credentials");

    let mut ws = server.connect("", &[]).await;
    ws.send(Message::text(r#"{"hello":"there"}"#))
        .await
        .unwrap();
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, close_code::UNAUTHENTICATED);
    assert!(reason.contains("first message"), "{reason}");
}

#[tokio::test]
async fn a_cookie_from_another_sites_page_is_not_used() {
    let server = start(
        FakeAuth::default().with_cookie(
            "scalesense_session=staff",
            viewer("staff", Role::Staff, &["loc-001"]),
        ),
        impatient(),
    )
    .await;
    let mut ws = server
        .connect(
            "",
            &[
                ("cookie", "scalesense_session=staff"),
                ("origin", "http://evil.example"),
            ],
        )
        .await;
    assert_eq!(closed(&mut ws).await.0, close_code::UNAUTHENTICATED);
    assert!(
        server.auth.checks.lock().unwrap().is_empty(),
        "the cookie was never even looked up"
    );
}

#[tokio::test]
async fn locations_can_be_narrowed_but_never_widened() {
    let server = start(
        FakeAuth::default().with_cookie(
            "scalesense_session=boss",
            viewer("boss", Role::Manager, &["loc-001", "loc-002"]),
        ),
        quick(),
    )
    .await;
    let origin = format!("http://{}", server.addr);
    let headers = [
        ("cookie", "scalesense_session=boss"),
        ("origin", origin.as_str()),
    ];
    let mut narrow = server.connect("?location=loc-002", &headers).await;
    assert_eq!(
        next_json(&mut narrow).await["locations"],
        serde_json::json!(["loc-002"])
    );
    server.publish("loc-001", r#"{"n":1}"#);
    server.publish("loc-002", r#"{"n":2}"#);
    assert_eq!(next_event(&mut narrow).await["n"], 2);

    let mut wide = server.connect("?location=loc-009", &headers).await;
    assert_eq!(closed(&mut wide).await.0, close_code::UNKNOWN_LOCATION);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_and_nobody_else_waits() {
    let config = WsConfig {
        queue_capacity: 16,
        write_timeout: Duration::from_millis(500),
        ..quick()
    };
    let server = start(
        FakeAuth::default()
            .with_cookie(
                "scalesense_session=a",
                viewer("slow", Role::Staff, &["loc-001"]),
            )
            .with_cookie(
                "scalesense_session=b",
                viewer("fast", Role::Staff, &["loc-001"]),
            ),
        config,
    )
    .await;
    let mut slow = server.browser("scalesense_session=a").await;
    assert_eq!(next_json(&mut slow).await["type"], "hello");
    let fast = server.browser("scalesense_session=b").await;
    let (mut fast_tx, mut fast_rx) = fast.split();
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut expected = 0u64;
        while let Some(Ok(frame)) = fast_rx.next().await {
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).unwrap();
                if let Some(n) = value["n"].as_u64() {
                    assert_eq!(n, expected, "the fast client misses nothing, in order");
                    expected += 1;
                    seen_tx.send_replace(expected);
                }
            }
        }
        expected
    });
    // 32 KiB events: the slow client's socket buffers fill after a few MB.
    let padding = "x".repeat(32 * 1024);
    let mut sent = 0u64;
    let mut slow_dropped_after = None;
    'publishing: for _batch in 0..500 {
        // Bursts smaller than the queue: a client that reads keeps up with them.
        for _ in 0..8 {
            let receivers = server.publish(
                "loc-001",
                &format!(r#"{{"type":"reading","n":{sent},"pad":"{padding}"}}"#),
            );
            sent += 1;
            if receivers == 1 {
                // The slow connection gave up its subscription: it is being closed.
                slow_dropped_after = Some(sent);
                break 'publishing;
            }
        }
        // Pace the publisher by the fast reader only: the slow one must not hold anybody up.
        timeout(WAIT, seen.wait_for(|n| *n == sent))
            .await
            .expect("the fast client keeps up while the slow one stalls")
            .unwrap();
    }
    let dropped_after = slow_dropped_after.expect("the slow client was disconnected");
    assert!(dropped_after >= 16, "dropped after {dropped_after} events");
    server.open_connections_become(1).await;
    // The fast client is still served after the slow one went.
    assert_eq!(server.publish("loc-001", &format!(r#"{{"n":{sent}}}"#)), 1);
    timeout(WAIT, seen.wait_for(|n| *n == sent + 1))
        .await
        .unwrap()
        .unwrap();
    // The slow client, reading at last, finds its connection closed.
    let (code, _) = closed(&mut slow).await;
    assert!(
        code == close_code::TOO_SLOW || code == 1006,
        "closed with {code}"
    );
    fast_tx.close().await.unwrap();
    reader.await.unwrap();
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a connection task panicked"
    );
}

#[tokio::test]
async fn a_write_that_stalls_past_the_timeout_ends_the_connection() {
    // A queue too large to fill: the stalled write itself must end the connection.
    let config = WsConfig {
        queue_capacity: 100_000,
        write_timeout: Duration::from_millis(200),
        ..quick()
    };
    let server = start(
        FakeAuth::default().with_cookie(
            "scalesense_session=a",
            viewer("stalled", Role::Staff, &["loc-001"]),
        ),
        config,
    )
    .await;
    let mut ws = server.browser("scalesense_session=a").await;
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    let padding = "z".repeat(64 * 1024);
    for n in 0..2000 {
        if server.publish("loc-001", &format!(r#"{{"n":{n},"pad":"{padding}"}}"#)) == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    server.open_connections_become(0).await;
    let (code, _) = closed(&mut ws).await;
    assert!(
        code == close_code::TOO_SLOW || code == 1006,
        "closed with {code}"
    );
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a connection task panicked"
    );
}

#[tokio::test]
async fn pings_keep_live_clients_and_reap_dead_ones() {
    let config = WsConfig {
        ping_interval: Duration::from_millis(250),
        ..quick()
    };
    let server = start(
        FakeAuth::default()
            .with_cookie(
                "scalesense_session=a",
                viewer("live", Role::Staff, &["loc-001"]),
            )
            .with_cookie(
                "scalesense_session=b",
                viewer("dead", Role::Staff, &["loc-001"]),
            ),
        config,
    )
    .await;
    let mut live = server.browser("scalesense_session=a").await;
    assert_eq!(next_json(&mut live).await["type"], "hello");
    let mut dead = server.browser("scalesense_session=b").await;
    assert_eq!(next_json(&mut dead).await["type"], "hello");
    // `dead` stops reading, so it answers no ping; `live` reads (and so answers) for a while.
    let mut pings = 0;
    while pings < 4 {
        if next_json(&mut live).await["type"] == "ping" {
            pings += 1;
        }
    }
    server.open_connections_become(1).await;
    let (code, reason) = closed(&mut dead).await;
    assert_eq!(code, close_code::NO_PONG, "{reason}");
    server.publish("loc-001", r#"{"n":1}"#);
    assert_eq!(next_event(&mut live).await["n"], 1);
}

#[tokio::test]
async fn a_session_that_ends_closes_its_connection() {
    let config = WsConfig {
        revalidate_interval: Duration::from_millis(100),
        ..quick()
    };
    let server = start(
        FakeAuth::default().with_cookie(
            "scalesense_session=a",
            viewer("u", Role::Staff, &["loc-001"]),
        ),
        config,
    )
    .await;
    let mut ws = server.browser("scalesense_session=a").await;
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    server.auth.revoke_cookie("scalesense_session=a");
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, close_code::UNAUTHENTICATED);
    assert_eq!(reason, "session ended");
}

#[tokio::test]
async fn a_changed_role_closes_the_connection_for_a_fresh_start() {
    let config = WsConfig {
        revalidate_interval: Duration::from_millis(100),
        ..quick()
    };
    let server = start(
        FakeAuth::default().with_cookie(
            "scalesense_session=a",
            viewer("u", Role::Manager, &["loc-001"]),
        ),
        config,
    )
    .await;
    let mut ws = server.browser("scalesense_session=a").await;
    assert_eq!(next_json(&mut ws).await["role"], "manager");
    server.auth.cookies.lock().unwrap().insert(
        "scalesense_session=a".into(),
        viewer("u", Role::Staff, &["loc-001"]),
    );
    assert_eq!(closed(&mut ws).await.0, close_code::ACCESS_CHANGED);
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_going_away() {
    let server = start(
        FakeAuth::default().with_cookie(
            "scalesense_session=a",
            viewer("u", Role::Staff, &["loc-001"]),
        ),
        quick(),
    )
    .await;
    let mut ws = server.browser("scalesense_session=a").await;
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    let mut waiting = server.connect("", &[]).await;
    server.shutdown.cancel();
    assert_eq!(closed(&mut ws).await.0, close_code::GOING_AWAY);
    assert_eq!(closed(&mut waiting).await.0, close_code::GOING_AWAY);
    server.open_connections_become(0).await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_before_upgrading() {
    let config = WsConfig {
        max_connections: 1,
        ..quick()
    };
    let server = start(
        FakeAuth::default().with_cookie(
            "scalesense_session=a",
            viewer("u", Role::Staff, &["loc-001"]),
        ),
        config,
    )
    .await;
    let mut first = server.browser("scalesense_session=a").await;
    assert_eq!(next_json(&mut first).await["type"], "hello");
    let refused = tokio_tungstenite::connect_async(server.url("")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected 503, got {other:?}"),
    }
    drop(first);
    server.open_connections_become(0).await;
    let mut again = server.browser("scalesense_session=a").await;
    assert_eq!(next_json(&mut again).await["type"], "hello");
}

/// A feed that delivers one event, then reports that the subscriber missed some.
#[derive(Debug)]
struct LaggingFeed;

impl LiveFeed for LaggingFeed {
    fn subscribe(&self, _location: &LocationId) -> LiveSubscription {
        LiveSubscription::from_stream(
            futures_util::stream::iter([
                LiveItem::Event(Arc::from(r#"{"n":1}"#)),
                LiveItem::Lagged(5),
            ])
            .chain(futures_util::stream::pending()),
        )
    }
}

#[tokio::test]
async fn a_lagging_subscription_disconnects_instead_of_silently_missing_events() {
    let server = start_with(
        FakeAuth::default().with_cookie(
            "scalesense_session=a",
            viewer("u", Role::Staff, &["loc-001"]),
        ),
        quick(),
        Arc::new(LaggingFeed),
    )
    .await;
    let mut ws = server.browser("scalesense_session=a").await;
    // Whether `hello` and the event go out before the close frame is a race: a connection told
    // to resync skips its backlog.
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, close_code::TOO_SLOW);
    assert!(reason.contains("reload"), "{reason}");
}
