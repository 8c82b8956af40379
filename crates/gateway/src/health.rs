//! What the gateway tells about itself: counters kept while it runs, the `gw/status/{id}`
//! payload built from them, and a tiny HTTP responder for `GET /healthz` and `GET /metrics`.
//!
//! The responder is hand-written over a tokio `TcpListener` (two fixed routes, `Connection:
//! close`) so the gateway carries no web framework. It only reads state: it must never block the
//! data path (it takes the queue lock only through [`Snapshot`]s built off the executor) and never
//! changes anything.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use scalesense_proto::payload::VersionString;
use scalesense_proto::{CONTRACT_VERSION, GatewayStatus, UplinkState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::queue::{QueueStats, Recovery};

/// Counters and flags updated by the gateway's tasks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages received from the local broker.
    pub received: AtomicU64,
    /// Local messages not queued: not an uplink topic of the contract, not a JSON object, or
    /// already carrying `gw`/`gseq`, or too large.
    pub rejected: AtomicU64,
    /// Publications upstream, resends included.
    pub published: AtomicU64,
    /// Messages the server confirmed.
    pub confirmed: AtomicU64,
    /// Unconfirmed messages dropped because the disk quota was full.
    pub dropped: AtomicU64,
    /// Commands and OTA notices relayed to the local broker.
    pub downlink: AtomicU64,
    /// Confirmations that could not be decoded.
    pub bad_confirmations: AtomicU64,
    /// Times sending started over from the oldest unconfirmed message (reconnects, timeouts).
    pub restarts: AtomicU64,
    /// Messages sent upstream and waiting for confirmation.
    pub in_flight: AtomicU64,
    pub local_connected: AtomicBool,
    pub uplink_connected: AtomicBool,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One consistent look at the gateway.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub queue: QueueStats,
    pub oldest_age_s: u64,
    pub max_disk: u64,
    pub received: u64,
    pub rejected: u64,
    pub published: u64,
    pub confirmed: u64,
    pub dropped: u64,
    pub downlink: u64,
    pub bad_confirmations: u64,
    pub restarts: u64,
    pub in_flight: u64,
    pub local_connected: bool,
    pub uplink_connected: bool,
    /// What opening the queue repaired.
    pub recovery: Recovery,
    /// A window's worth: more than this queued while connected means the uplink is replaying.
    pub window: u64,
}

/// The gateway's software version, as reported in health.
pub fn version() -> VersionString {
    let mut v = VersionString::new();
    // The crate version is a short semver string, far below the capacity.
    let _ = v.push_str(env!("CARGO_PKG_VERSION"));
    v
}

impl Snapshot {
    pub fn uplink(&self) -> UplinkState {
        if !self.uplink_connected {
            UplinkState::Disconnected
        } else if self.queue.depth > self.window {
            UplinkState::Replaying
        } else {
            UplinkState::Connected
        }
    }

    /// The `gw/status/{id}` payload. `forwarded` counts messages the server confirmed.
    pub fn gateway_status(&self) -> GatewayStatus {
        GatewayStatus {
            v: CONTRACT_VERSION,
            queue_depth: self.queue.depth,
            oldest_age_s: self.oldest_age_s,
            uplink: self.uplink(),
            forwarded: self.confirmed,
            dropped: self.dropped,
            disk_bytes: self.queue.disk_bytes,
            version: version(),
            oldest_gseq: self.queue.oldest_gseq,
        }
    }

    /// Healthy means the gateway is doing its job at the bar: the local broker is connected (so
    /// readings are being queued). An upstream outage is what the queue is for, so it is
    /// reported but not unhealthy.
    pub fn healthy(&self) -> bool {
        self.local_connected
    }

    pub fn healthz_json(&self) -> String {
        let status = self.gateway_status();
        serde_json::json!({
            "healthy": self.healthy(),
            "local_connected": self.local_connected,
            "uplink": status.uplink.as_str(),
            "queue_depth": status.queue_depth,
            "oldest_age_s": status.oldest_age_s,
            "oldest_gseq": status.oldest_gseq,
            "next_gseq": self.queue.next_gseq,
            "in_flight": self.in_flight,
            "confirmed": self.confirmed,
            "published": self.published,
            "received": self.received,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "disk_bytes": status.disk_bytes,
            "max_disk_bytes": self.max_disk,
            "torn_tails": self.recovery.torn_tails,
            "corrupt_segments": self.recovery.corrupt_copies.len(),
            "version": status.version.as_str(),
        })
        .to_string()
    }

    /// Prometheus text exposition.
    // One statement per metric: a flat table is clearer than splitting it to please a counter.
    #[allow(clippy::too_many_lines)]
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP scalesense_gateway_{name} {help}\n# TYPE scalesense_gateway_{name} {kind}\nscalesense_gateway_{name} {value}"
            );
        };
        metric(
            "queue_depth",
            "gauge",
            "Messages waiting for the server's confirmation.",
            self.queue.depth,
        );
        metric(
            "queue_oldest_age_seconds",
            "gauge",
            "Age of the oldest queued message.",
            self.oldest_age_s,
        );
        metric(
            "queue_disk_bytes",
            "gauge",
            "Bytes used by the queue.",
            self.queue.disk_bytes,
        );
        metric(
            "queue_max_disk_bytes",
            "gauge",
            "The queue's disk quota.",
            self.max_disk,
        );
        metric(
            "queue_next_gseq",
            "gauge",
            "The sequence number the next queued message gets.",
            self.queue.next_gseq,
        );
        metric(
            "in_flight",
            "gauge",
            "Messages sent upstream, waiting for confirmation.",
            self.in_flight,
        );
        metric(
            "received_total",
            "counter",
            "Messages received from the local broker.",
            self.received,
        );
        metric(
            "rejected_total",
            "counter",
            "Local messages refused (not an uplink topic, not a JSON object, or too large).",
            self.rejected,
        );
        metric(
            "published_total",
            "counter",
            "Publications upstream, resends included.",
            self.published,
        );
        metric(
            "confirmed_total",
            "counter",
            "Messages the server confirmed as committed.",
            self.confirmed,
        );
        metric(
            "dropped_total",
            "counter",
            "Unconfirmed messages dropped because the disk quota was full.",
            self.dropped,
        );
        metric(
            "downlink_total",
            "counter",
            "Commands and OTA notices relayed to the scales.",
            self.downlink,
        );
        metric(
            "bad_confirmations_total",
            "counter",
            "Confirmations on gw/ack that could not be decoded.",
            self.bad_confirmations,
        );
        metric(
            "resend_restarts_total",
            "counter",
            "Times forwarding started over from the oldest unconfirmed message.",
            self.restarts,
        );
        metric(
            "torn_tails_total",
            "counter",
            "Torn queue tails cut off at start-up (writes a crash interrupted).",
            self.recovery.torn_tails,
        );
        metric(
            "corrupt_segments_total",
            "counter",
            "Damaged queue segments copied aside at start-up.",
            self.recovery.corrupt_copies.len() as u64,
        );
        metric(
            "local_connected",
            "gauge",
            "1 when connected to the bar's broker.",
            u64::from(self.local_connected),
        );
        metric(
            "uplink_connected",
            "gauge",
            "1 when connected to the server's broker.",
            u64::from(self.uplink_connected),
        );
        out
    }
}

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Answer one HTTP/1.x request with what `render` returns for its path: `(status, content
/// type, body)`.
async fn answer<F, Fut>(mut stream: TcpStream, render: F) -> std::io::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = (u16, &'static str, String)>,
{
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_REQUEST {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(head, Ok(Ok(()))) {
        return Ok(());
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (status, kind, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => {
            let path = target.split('?').next().unwrap_or_default().to_owned();
            render(path).await
        }
        _ => (405, "text/plain", "only GET is served here\n".to_owned()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Serve `/healthz` and `/metrics` until `stop` fires. `snapshot` builds a fresh [`Snapshot`]
/// per request (`None` if the gateway is shutting down).
pub async fn serve<S, Fut>(
    listener: TcpListener,
    snapshot: S,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<Snapshot>> + Send,
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let snapshot = snapshot.clone();
        tokio::spawn(async move {
            let result = answer(stream, |path| async move {
                let Some(s) = snapshot().await else {
                    return (503, "text/plain", "shutting down\n".to_owned());
                };
                match path.as_str() {
                    "/healthz" => {
                        let code = if s.healthy() { 200 } else { 503 };
                        (code, "application/json", s.healthz_json())
                    }
                    "/metrics" => (200, "text/plain; version=0.0.4", s.metrics_text()),
                    _ => (
                        404,
                        "text/plain",
                        "not found: try /healthz or /metrics\n".to_owned(),
                    ),
                }
            })
            .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "health: request failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            queue: QueueStats {
                depth: 1500,
                disk_bytes: 4096,
                oldest_gseq: Some(7),
                next_gseq: 1507,
                dropped_full: 0,
            },
            oldest_age_s: 42,
            max_disk: 1 << 30,
            received: 1506,
            rejected: 1,
            published: 10,
            confirmed: 5,
            dropped: 0,
            downlink: 2,
            bad_confirmations: 0,
            restarts: 1,
            in_flight: 3,
            local_connected: true,
            uplink_connected: true,
            recovery: Recovery::default(),
            window: 1000,
        }
    }

    #[test]
    fn status_reports_replaying_while_more_than_a_window_is_queued() {
        let mut s = snapshot();
        let status = s.gateway_status();
        assert_eq!(status.uplink, UplinkState::Replaying);
        assert_eq!(status.queue_depth, 1500);
        assert_eq!(status.forwarded, 5);
        assert_eq!(status.oldest_gseq, Some(7));
        // The payload passes the contract's own validation.
        scalesense_proto::to_vec(&status).unwrap();
        s.queue.depth = 10;
        assert_eq!(s.uplink(), UplinkState::Connected);
        s.uplink_connected = false;
        assert_eq!(s.uplink(), UplinkState::Disconnected);
        assert!(s.healthy(), "an upstream outage is what the queue is for");
        s.local_connected = false;
        assert!(!s.healthy());
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let text = snapshot().metrics_text();
        assert!(text.contains(
            "# TYPE scalesense_gateway_queue_depth gauge\nscalesense_gateway_queue_depth 1500\n"
        ));
        assert!(text.contains("scalesense_gateway_confirmed_total 5\n"));
        assert!(text.contains("scalesense_gateway_uplink_connected 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(name.starts_with("scalesense_gateway_"), "{line}");
            value.parse::<u64>().unwrap();
        }
    }

    #[tokio::test]
    async fn serves_healthz_and_metrics_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(listener, || async { Some(snapshot()) }, stop));
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let health = get("/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        let body = health.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["queue_depth"], 1500);
        assert_eq!(json["uplink"], "replaying");
        let metrics = get("/metrics?x=1").await;
        assert!(metrics.contains("scalesense_gateway_queue_depth 1500"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        stop_tx.send(true).unwrap();
        server.await.unwrap();
    }
}
