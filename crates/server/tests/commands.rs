//! Issue #8 end to end through a real broker (the embedded one, and Mosquitto when
//! `SCALESENSE_TEST_MQTT` is set): a command issued on the REST API travels retained to a scale
//! running the real firmware core, the scale's answer comes back through the ingest pipeline,
//! and its effects (tare record and telemetry copy, the beer's weight badge, calibration and the
//! drift alert, the "Kicked?" suspicion) land in the store and on the event bus.
//!
//! One virtual clock drives everything: the scale's samples and epoch, the API's `issued_at` and
//! `expires_at`, the pipeline and the alert engine. The test moves it forward half a second per
//! sample, so ten minutes of readings take a moment and expiry is exact.
#![allow(clippy::unwrap_used, clippy::too_many_lines, dead_code)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{TestStore, account, clear_session, tap, test_mqtt, unique, wait_for};
use http_body_util::BodyExt;
use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, MqttOptions, Packet, QoS};
use scalesense_api::{ApiConfig, ApiState};
use scalesense_firmware_core::calibration::{Calibration, TareRecord};
use scalesense_firmware_core::ring::PublishId;
use scalesense_firmware_core::settings::{MemoryStore, Settings};
use scalesense_firmware_core::{Action, DeviceConfig, Handled, Scale};
use scalesense_proto::payload::VersionString;
use scalesense_proto::{DeviceId, LocationId, TapId};
use scalesense_server::commands::{MqttCommandSink, expire_due};
use scalesense_server::embedded::EmbeddedBroker;
use scalesense_server::events::{Event, EventBus, Subscription};
use scalesense_server::health::Health;
use scalesense_server::pipeline::{self, Pipeline, PipelineConfig};
use scalesense_server::subscriber::{BrokerUrl, Ingest, LinkConfig, LinkPublisher, MqttLink};
use scalesense_store::{
    CommandState, KegId, NewApiToken, RecordId, Role, Series, TareKind, WeightSource,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Where the virtual clock starts (2027-01-15).
const START_MS: i64 = 1_800_000_000_000;
/// One load-cell sample, as the board takes them.
const SAMPLE_MS: i64 = 500;
/// Counts per pound of the test scale's (nominal) calibration, zero at 0 counts.
const COUNTS_PER_LB: f64 = 5_000.0;
const EMPTY_LBS: f64 = 29.0;
const FULL_LBS: f64 = 160.0;
const WAIT: Duration = Duration::from_secs(30);

/// The one clock of the test: server, API, alert engine and scale read it; the scale moves it.
#[derive(Debug)]
struct TestClock(AtomicI64);

impl TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn advance(&self, ms: i64) -> i64 {
        self.0.fetch_add(ms, Ordering::SeqCst) + ms
    }
}

impl scalesense_server::clock::Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.now()
    }
}

impl scalesense_api::Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.now()
    }
}

impl scalesense_alerts::Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.now()
    }
}

/// The server's pieces as `up`/`serve` wire them, plus the REST API on the same clock.
struct Stack {
    store: TestStore,
    clock: Arc<TestClock>,
    events: EventBus,
    router: axum::Router,
    token: String,
    acks: Arc<LinkPublisher>,
    /// Where scales connect.
    mqtt: BrokerUrl,
    broker: Option<EmbeddedBroker>,
    /// The persistent session to remove afterwards (external broker).
    session: Option<(BrokerUrl, String)>,
    health: Health,
    link: MqttLink,
    link_stop: CancellationToken,
    pipeline: JoinHandle<()>,
    pipeline_stop: CancellationToken,
}

/// Which broker a test runs through.
#[derive(Debug, Clone)]
enum Broker {
    Embedded,
    External(BrokerUrl),
}

impl Broker {
    /// Mosquitto from `SCALESENSE_TEST_MQTT`, or `None` (printed) outside CI.
    fn mosquitto() -> Option<Self> {
        test_mqtt().map(Self::External)
    }
}

impl Stack {
    /// Eleven minutes pass without an answer: the sweep marks command `id` (the only one due)
    /// expired, and the retained message for `device` is cleared.
    async fn expire_unanswered(&self, id: &str, device: &DeviceId) {
        self.clock.advance(11 * 60_000);
        assert_eq!(
            expire_due(
                self.store.store.as_ref(),
                self.acks.as_ref(),
                self.clock.now()
            )
            .await
            .unwrap(),
            1
        );
        assert_eq!(self.command_state(id).await["state"], "expired");
        wait_for("the expired command to be cleared", WAIT, || async {
            !retained_on(&self.mqtt, &format!("keg/command/{device}/+")).await
        })
        .await;
    }

    async fn start(broker: Broker) -> Self {
        common::init_logging();
        let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
        let clock = Arc::new(TestClock(AtomicI64::new(START_MS)));
        let server_clock: Arc<dyn scalesense_server::clock::Clock> = clock.clone();
        let health = Health::new();
        let events = EventBus::default();
        let config = PipelineConfig {
            backoff_max: Duration::from_millis(500),
            ..PipelineConfig::default()
        };
        let (sender, rx) = pipeline::channel(&config);
        let (embedded, mqtt, ingest, client_id) = match broker {
            Broker::Embedded => {
                let broker = EmbeddedBroker::start(
                    "127.0.0.1:0".parse().unwrap(),
                    sender,
                    Arc::clone(&server_clock),
                )
                .await
                .unwrap();
                let addr = broker.local_addr();
                let url = BrokerUrl {
                    host: addr.ip().to_string(),
                    port: addr.port(),
                };
                (Some(broker), url, None, unique("cmd-test-server-"))
            }
            Broker::External(url) => (
                None,
                url,
                Some(Ingest {
                    pipeline: sender,
                    shared_group: None,
                }),
                unique("cmd-test-server-"),
            ),
        };
        let external = ingest.is_some();
        let link_stop = CancellationToken::new();
        let mut link_config = LinkConfig::new(mqtt.clone(), client_id.clone(), ingest);
        link_config.max_backoff = Duration::from_millis(500);
        let link = MqttLink::start(
            link_config,
            health.clone(),
            Arc::clone(&server_clock),
            link_stop.clone(),
        )
        .unwrap();
        let acks = Arc::new(link.publisher());
        let engine = Arc::new(scalesense_alerts::AlertEngine::new(
            Arc::clone(&store.store),
            clock.clone(),
            Arc::new(events.clone()),
        ));
        let pipeline_stop = CancellationToken::new();
        let pipeline = Pipeline::new(
            Arc::clone(&store.store),
            events.clone(),
            Some(acks.clone()),
            Arc::clone(&server_clock),
            health.clone(),
            config,
        )
        .with_alert_engine(engine);
        let pipeline = tokio::spawn(pipeline.run(rx, pipeline_stop.clone()));
        let api = ApiState::new(
            Arc::clone(&store.store),
            clock.clone(),
            Arc::new(MqttCommandSink::new(link.publisher())),
            ApiConfig::default(),
        )
        .unwrap()
        .with_changes(Arc::new(scalesense_server::web::BusChanges::new(
            events.clone(),
            server_clock,
        )));
        let token = scalesense_api::auth::secrets::new_api_token();
        store
            .store
            .create_api_token(
                &account(),
                &NewApiToken {
                    id: RecordId::try_from("tok-commands").unwrap(),
                    token_hash: scalesense_api::auth::secrets::token_hash(&token),
                    name: "commands test".into(),
                    role: Role::Manager,
                    created_at: START_MS,
                },
            )
            .await
            .unwrap();
        let stack = Self {
            store,
            clock,
            events,
            router: scalesense_api::router(api),
            token,
            acks,
            mqtt: mqtt.clone(),
            broker: embedded,
            session: external.then_some((mqtt, client_id)),
            health,
            link,
            link_stop,
            pipeline,
            pipeline_stop,
        };
        wait_for("the server's MQTT client to connect", WAIT, || async {
            stack.health.broker_connected()
        })
        .await;
        stack
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `POST /taps/{id}/command`; returns the command id.
    async fn command(&self, tap: &TapId, body: Value) -> String {
        let (status, answer) = self
            .request(
                Method::POST,
                &format!("/api/v1/taps/{}/command", path_seg(tap.as_str())),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    }

    async fn command_state(&self, id: &str) -> Value {
        let (status, answer) = self
            .request(Method::GET, &format!("/api/v1/commands/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }

    /// A new scale on a new tap of the demo bar with a fresh keg of the demo beer tapped on it.
    async fn scale_with_keg(&self, number: u16) -> (DeviceId, TapId, KegId) {
        let device = self.store.add_scale(number, &unique("SCALE-")).await;
        let keg = self.new_keg().await;
        let tap = tap(number);
        let (status, body) = self
            .request(
                Method::PATCH,
                &format!("/api/v1/taps/{}", path_seg(tap.as_str())),
                Some(json!({ "keg_id": keg.as_str() })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (device, tap, keg)
    }

    /// `POST /kegs`: a half barrel of the demo beer.
    async fn new_keg(&self) -> KegId {
        let beer = self
            .store
            .store
            .tap(&account(), &tap(1))
            .await
            .unwrap()
            .beer_id
            .unwrap();
        let (status, body) = self
            .request(
                Method::POST,
                "/api/v1/kegs",
                Some(json!({
                    "location_id": "loc-001",
                    "beer_id": beer.as_str(),
                    "keg_type": "half_barrel",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        KegId::try_from(body["id"].as_str().unwrap()).unwrap()
    }

    fn subscribe(&self) -> Subscription {
        self.events
            .subscribe(&LocationId::try_from("loc-001").unwrap())
    }

    /// Stops the server; on Mosquitto, removes what the test left there: the scale's retained
    /// status and the server's persistent session.
    async fn stop(self, devices: &[&DeviceId]) {
        self.link_stop.cancel();
        self.link.join().await;
        if let Some(broker) = self.broker {
            broker.stop().await;
        }
        self.pipeline_stop.cancel();
        self.pipeline.await.unwrap();
        if let Some((url, client_id)) = &self.session {
            for device in devices {
                clear_retained(url, &format!("keg/status/{device}")).await;
            }
            clear_session(url, client_id).await;
        }
        self.store.cleanup().await;
    }
}

fn path_seg(id: &str) -> String {
    id.replace('#', "%23")
}

/// Deletes a retained message (an empty retained publish) and waits for its PUBACK.
async fn clear_retained(broker: &BrokerUrl, topic: &str) {
    let mut options = MqttOptions::new(unique("cleaner-"), broker.host.clone(), broker.port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    client
        .publish(topic, QoS::AtLeastOnce, true, Vec::<u8>::new())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let MqttEvent::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
                break;
            }
        }
    })
    .await
    .expect("the clearing publish is acknowledged");
    let _ = client.try_disconnect();
}

/// Whether a fresh subscriber to `filter` is handed a non-empty retained message within a second.
async fn retained_on(broker: &BrokerUrl, filter: &str) -> bool {
    let mut options = MqttOptions::new(unique("probe-"), broker.host.clone(), broker.port);
    options.set_keep_alive(Duration::from_secs(30));
    let (probe, mut eventloop) = AsyncClient::new(options, 16);
    probe.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let found = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::Publish(p)))
                    if p.retain && !p.payload.is_empty() =>
                {
                    return true;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = probe.try_disconnect();
    found
}

/// Waits for the first event that `pick` accepts, skipping the others.
async fn next_event<T>(events: &mut Subscription, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("the bus is open");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .expect("the expected event within the time limit")
}

/// A scale as the board runs it: the real firmware core, fed load-cell samples (a weight the
/// test sets) on the shared virtual clock, talking MQTT over its own connection. Every message
/// it sends or receives is kept in `transcript`.
struct TestScale {
    device: DeviceId,
    scale: Scale<MemoryStore>,
    clock: Arc<TestClock>,
    lbs: f64,
    link: Option<ScaleLink>,
    transcript: Vec<String>,
    /// Power fails right after the next command has run, before its answer is sent.
    crash_after_next_command: bool,
}

struct ScaleLink {
    client: AsyncClient,
    events: mpsc::Receiver<Result<MqttEvent, ConnectionError>>,
    pump: JoinHandle<()>,
    /// Publishes handed to the client, waiting for their packet id (assigned in order).
    handed: VecDeque<Option<PublishId>>,
    in_flight: HashMap<u16, PublishId>,
}

impl Drop for ScaleLink {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl TestScale {
    /// A scale calibrated at the nominal factor whose empty keg weight is already tared (as
    /// after the previous keg), with `lbs` on the platform.
    fn new(device: &DeviceId, clock: &Arc<TestClock>, lbs: f64) -> Self {
        let settings = Settings {
            calibration: Some(Calibration::nominal(0)),
            tare: scalesense_firmware_core::calibration::Tare {
                empty: Some(TareRecord {
                    raw: raw(EMPTY_LBS),
                    lbs: EMPTY_LBS,
                }),
                full: None,
            },
            ..Settings::default()
        };
        Self {
            device: device.clone(),
            scale: boot(device, clock, settings),
            clock: Arc::clone(clock),
            lbs,
            link: None,
            transcript: Vec::new(),
            crash_after_next_command: false,
        }
    }

    /// Power comes back: the firmware starts over from the settings it had saved, and whatever
    /// it had not yet sent is gone with the connection.
    fn reboot(&mut self) {
        self.link = None;
        let settings = self.scale.settings().clone();
        self.scale = boot(&self.device, &self.clock, settings);
        self.transcript.push("scale  :: rebooted".to_owned());
    }

    fn connect(&mut self, broker: &BrokerUrl) {
        let mut options = MqttOptions::new(self.device.as_str(), broker.host.clone(), broker.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(options, 32);
        let (tx, events) = mpsc::channel(64);
        let pump = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let end = event.is_err();
                if tx.send(event).await.is_err() || end {
                    return;
                }
            }
        });
        self.link = Some(ScaleLink {
            client,
            events,
            pump,
            handed: VecDeque::new(),
            in_flight: HashMap::new(),
        });
    }

    fn disconnect(&mut self) {
        self.link = None;
        self.scale.on_disconnected(self.now());
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.now()).unwrap()
    }

    /// Handles one link event.
    fn on_event(&mut self, event: Result<MqttEvent, ConnectionError>) {
        let now = self.now();
        let Some(link) = &mut self.link else { return };
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                let filters = self.scale.subscriptions().map(|f| {
                    rumqttc::SubscribeFilter::new(f.as_str().to_owned(), QoS::AtLeastOnce)
                });
                link.client.try_subscribe_many(filters).unwrap();
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(_))) => self.scale.on_connected(now),
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                self.transcript.push(format!(
                    "scale  <- {} (retained: {}) {}",
                    p.topic,
                    p.retain,
                    if payload.is_empty() {
                        "<empty: cleared>"
                    } else {
                        &payload
                    }
                ));
                if !p.payload.is_empty() {
                    let handled = self.scale.on_message(now, &p.topic, &p.payload);
                    self.transcript.push(format!("scale  :: {handled:?}"));
                    if matches!(handled, Ok(Handled::Command { .. }))
                        && self.crash_after_next_command
                    {
                        self.crash_after_next_command = false;
                        self.reboot();
                    }
                }
            }
            Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                if let Some(Some(id)) = link.handed.pop_front() {
                    link.in_flight.insert(pkid, id);
                }
            }
            Ok(MqttEvent::Incoming(Packet::PubAck(ack))) => {
                if let Some(id) = link.in_flight.remove(&ack.pkid) {
                    self.scale.on_puback(id);
                }
            }
            Ok(_) => {}
            Err(e) => panic!("scale {} lost its connection: {e}", self.device),
        }
    }

    /// Carries out the firmware's actions: publishes go to the broker.
    fn drain_actions(&mut self) {
        while let Some(action) = self.scale.poll() {
            let Action::Publish(p) = action else { continue };
            let Some(link) = &mut self.link else { continue };
            let payload = p.payload.to_vec();
            self.transcript.push(format!(
                "scale  -> {} (retained: {}) {}",
                p.topic,
                p.retain,
                String::from_utf8_lossy(&payload)
            ));
            link.client
                .try_publish(p.topic.as_str(), QoS::AtLeastOnce, p.retain, payload)
                .unwrap();
            link.handed.push_back(p.ack);
        }
    }

    /// One turn: handle what arrived (waiting up to 10 ms for something, which paces virtual
    /// time against the network), then take one sample half a second later.
    async fn turn(&mut self) {
        if let Some(link) = &mut self.link {
            let first = tokio::time::timeout(Duration::from_millis(10), link.events.recv()).await;
            let mut arrived: Vec<_> = first.ok().flatten().into_iter().collect();
            while let Ok(event) = link.events.try_recv() {
                arrived.push(event);
            }
            for event in arrived {
                self.on_event(event);
            }
        }
        self.drain_actions();
        let now = u64::try_from(self.clock.advance(SAMPLE_MS)).unwrap();
        self.scale.on_sample(now, raw(self.lbs), None);
        self.scale.tick(now);
        self.drain_actions();
    }

    /// Runs `ms` of virtual time.
    async fn run_for(&mut self, ms: i64) {
        let until = self.clock.now() + ms;
        while self.clock.now() < until {
            self.turn().await;
        }
    }

    /// Runs until `check` holds; panics naming `what` after [`WAIT`] of real time.
    async fn run_until<F, Fut>(&mut self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            for _ in 0..4 {
                self.turn().await;
            }
        }
    }
}

/// A scale's firmware starting with `settings` saved.
fn boot(device: &DeviceId, clock: &Arc<TestClock>, settings: Settings) -> Scale<MemoryStore> {
    let now = u64::try_from(clock.now()).unwrap();
    let Ok(mut scale) = Scale::new(
        DeviceConfig {
            device_id: device.clone(),
            firmware_version: VersionString::try_from("1.0.0").unwrap(),
        },
        MemoryStore::with(settings),
        now,
    );
    scale.on_clock(now, now);
    // The board measures its battery (4.0 V cell, halved by the divider) and signal at boot.
    scale.on_battery(scalesense_firmware_core::battery::Battery::from_pin_millivolts(2_000));
    scale.on_rssi(-60);
    scale
}

fn raw(lbs: f64) -> i32 {
    (lbs * COUNTS_PER_LB).round() as i32
}

// ---------------------------------------------------------------------------------------------

/// Tare from the API → the scale answers → tare record on the keg, copy on the telemetry, the
/// beer's badge, `tare_updated` on the bus, and no retained command left; the same command
/// delivered again and the same answer resent change nothing.
async fn tare_round_trip(broker: Broker, print_transcript: bool) {
    let stack = Stack::start(broker).await;
    let (device, tap, keg) = stack.scale_with_keg(2).await;
    let mut events = stack.subscribe();
    let mut scale = TestScale::new(&device, &stack.clock, FULL_LBS);
    scale.connect(&stack.mqtt);
    // Connected, and the full keg's weight has settled.
    scale.run_for(30_000).await;
    assert!(scale.scale.is_connected());

    let beer = stack
        .store
        .store
        .keg(&account(), &keg)
        .await
        .unwrap()
        .beer_id;
    let before = stack
        .store
        .store
        .beer_keg_weights(&account(), &beer)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.keg_type == "half_barrel")
        .unwrap();
    assert_eq!(before.source, WeightSource::Default);

    let id = stack.command(&tap, json!({ "command": "tare_full" })).await;
    let command_topic = format!("keg/command/{device}/tare_full");
    scale
        .run_until("the tare answer to be recorded", || async {
            stack.command_state(&id).await["state"] == "succeeded"
        })
        .await;

    // The tare record on the keg (source of truth) and its copy on the telemetry.
    let records = stack
        .store
        .store
        .tare_records(&account(), &keg)
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].kind, TareKind::Full);
    let full_kg = FULL_LBS * 0.453_592_37;
    assert!((records[0].weight_kg - full_kg).abs() < 0.05, "{records:?}");
    assert!(
        records[0].by.starts_with("token:tok-commands"),
        "{records:?}"
    );
    let telemetry = stack
        .store
        .store
        .telemetry(&account(), &device)
        .await
        .unwrap();
    assert!((telemetry.tare_full_kg.unwrap() - records[0].weight_kg).abs() < 1e-9);
    assert_eq!(telemetry.tare_at, Some(records[0].at));
    // The badge: the library default became this account's measured weight.
    let after = stack
        .store
        .store
        .beer_keg_weights(&account(), &beer)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.keg_type == "half_barrel")
        .unwrap();
    assert_eq!(after.source, WeightSource::Set);
    assert_eq!(after.measured_count, 1);
    assert!((after.full_kg - records[0].weight_kg).abs() < 1e-9);
    assert!(
        (after.empty_kg - before.empty_kg).abs() < 1e-9,
        "empty weight kept"
    );

    let tare_event = next_event(&mut events, |e| match e {
        Event::TareUpdated { .. } => Some(e.clone()),
        _ => None,
    })
    .await;
    let Event::TareUpdated {
        tap_id,
        keg_id,
        kind,
        beer_weight,
        device_id,
        ..
    } = &tare_event
    else {
        unreachable!()
    };
    assert_eq!(
        (tap_id, keg_id, device_id, *kind),
        (&tap, &keg, &device, TareKind::Full)
    );
    assert_eq!(beer_weight.as_ref().unwrap().source, WeightSource::Set);

    // No retained command is left for the device.
    wait_for("the retained command to be cleared", WAIT, || async {
        !retained_on(&stack.mqtt, &format!("keg/command/{device}/+")).await
    })
    .await;

    // The same command delivered again (as a late redelivery would) is not run again, and the
    // same answer resent is a duplicate: still one tare record.
    let redelivered = stack
        .store
        .store
        .command(&account(), &id.as_str().try_into().unwrap())
        .await
        .unwrap();
    let wire = json!({
        "v": 1,
        "id": id,
        "params": {},
        "issued_at": redelivered.issued_at,
        "expires_at": redelivered.expires_at,
    })
    .to_string();
    let sent_before = scale
        .transcript
        .iter()
        .filter(|l| l.contains("keg/response/"))
        .count();
    let response = scale
        .transcript
        .iter()
        .find(|l| l.starts_with("scale  -> keg/response/"))
        .cloned()
        .unwrap();
    let response_payload = response.split_once(") ").unwrap().1.to_owned();
    let mut other = common::ScalePublisher::new(
        format!("{}:{}", stack.mqtt.host, stack.mqtt.port)
            .parse()
            .unwrap(),
        &unique("replayer-"),
    );
    other.publish(&command_topic, wire.as_bytes(), WAIT).await;
    other
        .publish(
            &format!("keg/response/{device}"),
            response_payload.as_bytes(),
            WAIT,
        )
        .await;
    scale.run_for(10_000).await;
    assert!(
        scale.transcript.iter().any(|l| l.contains("Duplicate")),
        "the scale saw the redelivered id as a duplicate:\n{}",
        scale.transcript.join("\n")
    );
    let sent_after = scale
        .transcript
        .iter()
        .filter(|l| l.contains("keg/response/"))
        .count();
    assert_eq!(
        sent_before, sent_after,
        "the scale did not answer the duplicate"
    );
    assert_eq!(
        stack
            .store
            .store
            .tare_records(&account(), &keg)
            .await
            .unwrap()
            .len(),
        1
    );
    let weight = stack
        .store
        .store
        .beer_keg_weights(&account(), &beer)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.keg_type == "half_barrel")
        .unwrap();
    assert_eq!(
        weight.measured_count, 1,
        "the resent answer was not counted again"
    );
    // The replayed command left a retained message: clear it as the server would.
    clear_retained(&stack.mqtt, &command_topic).await;
    other.disconnect().await;

    if print_transcript {
        println!("--- one tare round trip (device {device}) ---");
        for line in &scale.transcript {
            if !line.contains("keg/readings/") {
                println!("{line}");
            }
        }
        println!("server :: {}", serde_json::to_string(&tare_event).unwrap());
    }
    scale.disconnect();
    stack.stop(&[&device]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_tare_round_trip_records_once_and_leaves_nothing_retained() {
    Box::pin(tare_round_trip(Broker::Embedded, true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_tare_round_trip_records_once_and_leaves_nothing_retained() {
    let Some(broker) = Broker::mosquitto() else {
        return;
    };
    Box::pin(tare_round_trip(broker, false)).await;
}

/// A tare sent while the scale is offline, which comes back only after the command expired:
/// the scale refuses it, nothing is recorded, and nothing stays retained.
async fn late_scale(broker: Broker) {
    let stack = Stack::start(broker).await;
    let (device, tap, keg) = stack.scale_with_keg(2).await;
    let mut scale = TestScale::new(&device, &stack.clock, FULL_LBS);
    let id = stack.command(&tap, json!({ "command": "tare_full" })).await;
    // Eleven minutes offline (the command lives ten).
    scale.run_for(11 * 60_000).await;
    scale.connect(&stack.mqtt);
    scale
        .run_until("the scale's refusal to be recorded", || async {
            stack.command_state(&id).await["state"] != "pending"
        })
        .await;
    let answered = stack.command_state(&id).await;
    assert_eq!(answered["state"], "failed", "{answered}");
    assert!(
        answered["result"]["error"]
            .as_str()
            .unwrap()
            .starts_with("expired"),
        "{answered}"
    );
    assert!(
        stack
            .store
            .store
            .tare_records(&account(), &keg)
            .await
            .unwrap()
            .is_empty()
    );
    wait_for("the retained command to be cleared", WAIT, || async {
        !retained_on(&stack.mqtt, &format!("keg/command/{device}/+")).await
    })
    .await;

    // A command nobody answers expires in the sweep, and its retained message goes too.
    scale.disconnect();
    let id = stack
        .command(&tap, json!({ "command": "tare_empty" }))
        .await;
    stack.expire_unanswered(&id, &device).await;
    let stored = stack
        .store
        .store
        .command(&account(), &id.as_str().try_into().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.state, CommandState::Expired);
    assert!(
        stack
            .store
            .store
            .tare_records(&account(), &keg)
            .await
            .unwrap()
            .is_empty()
    );
    stack.stop(&[&device]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_an_expired_command_is_never_run_by_a_late_scale() {
    Box::pin(late_scale(Broker::Embedded)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_an_expired_command_is_never_run_by_a_late_scale() {
    let Some(broker) = Broker::mosquitto() else {
        return;
    };
    Box::pin(late_scale(broker)).await;
}

/// A scale that runs a command and loses power before its answer leaves. After the reboot the
/// retained command arrives again and is recognised as already run, so nothing runs twice; no
/// answer ever comes, so the command expires and its retained message is cleared: nothing hangs.
async fn reboot_mid_command(broker: Broker) {
    let stack = Stack::start(broker).await;
    let (device, tap, keg) = stack.scale_with_keg(3).await;
    let mut scale = TestScale::new(&device, &stack.clock, FULL_LBS);
    scale.connect(&stack.mqtt);
    scale.run_for(30_000).await;
    assert!(scale.scale.is_connected());

    scale.crash_after_next_command = true;
    let id = stack.command(&tap, json!({ "command": "tare_full" })).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while scale.link.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the scale to run the command and reboot"
        );
        scale.turn().await;
    }
    // It ran: the full tare is in the settings it saved before the power failed.
    let tared = scale.scale.settings().tare.full;
    assert!(tared.is_some(), "{:?}", scale.transcript);

    scale.connect(&stack.mqtt);
    let transcript_from = scale.transcript.len();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !scale.transcript[transcript_from..]
        .iter()
        .any(|l| l.contains("Duplicate"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the retained command to arrive again: {:?}",
            scale.transcript
        );
        scale.turn().await;
    }
    scale.run_for(10_000).await;
    assert_eq!(scale.scale.settings().tare.full, tared, "run once only");
    assert!(
        !scale.transcript[transcript_from..]
            .iter()
            .any(|l| l.starts_with("scale  -> keg/response/")),
        "a command already run is not answered again: {:?}",
        scale.transcript
    );
    assert_eq!(stack.command_state(&id).await["state"], "pending");

    // The answer never comes: the sweep expires the command and clears its retained message.
    stack.expire_unanswered(&id, &device).await;
    assert!(
        stack
            .store
            .store
            .tare_records(&account(), &keg)
            .await
            .unwrap()
            .is_empty(),
        "the server records no tare it never heard of"
    );
    stack.stop(&[&device]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_scale_rebooting_mid_command_leaves_nothing_hanging() {
    Box::pin(reboot_mid_command(Broker::Embedded)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_a_scale_rebooting_mid_command_leaves_nothing_hanging() {
    let Some(broker) = Broker::mosquitto() else {
        return;
    };
    Box::pin(reboot_mid_command(broker)).await;
}

/// Two calibrations with the same reference weight, the second reading 5 % more counts: the
/// second records a 5 % drift, announces it, and raises the drift alert.
async fn calibration_drift(broker: Broker) {
    let stack = Stack::start(broker).await;
    let (device, tap, _keg) = stack.scale_with_keg(2).await;
    let mut events = stack.subscribe();
    let mut scale = TestScale::new(&device, &stack.clock, 20.0);
    scale.connect(&stack.mqtt);
    scale.run_for(30_000).await;

    let first = stack
        .command(
            &tap,
            json!({ "command": "calibrate", "known_weight_lbs": 20.0 }),
        )
        .await;
    scale
        .run_until("the first calibration", || async {
            stack.command_state(&first).await["state"] == "succeeded"
        })
        .await;
    let current = stack
        .store
        .store
        .calibration(&account(), &device)
        .await
        .unwrap()
        .unwrap();
    assert!(
        (current.scale_factor - COUNTS_PER_LB / 0.453_592_37).abs() < 5.0,
        "{current:?}"
    );
    assert_eq!(current.drift_pct, None, "nothing to drift from");

    // The same reference weight now reads 5 % more counts.
    scale.lbs = 21.0;
    scale.run_for(30_000).await;
    let second = stack
        .command(
            &tap,
            json!({ "command": "calibrate", "known_weight_lbs": 20.0 }),
        )
        .await;
    scale
        .run_until("the second calibration", || async {
            stack.command_state(&second).await["state"] == "succeeded"
        })
        .await;
    let current = stack
        .store
        .store
        .calibration(&account(), &device)
        .await
        .unwrap()
        .unwrap();
    let drift = current.drift_pct.unwrap();
    assert!((drift - 5.0).abs() < 0.1, "{current:?}");
    assert_eq!(
        stack
            .store
            .store
            .calibration_history(&account(), &device, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let announced = next_event(&mut events, |e| match e {
        Event::CalibrationUpdated {
            drift_pct: Some(d),
            device_id,
            ..
        } if *device_id == device => Some(*d),
        _ => None,
    })
    .await;
    assert!((announced - drift).abs() < 1e-9);
    let fired = next_event(&mut events, |e| match e {
        Event::AlertFired { alert, .. } if alert.kind.to_string() == "calibration_drift" => {
            Some(alert.entity.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(fired, device.as_str());
    let active = stack
        .store
        .store
        .active_alerts(&account(), &LocationId::try_from("loc-001").unwrap())
        .await
        .unwrap();
    assert!(
        active
            .iter()
            .any(|a| a.kind == "calibration_drift" && a.entity == device.as_str()),
        "{active:?}"
    );
    scale.disconnect();
    stack.stop(&[&device]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_calibration_drift_over_two_percent_raises_the_alert() {
    Box::pin(calibration_drift(Broker::Embedded)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_calibration_drift_over_two_percent_raises_the_alert() {
    let Some(broker) = Broker::mosquitto() else {
        return;
    };
    Box::pin(calibration_drift(broker)).await;
}

/// Assign a keg, tare it full, pour it down to nothing over twenty minutes: after ten minutes
/// near zero the tap is
/// "Kicked?"; a manager confirms, the next keg goes on, and the old keg's history stays its own.
async fn keg_lifecycle(broker: Broker) {
    let stack = Stack::start(broker).await;
    let mut events = stack.subscribe();
    let (device, tap, first_keg) = stack.scale_with_keg(2).await;
    let assigned = next_event(&mut events, |e| match e {
        Event::TapUpdated {
            tap_id, changed, ..
        } if *tap_id == tap => Some(changed.clone()),
        _ => None,
    })
    .await;
    assert!(assigned.contains(&"keg_id".to_owned()), "{assigned:?}");

    let mut scale = TestScale::new(&device, &stack.clock, FULL_LBS);
    scale.connect(&stack.mqtt);
    scale.run_for(30_000).await;
    let tare = stack.command(&tap, json!({ "command": "tare_full" })).await;
    scale
        .run_until("the full tare", || async {
            stack.command_state(&tare).await["state"] == "succeeded"
        })
        .await;

    // Pour it down over twenty minutes, then leave the empty keg on the scale.
    let tap_path = format!("/api/v1/taps/{}", path_seg(tap.as_str()));
    for step in 1..=20 {
        scale.lbs = FULL_LBS - (FULL_LBS - EMPTY_LBS - 0.5) * f64::from(step) / 20.0;
        scale.run_for(60_000).await;
    }
    let (_, view) = stack.request(Method::GET, &tap_path, None).await;
    assert!(
        view["level_pct"].as_f64().is_some_and(|l| l < 3.0),
        "{view}\n{:?}\n{}",
        stack
            .store
            .dead_letters()
            .await
            .iter()
            .take(3)
            .collect::<Vec<_>>(),
        scale
            .transcript
            .iter()
            .rev()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        view["kick_suspected"], false,
        "not yet ten minutes near zero"
    );
    scale
        .run_until("the tap to be suspected kicked", || async {
            stack.request(Method::GET, &tap_path, None).await.1["kick_suspected"] == true
        })
        .await;
    let changed = next_event(&mut events, |e| match e {
        Event::TapUpdated {
            tap_id, changed, ..
        } if *tap_id == tap && changed.contains(&"kick_suspected".to_owned()) => {
            Some(changed.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(changed, ["kick_suspected"]);

    // A manager confirms; the next keg goes on.
    let (status, kicked) = stack
        .request(
            Method::PATCH,
            &format!("/api/v1/kegs/{first_keg}"),
            Some(json!({ "state": "kicked" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{kicked}");
    assert_eq!(kicked["state"], "kicked");
    next_event(&mut events, |e| match e {
        Event::TapUpdated {
            tap_id, changed, ..
        } if *tap_id == tap && changed.contains(&"keg_id".to_owned()) => Some(()),
        _ => None,
    })
    .await;
    let (_, view) = stack.request(Method::GET, &tap_path, None).await;
    assert_eq!(view["keg_id"], Value::Null);
    assert_eq!(view["kick_suspected"], false);
    let old_history = stack
        .store
        .store
        .readings(
            &account(),
            &Series::Keg(first_keg.clone()),
            0,
            i64::MAX,
            100_000,
        )
        .await
        .unwrap();
    assert!(
        old_history.len() > 20,
        "half an hour of readings: {}",
        old_history.len()
    );

    let second_keg = stack.new_keg().await;
    let (status, body) = stack
        .request(
            Method::PATCH,
            &tap_path,
            Some(json!({ "keg_id": second_keg.as_str() })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    scale.lbs = FULL_LBS;
    scale.run_for(30_000).await;
    let tare = stack.command(&tap, json!({ "command": "tare_full" })).await;
    scale
        .run_until("the new keg's full tare", || async {
            stack.command_state(&tare).await["state"] == "succeeded"
        })
        .await;
    scale
        .run_until("readings of the new keg", || async {
            !stack
                .store
                .store
                .readings(
                    &account(),
                    &Series::Keg(second_keg.clone()),
                    0,
                    i64::MAX,
                    10,
                )
                .await
                .unwrap()
                .is_empty()
        })
        .await;
    // The old keg's history is intact and separate; its tare stays its own.
    let old_after = stack
        .store
        .store
        .readings(
            &account(),
            &Series::Keg(first_keg.clone()),
            0,
            i64::MAX,
            100_000,
        )
        .await
        .unwrap();
    assert_eq!(old_after, old_history);
    assert!(
        old_after
            .iter()
            .all(|r| r.keg_id.as_ref() == Some(&first_keg))
    );
    let new_readings = stack
        .store
        .store
        .readings(
            &account(),
            &Series::Keg(second_keg.clone()),
            0,
            i64::MAX,
            100_000,
        )
        .await
        .unwrap();
    assert!(
        new_readings
            .iter()
            .all(|r| r.ts > old_after.last().unwrap().ts)
    );
    assert_eq!(
        stack
            .store
            .store
            .tare_records(&account(), &first_keg)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        stack
            .store
            .store
            .tare_records(&account(), &second_keg)
            .await
            .unwrap()
            .len(),
        1
    );
    let old = stack.store.store.keg(&account(), &first_keg).await.unwrap();
    assert_eq!(old.state, scalesense_store::KegState::Kicked);
    assert!(old.tapped_at.unwrap() < old.kicked_at.unwrap());
    let (_, view) = stack.request(Method::GET, &tap_path, None).await;
    assert_eq!(view["keg_id"], second_keg.as_str());
    assert_eq!(view["kick_suspected"], false);
    scale.disconnect();
    stack.stop(&[&device]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_keg_lifecycle_kicked_confirmed_and_replaced() {
    Box::pin(keg_lifecycle(Broker::Embedded)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_keg_lifecycle_kicked_confirmed_and_replaced() {
    let Some(broker) = Broker::mosquitto() else {
        return;
    };
    Box::pin(keg_lifecycle(broker)).await;
}
