//! Helpers for tests that run the real `scalesense` binary: free ports, a child process that is
//! killed when the test ends, HTTP probes and a scale-like publisher.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A unique-enough tag for ids and names on a shared broker.
pub fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{:x}{nanos:x}{n}", std::process::id())
}

/// A loopback address with a port nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The running binary; killed (SIGKILL) when dropped.
pub struct Scalesense {
    pub child: Child,
    stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
}

impl Scalesense {
    pub fn start(args: &[&str], dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scalesense"))
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info,rmqtt=warn")
            // An error must read as one line, as a user sees it (no backtrace).
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Reads stdout until a line contains `needle`; returns every line read.
    pub fn stdout_until(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.stdout.recv_timeout(left) else {
                let err: Vec<String> = self.stderr.try_iter().collect();
                panic!(
                    "no {needle:?} on stdout within {timeout:?}; stdout {seen:#?}; stderr {err:#?}"
                );
            };
            let done = line.contains(needle);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "scalesense did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Scalesense {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `GET path` over HTTP/1.0; the status code, or `None` when nothing answers.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A reading payload of the contract.
pub fn reading(boot: u32, seq: u32) -> String {
    format!(
        r#"{{"v":1,"seq":{seq},"boot":{boot},"weight_lbs":80.5,"level_pct":60,"battery_v":3.9,"battery_pct":77,"rssi":-61,"stable":true,"tare_status":"complete"}}"#
    )
}

/// Publishes one message with QoS 1 on a fresh connection per attempt and reports whether the
/// PUBACK came back within `timeout` (a scale that got no PUBACK resends later).
pub struct ScalePublisher {
    addr: SocketAddr,
    client_id: String,
    link: Option<(AsyncClient, rumqttc::EventLoop)>,
}

impl ScalePublisher {
    pub fn new(addr: SocketAddr, client_id: &str) -> Self {
        Self {
            addr,
            client_id: client_id.to_owned(),
            link: None,
        }
    }

    pub async fn try_publish(&mut self, topic: &str, payload: &[u8], timeout: Duration) -> bool {
        let (client, eventloop) = self.link.get_or_insert_with(|| {
            let mut options = MqttOptions::new(
                self.client_id.clone(),
                self.addr.ip().to_string(),
                self.addr.port(),
            );
            options.set_keep_alive(Duration::from_secs(30));
            AsyncClient::new(options, 16)
        });
        if client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .is_err()
        {
            self.link = None;
            return false;
        }
        let acked = tokio::time::timeout(timeout, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if !acked {
            self.link = None;
        }
        acked
    }
}
