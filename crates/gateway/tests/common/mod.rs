//! Test harness shared by the gateway's integration tests: the bar's broker (the Mosquitto named
//! by `SCALESENSE_TEST_MQTT`), a private upstream Mosquitto per test that can be stopped and
//! started (or killed), virtual scales, and `Server`, a stand-in for the server's ingest that
//! stores readings once per `(device, boot, seq)` and confirms what it stored on `gw/ack/{id}`.
//!
//! The stand-in exists because these tests need the server's confirmation behaviour without a
//! database: it keeps its "table" in memory, which outlives the upstream broker it listens to.
// Each test binary uses a different part of this harness.
#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use scalesense_gateway::BrokerUrl;
use scalesense_proto::{GatewayAck, Reading, TareStatus};

/// Send the gateway's logs to the test's captured output (shown when a test fails).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("scalesense_gateway=debug")
        .with_test_writer()
        .try_init();
}

/// The bar's broker for tests, or `None` (after saying why) when the tests must be skipped.
/// Under `CI=true` a missing broker fails the test instead.
pub fn local_broker(test: &str) -> Option<BrokerUrl> {
    init_logging();
    if let Ok(url) = std::env::var("SCALESENSE_TEST_MQTT") {
        return Some(
            url.parse()
                .expect("SCALESENSE_TEST_MQTT is not an mqtt:// URL"),
        );
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: SCALESENSE_TEST_MQTT is not set, and CI=true requires the broker tests to run"
    );
    eprintln!("skipping {test}: SCALESENSE_TEST_MQTT is not set (e.g. mqtt://127.0.0.1:1883)");
    None
}

fn mosquitto_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn reachable(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A Mosquitto of our own on a free port, standing in for the server's broker.
pub struct Mosquitto {
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Start one with `extra` configuration lines (in addition to the listener). Panics when
    /// mosquitto is not installed (the tests that call it have already checked the bar's
    /// broker, which is a Mosquitto on every machine that runs them).
    pub fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}\n"),
        )
        .unwrap();
        let mut m = Self {
            port,
            config,
            child: None,
            _dir: dir,
        };
        m.resume();
        m
    }

    /// The upstream of a gateway: unlimited queues, as the server's broker must be configured.
    pub fn upstream() -> Self {
        Self::start("persistence false\nmax_queued_messages 0\nmax_inflight_messages 0")
    }

    /// A bar broker configured as `docs/gateway.md` recommends: queues large enough for a
    /// gateway restart, and a wide in-flight window so the gateway can fsync large batches.
    pub fn bar() -> Self {
        Self::start("persistence false\nmax_queued_messages 200000\nmax_inflight_messages 1000")
    }

    pub fn url(&self) -> BrokerUrl {
        format!("mqtt://127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// Start (again) on the same port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        let bin = mosquitto_binary().expect("mosquitto is not installed");
        let log = self.config.with_extension("log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reachable(self.port) {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop it the hard way (SIGKILL): whatever it held in memory is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A unique prefix for ids in one test run (device and gateway ids are shared across tests on
/// the same broker).
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{:x}{nanos:08x}{n:x}", std::process::id())
}

pub fn options(client_id: &str, broker: &BrokerUrl) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, &broker.host, broker.port);
    o.set_keep_alive(Duration::from_secs(10));
    o.set_max_packet_size(300_000, 300_000);
    o
}

/// Connect, wait for the ConnAck and keep polling in the background.
pub async fn connect(client_id: &str, broker: &BrokerUrl, clean: bool) -> AsyncClient {
    let mut o = options(client_id, broker);
    o.set_clean_session(clean);
    o.set_inflight(100);
    let (client, mut ev) = AsyncClient::new(o, 10_000);
    loop {
        match ev.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("cannot connect {client_id} to {broker}: {e}"),
        }
    }
    tokio::spawn(async move {
        loop {
            if let Err(_e) = ev.poll().await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

/// Remove a persistent session from a broker (tests leave none behind on the shared broker).
pub async fn forget_session(client_id: &str, broker: &BrokerUrl) {
    let mut o = options(client_id, broker);
    o.set_clean_session(true);
    let (client, mut ev) = AsyncClient::new(o, 10);
    let done = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = e {
                let _ = client.try_disconnect();
            }
            if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = e {
                break;
            }
        }
    })
    .await;
    drop(done);
}

/// A reading as a scale sends it (no `gw`/`gseq`).
pub fn reading(boot: u32, seq: u32) -> Vec<u8> {
    scalesense_proto::to_vec(&Reading {
        v: 1,
        seq,
        boot,
        ts: Some(1_750_000_000_000 + u64::from(seq) * 60_000),
        weight_lbs: 100.0 - f64::from(seq % 90),
        level_pct: Some(50.0),
        battery_v: 3.9,
        battery_pct: 80.0,
        rssi: -60,
        stable: true,
        tare_status: TareStatus::Complete,
        gw: None,
        gseq: None,
    })
    .unwrap()
}

/// A device's stored readings, in commit order.
#[derive(Debug, Default)]
pub struct Table {
    /// device → seqs stored, in the order they were committed.
    pub stored: BTreeMap<String, Vec<u32>>,
    seen: BTreeSet<(String, u32, u32)>,
    /// Every message received, duplicates included.
    pub received: u64,
    /// gseqs received with the gateway id they came from.
    pub gseqs: BTreeSet<(String, u64)>,
    /// device → the gseq of each stored reading, in `stored` order.
    pub stored_gseqs: BTreeMap<String, Vec<u64>>,
    /// Messages received without gw/gseq (none should be, except through a bridge).
    pub unforwarded: u64,
}

/// The stand-in for the server's ingest (see the module docs).
#[derive(Clone)]
pub struct Server {
    pub table: Arc<Mutex<Table>>,
    /// While false, nothing is confirmed (a server that stores but has not committed yet).
    confirming: Arc<std::sync::atomic::AtomicBool>,
    /// Confirm each gseq only the second time it arrives (so the first send is never confirmed).
    pub confirm_second_only: Arc<std::sync::atomic::AtomicBool>,
    deliveries: Arc<Mutex<HashMap<(String, u64), u32>>>,
}

impl Server {
    /// Subscribe to the uplink topics on `broker` and keep doing so across broker restarts.
    pub async fn start(broker: &BrokerUrl) -> Self {
        let server = Self {
            table: Arc::default(),
            confirming: Arc::new(true.into()),
            confirm_second_only: Arc::new(false.into()),
            deliveries: Arc::default(),
        };
        let mut o = options(&unique("test-server-"), broker);
        o.set_clean_session(true);
        o.set_inflight(1000);
        let (client, mut ev) = AsyncClient::new(o, 10_000);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let sub = client.clone();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in ["keg/readings/+", "keg/status/+", "keg/response/+"] {
                            sub.subscribe(f, QoS::AtLeastOnce).await.unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Some(first) = rx.recv().await else { return };
                let mut batch = vec![first];
                while let Ok(m) = rx.try_recv() {
                    batch.push(m);
                }
                let acks = s.commit(batch);
                for (gw, ranges) in acks {
                    for chunk in ranges.chunks(scalesense_proto::payload::MAX_ACK_RANGES) {
                        let mut r = scalesense_proto::payload::GseqRanges::new();
                        for &(a, b) in chunk {
                            r.push([a, b]).unwrap();
                        }
                        let ack =
                            scalesense_proto::to_vec(&GatewayAck { v: 1, ranges: r }).unwrap();
                        let _ = client
                            .publish(format!("gw/ack/{gw}"), QoS::AtLeastOnce, false, ack)
                            .await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("test server did not subscribe")
            .unwrap();
        server
    }

    pub fn set_confirming(&self, on: bool) {
        self.confirming
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Store a batch (once per device/boot/seq), then return the ranges to confirm per gateway.
    fn commit(&self, batch: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<(u64, u64)>)> {
        let confirming = self.confirming.load(std::sync::atomic::Ordering::SeqCst);
        let second_only = self
            .confirm_second_only
            .load(std::sync::atomic::Ordering::SeqCst);
        let mut table = self.table.lock().unwrap();
        let mut deliveries = self.deliveries.lock().unwrap();
        let mut confirm: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (topic, payload) in batch {
            table.received += 1;
            // The bar's broker is shared with other tests: whatever they publish is forwarded
            // too, valid or not (the real server stores the invalid ones as dead letters).
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                table.unforwarded += 1;
                continue;
            };
            let forwarding = json["gw"].as_str().zip(json["gseq"].as_u64());
            if let Some(device) = topic.strip_prefix("keg/readings/")
                && let Ok(r) = scalesense_proto::from_slice::<Reading>(&payload)
                && table.seen.insert((device.to_owned(), r.boot, r.seq))
            {
                table
                    .stored
                    .entry(device.to_owned())
                    .or_default()
                    .push(r.seq);
                if let Some((_, gseq)) = forwarding {
                    table
                        .stored_gseqs
                        .entry(device.to_owned())
                        .or_default()
                        .push(gseq);
                }
            }
            // A reading relayed without gw/gseq (a Mosquitto bridge) is stored, not confirmed.
            let Some((gw, gseq)) = forwarding else {
                table.unforwarded += 1;
                continue;
            };
            table.gseqs.insert((gw.to_owned(), gseq));
            let n = deliveries.entry((gw.to_owned(), gseq)).or_default();
            *n += 1;
            if confirming && (!second_only || *n >= 2) {
                confirm.entry(gw.to_owned()).or_default().push(gseq);
            }
        }
        confirm
            .into_iter()
            .map(|(gw, mut gseqs)| {
                gseqs.sort_unstable();
                let mut ranges: Vec<(u64, u64)> = Vec::new();
                for g in gseqs {
                    match ranges.last_mut() {
                        Some((_, hi)) if *hi + 1 >= g => *hi = (*hi).max(g),
                        _ => ranges.push((g, g)),
                    }
                }
                (gw, ranges)
            })
            .collect()
    }

    /// Readings stored for `devices`, in total.
    pub fn stored_count(&self, devices: &[String]) -> usize {
        let t = self.table.lock().unwrap();
        devices
            .iter()
            .map(|d| t.stored.get(d).map_or(0, Vec::len))
            .sum()
    }

    /// Wait until `devices` each have `per_device` readings stored, or panic after `timeout`.
    pub async fn wait_stored(&self, devices: &[String], per_device: u32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let done = {
                let t = self.table.lock().unwrap();
                devices
                    .iter()
                    .all(|d| t.stored.get(d).map_or(0, Vec::len) >= per_device as usize)
            };
            if done {
                return;
            }
            if Instant::now() > deadline {
                let t = self.table.lock().unwrap();
                let counts: Vec<usize> = devices
                    .iter()
                    .map(|d| t.stored.get(d).map_or(0, Vec::len))
                    .collect();
                panic!("timed out: stored per device {counts:?}, want {per_device}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every device has exactly seqs 0..n, each stored once, in any order.
    pub fn assert_exactly_once(&self, devices: &[String], n: u32) {
        let t = self.table.lock().unwrap();
        for d in devices {
            let mut got = t.stored.get(d).cloned().unwrap_or_default();
            got.sort_unstable();
            assert_eq!(got, (0..n).collect::<Vec<u32>>(), "{d}: readings missing");
        }
    }

    /// Every device has exactly seqs 0..n, stored once each and in order.
    pub fn assert_exactly_once_in_order(&self, devices: &[String], n: u32) {
        let t = self.table.lock().unwrap();
        let want: Vec<u32> = (0..n).collect();
        for d in devices {
            let got = t.stored.get(d).cloned().unwrap_or_default();
            assert_eq!(got.len(), want.len(), "{d}: stored {} of {n}", got.len());
            assert_eq!(got, want, "{d}: readings missing or out of order");
        }
        assert_eq!(
            t.unforwarded, 0,
            "messages arrived without gw/gseq or not as JSON"
        );
    }
}

/// Publish `per_device` readings for each device to the bar's broker at about `rate` per second
/// in total, round-robin (so order matters per device), and wait for every PUBACK.
pub async fn publish_readings(
    broker: &BrokerUrl,
    devices: &[String],
    per_device: u32,
    rate: Option<u32>,
) {
    let mut o = options(&unique("test-scales-"), broker);
    o.set_clean_session(true);
    o.set_inflight(200);
    let (client, mut ev) = AsyncClient::new(o, 1000);
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(e) => panic!("scale publisher lost the bar's broker: {e}"),
            }
        }
    });
    let pause = rate.map(|r| Duration::from_secs_f64(1.0 / f64::from(r)));
    for seq in 0..per_device {
        for d in devices {
            client
                .publish(
                    format!("keg/readings/{d}"),
                    QoS::AtLeastOnce,
                    false,
                    reading(1, seq),
                )
                .await
                .unwrap();
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
        }
    }
    let total = u64::from(per_device) * devices.len() as u64;
    wait_for("every PUBACK", Duration::from_mins(2), || {
        let acked = acked.clone();
        async move { acked.load(std::sync::atomic::Ordering::SeqCst) >= total }
    })
    .await;
    poller.abort();
}

/// Gateway settings for a test: health on a free port, the given brokers and directory.
pub fn gateway_args(
    id: &str,
    local: &BrokerUrl,
    upstream: &BrokerUrl,
    data_dir: &Path,
) -> scalesense_gateway::GatewayArgs {
    scalesense_gateway::GatewayArgs {
        gateway_id: id.parse().unwrap(),
        upstream: upstream.clone(),
        local: local.clone(),
        data_dir: data_dir.to_path_buf(),
        max_disk: 256 << 20,
        ca: None,
        cert: None,
        key: None,
        health_listen: "127.0.0.1:0".parse().unwrap(),
        window: 1000,
        confirm_timeout: Duration::from_secs(30),
        health_interval: Duration::from_mins(1),
    }
}

/// Poll `f` every 20 ms until it returns true, or panic with `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
