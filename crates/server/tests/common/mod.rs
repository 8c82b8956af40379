//! Shared test harness: stores with the demo bar, the server's pieces wired to the embedded
//! broker or to an external one, and a publisher that behaves like a scale (QoS 1, one message
//! at a time, resending what was not acknowledged).
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use scalesense_proto::{LocationId, TapId};
use scalesense_server::clock::{Clock, SystemClock};
use scalesense_server::embedded::EmbeddedBroker;
use scalesense_server::events::EventBus;
use scalesense_server::health::Health;
use scalesense_server::pipeline::{self, Pipeline, PipelineConfig};
use scalesense_server::subscriber::{BrokerUrl, Ingest, LinkConfig, MqttLink};
use scalesense_store::{
    AccountId, DeadLetter, KegId, PgStore, Series, SqliteSettings, SqliteStore, Store,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ACCOUNT: &str = "demo";

/// Logs to the test's output when `RUST_LOG` is set (shown for failing tests).
pub fn init_logging() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A unique-enough tag for ids and client names, so parallel runs against one shared broker
/// never collide.
pub fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{:x}{nanos:x}{n}", std::process::id())
}

/// A store with the demo bar of `scales` taps, and its cleanup.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub path: Option<std::path::PathBuf>,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<(String, String)>,
}

impl TestStore {
    pub async fn sqlite(scales: u16, busy_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let store = SqliteStore::open_with(
            &path,
            &SqliteSettings {
                busy_timeout,
                ..SqliteSettings::default()
            },
        )
        .await
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        scalesense_server::demo::ensure(store.as_ref(), scales, Some("pw"), 1_700_000_000_000)
            .await
            .unwrap();
        Self {
            store,
            path: Some(path),
            _dir: Some(dir),
            pg_schema: None,
        }
    }

    /// PostgreSQL in a fresh schema, or `None` (printed) when `SCALESENSE_TEST_PG` is unset
    /// outside CI.
    pub async fn postgres(scales: u16) -> Option<Self> {
        let Ok(url) = std::env::var("SCALESENSE_TEST_PG") else {
            assert!(
                !ci(),
                "CI=true but SCALESENSE_TEST_PG is not set (export SCALESENSE_TEST_PG=postgres://user@host:port/db)"
            );
            println!("skipped: SCALESENSE_TEST_PG not set");
            return None;
        };
        let admin = match PgPoolOptions::new().max_connections(1).connect(&url).await {
            Ok(pool) => pool,
            Err(e) => {
                assert!(
                    !ci(),
                    "CI=true and PostgreSQL at SCALESENSE_TEST_PG is unreachable: {e}"
                );
                println!("skipped: PostgreSQL at SCALESENSE_TEST_PG is unreachable: {e}");
                return None;
            }
        };
        let schema = unique("srv_");
        admin
            .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        admin.close().await;
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let store: Arc<dyn Store> = Arc::new(PgStore::connect_with(options, 5).await.unwrap());
        scalesense_server::demo::ensure(store.as_ref(), scales, Some("pw"), 1_700_000_000_000)
            .await
            .unwrap();
        Some(Self {
            store,
            path: None,
            _dir: None,
            pg_schema: Some((url, schema)),
        })
    }

    /// Drops a PostgreSQL test schema.
    pub async fn cleanup(self) {
        if let Some((url, schema)) = self.pg_schema {
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .unwrap();
            admin
                .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .unwrap();
        }
    }

    /// Readings stored for demo tap `n` (series: its demo keg).
    pub async fn readings(&self, n: u16) -> Vec<scalesense_store::Reading> {
        let keg = KegId::try_from(format!("keg-demo-{n:04}").as_str()).unwrap();
        self.store
            .readings(&account(), &Series::Keg(keg), 0, i64::MAX, 100_000)
            .await
            .unwrap()
    }

    /// Registers `device` on a new tap `number` of the demo location (no keg: its readings go
    /// to the tap's series).
    pub async fn add_scale(&self, number: u16, device: &str) -> scalesense_proto::DeviceId {
        let location = LocationId::try_from("loc-001").unwrap();
        let device = scalesense_proto::DeviceId::try_from(device).unwrap();
        self.store
            .create_tap(&account(), &location, number, "test tap")
            .await
            .unwrap();
        self.store
            .register_device(
                &account(),
                &scalesense_store::NewDevice {
                    id: device.clone(),
                    location_id: Some(location),
                    fw_version: None,
                    created_at: 1_700_000_000_000,
                },
            )
            .await
            .unwrap();
        self.store
            .assign_device(&account(), &device, Some(&tap(number)))
            .await
            .unwrap();
        device
    }

    /// Readings stored for an added tap (no keg).
    pub async fn tap_readings(&self, number: u16) -> Vec<scalesense_store::Reading> {
        self.store
            .readings(&account(), &Series::Tap(tap(number)), 0, i64::MAX, 100_000)
            .await
            .unwrap()
    }

    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.store.dead_letters(u32::MAX).await.unwrap()
    }
}

pub fn account() -> AccountId {
    AccountId::try_from(ACCOUNT).unwrap()
}

pub fn tap(n: u16) -> TapId {
    TapId::new(&LocationId::try_from("loc-001").unwrap(), n).unwrap()
}

/// A reading payload of the contract.
pub fn reading(boot: u32, seq: u32, level: f64) -> String {
    format!(
        r#"{{"v":1,"seq":{seq},"boot":{boot},"weight_lbs":80.5,"level_pct":{level},"battery_v":3.9,"battery_pct":77,"rssi":-61,"stable":true,"tare_status":"complete"}}"#
    )
}

/// The server's pieces, wired as `up` wires them (embedded broker) or as `serve` does
/// (external broker).
pub struct Server {
    pub health: Health,
    pub events: EventBus,
    pub broker: Option<EmbeddedBroker>,
    pub mqtt_addr: SocketAddr,
    link: MqttLink,
    link_stop: CancellationToken,
    pipeline: JoinHandle<()>,
    pipeline_stop: CancellationToken,
}

impl Server {
    /// Embedded broker on a free port, ingest in its publish hook.
    pub async fn embedded(store: Arc<dyn Store>) -> Self {
        init_logging();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let health = Health::new();
        let events = EventBus::default();
        let config = PipelineConfig::default();
        let (sender, rx) = pipeline::channel(&config);
        let broker =
            EmbeddedBroker::start("127.0.0.1:0".parse().unwrap(), sender, Arc::clone(&clock))
                .await
                .unwrap();
        let addr = broker.local_addr();
        let link_stop = CancellationToken::new();
        let link = MqttLink::start(
            LinkConfig::new(
                BrokerUrl {
                    host: addr.ip().to_string(),
                    port: addr.port(),
                },
                unique("test-server-"),
                None,
            ),
            health.clone(),
            Arc::clone(&clock),
            link_stop.clone(),
        )
        .unwrap();
        Self::finish(
            store,
            health,
            events,
            Some(broker),
            addr,
            link,
            link_stop,
            rx,
            clock,
            config,
        )
    }

    /// The subscriber on an external broker, with a persistent session named `client_id`.
    pub fn external(store: Arc<dyn Store>, broker: &BrokerUrl, client_id: &str) -> Self {
        init_logging();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let health = Health::new();
        let events = EventBus::default();
        let config = PipelineConfig {
            backoff_max: Duration::from_millis(500),
            ..PipelineConfig::default()
        };
        let (sender, rx) = pipeline::channel(&config);
        let link_stop = CancellationToken::new();
        let mut link_config = LinkConfig::new(
            broker.clone(),
            client_id,
            Some(Ingest {
                pipeline: sender,
                shared_group: None,
            }),
        );
        link_config.max_backoff = Duration::from_millis(500);
        let link = MqttLink::start(
            link_config,
            health.clone(),
            Arc::clone(&clock),
            link_stop.clone(),
        )
        .unwrap();
        let addr = format!("{}:{}", broker.host, broker.port).parse().unwrap();
        Self::finish(
            store, health, events, None, addr, link, link_stop, rx, clock, config,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        store: Arc<dyn Store>,
        health: Health,
        events: EventBus,
        broker: Option<EmbeddedBroker>,
        mqtt_addr: SocketAddr,
        link: MqttLink,
        link_stop: CancellationToken,
        rx: tokio::sync::mpsc::Receiver<pipeline::Inbound>,
        clock: Arc<dyn Clock>,
        config: PipelineConfig,
    ) -> Self {
        let pipeline_stop = CancellationToken::new();
        let pipeline = Pipeline::new(
            store,
            events.clone(),
            Some(Arc::new(link.publisher())),
            clock,
            health.clone(),
            config,
        );
        let pipeline = tokio::spawn(pipeline.run(rx, pipeline_stop.clone()));
        Self {
            health,
            events,
            broker,
            mqtt_addr,
            link,
            link_stop,
            pipeline,
            pipeline_stop,
        }
    }

    /// Waits until the server's own MQTT client is connected.
    pub async fn connected(&self) {
        wait_for(
            "the server's MQTT client to connect",
            Duration::from_secs(30),
            || async { self.health.broker_connected() },
        )
        .await;
    }

    pub async fn stop(self) {
        self.link_stop.cancel();
        self.link.join().await;
        if let Some(broker) = self.broker {
            broker.stop().await;
        }
        self.pipeline_stop.cancel();
        self.pipeline.await.unwrap();
    }
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `timeout`.
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scale-like publisher: QoS 1, one message in flight, waits for each PUBACK, and after a
/// refusal or lost connection reconnects and resends the same message.
pub struct ScalePublisher {
    options: MqttOptions,
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
}

impl ScalePublisher {
    pub fn new(addr: SocketAddr, client_id: &str) -> Self {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, eventloop) = AsyncClient::new(options.clone(), 16);
        Self {
            options,
            client,
            eventloop,
        }
    }

    /// Publishes once and waits for the PUBACK (`true`) or a refusal/disconnect/timeout
    /// (`false`). Nothing is resent automatically.
    pub async fn try_publish(&mut self, topic: &str, payload: &[u8], timeout: Duration) -> bool {
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .is_err()
        {
            return false;
        }
        let acked = tokio::time::timeout(timeout, async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if !acked {
            // Start over on a fresh connection: whatever rumqttc kept would be resent twice.
            let (client, eventloop) = AsyncClient::new(self.options.clone(), 16);
            self.client = client;
            self.eventloop = eventloop;
        }
        acked
    }

    /// Publishes until a PUBACK arrives (resending after every refusal), within `timeout`.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self
            .try_publish(topic, payload, Duration::from_secs(5))
            .await
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no PUBACK for {topic} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn disconnect(mut self) {
        if self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while self.eventloop.poll().await.is_ok() {}
            })
            .await;
        }
    }
}

/// The local broker for external-broker tests, or `None` (printed) when `SCALESENSE_TEST_MQTT`
/// is unset outside CI.
pub fn test_mqtt() -> Option<BrokerUrl> {
    let Ok(url) = std::env::var("SCALESENSE_TEST_MQTT") else {
        assert!(
            !ci(),
            "CI=true but SCALESENSE_TEST_MQTT is not set (export SCALESENSE_TEST_MQTT=mqtt://127.0.0.1:1883)"
        );
        println!("skipped: SCALESENSE_TEST_MQTT not set");
        return None;
    };
    Some(
        url.parse()
            .expect("SCALESENSE_TEST_MQTT is mqtt://host:port"),
    )
}

/// Removes a persistent session from the external broker (connect with a clean session and
/// leave), so a test leaves no queue behind.
pub async fn clear_session(broker: &BrokerUrl, client_id: &str) {
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    let _ = client.try_disconnect();
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
