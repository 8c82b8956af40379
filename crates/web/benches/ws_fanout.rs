//! WebSocket fan-out benchmark (issue 6 targets): 1,000 clients on one location, p99 delivery of
//! a `reading` event < 100 ms after publishing, memory per idle connection < 64 KB.
//!
//! `cargo bench -p scalesense-web --bench ws_fanout [-- CLIENTS EVENTS]`. The server runs in a
//! child process (this same binary) so its RSS is its own; the clients run here. The baseline,
//! measured in the same run, is one client alone: the report prints the ratio to it.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::StreamExt;
use scalesense_domain::roles::Role;
use scalesense_proto::LocationId;
use scalesense_web::{LiveHub, Viewer, WsAuth, WsConfig, WsState};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

const ROLE_ENV: &str = "SCALESENSE_WS_BENCH_SERVER";
const EVENT_GAP: Duration = Duration::from_millis(20);

fn now_us() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

fn location() -> LocationId {
    LocationId::try_from("loc-001").unwrap()
}

/// Every bearer token is a staff member of loc-001.
#[derive(Debug)]
struct AnyToken;

#[async_trait]
impl WsAuth for AnyToken {
    async fn authenticate_cookie(&self, _cookie_header: &str) -> Option<Viewer> {
        None
    }

    async fn authenticate_token(&self, token: &str) -> Option<Viewer> {
        Some(Viewer {
            account: "bench".into(),
            user: token.into(),
            role: Role::Staff,
            locations: vec![location()],
        })
    }
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The child: serves the WebSocket and obeys `rss`, `publish N` and `quit` on stdin.
fn serve() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hub = Arc::new(LiveHub::new(1024));
        let config = WsConfig {
            max_connections: 100_000,
            ..WsConfig::default()
        };
        let state = WsState::new(
            Arc::new(AnyToken),
            hub.clone(),
            config,
            CancellationToken::new(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("port {}", listener.local_addr().unwrap().port());
        let app = scalesense_web::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let (lines_tx, mut lines) = mpsc::channel::<String>(8);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("rss") => println!("rss {} open {}", rss_kb(), state.open_connections()),
                Some("publish") => {
                    let n: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
                    for i in 0..n {
                        let text = format!(
                            r#"{{"type":"reading","location_id":"loc-001","tap_id":"loc-001#TAP#01","n":{i},"level_pct":54.1,"volume_l":31.7,"sent_us":{}}}"#,
                            now_us()
                        );
                        hub.publish(&location(), text.into());
                        tokio::time::sleep(EVENT_GAP).await;
                    }
                    println!("published {n}");
                }
                _ => break,
            }
        }
    });
}

struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ServerProcess {
    fn start() -> (Self, u16) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let port_line = read_line(&mut stdout);
        let port = port_line
            .strip_prefix("port ")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (
            Self {
                child,
                stdin,
                stdout,
            },
            port,
        )
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        read_line(&mut self.stdout)
    }

    /// (RSS in kB, open connections).
    fn rss(&mut self) -> (u64, usize) {
        let line = self.ask("rss");
        let words: Vec<&str> = line.split_whitespace().collect();
        (words[1].parse().unwrap(), words[3].parse().unwrap())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

fn read_line<R: BufRead>(reader: &mut R) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

/// Connects `clients` clients; returns a receiver of every event's delivery latency (µs).
async fn connect(
    port: u16,
    clients: usize,
) -> (
    mpsc::UnboundedReceiver<u64>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (latency_tx, latency_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(clients);
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = 4096;
    config.write_buffer_size = 0;
    for i in 0..clients {
        let mut request = format!("ws://127.0.0.1:{port}/api/v1/ws")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer client-{i}")).unwrap(),
        );
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .unwrap();
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"hello\"") => {}
            other => panic!("client {i}: no hello: {other:?}"),
        }
        let latency_tx = latency_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(text) = frame {
                    let received = now_us();
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if let Some(sent) = value["sent_us"].as_u64() {
                        let _ = latency_tx.send(received.saturating_sub(sent));
                    }
                }
            }
        }));
    }
    (latency_rx, tasks)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

struct Run {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    delivered: usize,
    rss_before_kb: u64,
    rss_idle_kb: u64,
    idle_kb_per_connection: f64,
}

async fn scenario(clients: usize, events: u64) -> Run {
    let (mut server, port) = ServerProcess::start();
    let (rss_before, _) = server.rss();
    let (mut latencies, tasks) = connect(port, clients).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, open) = server.rss();
    assert_eq!(open, clients, "every client is connected");
    let published = server.ask(&format!("publish {events}"));
    assert!(published.starts_with("published"), "{published}");
    let expected = clients * usize::try_from(events).unwrap();
    let mut all = Vec::with_capacity(expected);
    while all.len() < expected {
        match tokio::time::timeout(Duration::from_secs(10), latencies.recv()).await {
            Ok(Some(l)) => all.push(l),
            _ => break,
        }
    }
    for task in tasks {
        task.abort();
    }
    drop(server);
    all.sort_unstable();
    Run {
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        max_ms: percentile(&all, 1.0),
        delivered: all.len(),
        rss_before_kb: rss_before,
        rss_idle_kb: rss_idle,
        idle_kb_per_connection: rss_idle.saturating_sub(rss_before) as f64 / clients as f64,
    }
}

fn main() {
    if std::env::var_os(ROLE_ENV).is_some() {
        serve();
        return;
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = args.first().copied().unwrap_or(1000);
    let events = args.get(1).copied().unwrap_or(100) as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let baseline = scenario(1, events).await;
        let run = scenario(clients, events).await;
        println!("ws_fanout: {events} events, one every {EVENT_GAP:?}, to every client");
        for (name, r) in [("1 client (baseline)", &baseline), (&*format!("{clients} clients"), &run)] {
            println!(
                "  {name:>20}: delivered {:>7}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  \
                 server RSS {} KB before, {} KB connected and idle: {:.1} KB per connection",
                r.delivered,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.rss_before_kb,
                r.rss_idle_kb,
                r.idle_kb_per_connection
            );
        }
        println!(
            "  p99 ratio {clients} clients / baseline: {:.1}x   (target: p99 < 100 ms, < 64 KB per idle connection)",
            run.p99_ms / baseline.p99_ms.max(0.001)
        );
    });
}
