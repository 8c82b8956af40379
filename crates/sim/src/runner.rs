//! One virtual scale on the broker: its own MQTT connection (client id = device id, clean
//! session, last will = the firmware's offline status), a world stepped to the simulated clock,
//! and the firmware's actions carried out.
//!
//! The rumqttc event loop runs in its own small task (the pump) and hands events over a
//! bounded channel, because its `poll` must not be cancelled half-way through a write; the
//! scale task only ever waits on that channel, a timer and the shutdown token. A Wi-Fi outage
//! aborts the pump, which drops the TCP connection without a DISCONNECT so the broker
//! publishes the last will, exactly as when a real scale loses its radio.
//!
//! Invariants: a reading leaves the firmware's buffer only on its PUBACK (the firmware keeps
//! it until `Scale::on_puback`); nothing is dropped silently — what is still buffered at
//! shutdown is logged and reported.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing,
    Packet, QoS, SubscribeFilter, SubscribeReasonCode,
};
use scalesense_firmware_core::command::DEFAULT_IDENTIFY_S;
use scalesense_firmware_core::ring::PublishId;
use scalesense_firmware_core::{Action, Handled, Publish};
use scalesense_proto::{CommandName, DeviceId, Topic};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::device::{RunOutcome, VirtualScale};
use crate::fleet::{BrokerAddr, FleetConfig, FleetStats, SimClock};
use crate::plan::ScalePlan;
use crate::world::{STEP_MS, WorldEvent};

/// MQTT keep-alive (real time).
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Requests queued towards the event loop.
const REQUEST_CAPACITY: usize = 32;
/// Events queued from the pump.
const EVENT_CAPACITY: usize = 64;
/// Largest packet either way: commands and readings are a few hundred bytes.
const MAX_PACKET: usize = 16 * 1024;
/// Simulated time stepped before the task looks at the network again.
const MAX_CATCH_UP_MS: u64 = 60_000;
/// The shortest real pause between catch-ups: stepping in slightly larger batches costs
/// nothing in fidelity and saves wake-ups at high speeds.
const MIN_WAKE: Duration = Duration::from_millis(5);
/// Reconnect back-off after the broker refused or dropped us (real time).
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long a stopping scale waits for its last PUBACKs (real time).
const STOP_GRACE: Duration = Duration::from_secs(3);

type LinkEvent = Result<Event, ConnectionError>;

/// What a publish was, to count its PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reading,
    Response,
    Status,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    kind: Kind,
    ack: Option<PublishId>,
}

#[derive(Debug)]
struct Outbound {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    sent: Sent,
}

/// One MQTT connection.
#[derive(Debug)]
struct Link {
    client: AsyncClient,
    events: mpsc::Receiver<LinkEvent>,
    pump: JoinHandle<()>,
    /// Connected and subscribed: the firmware has been told.
    session_up: bool,
    /// Firmware publishes not yet taken by the client's request channel. Small by
    /// construction: the firmware keeps at most four readings in flight and a few responses.
    outbox: VecDeque<Outbound>,
    /// Taken by the client, waiting for their packet id (assigned in order).
    handed: VecDeque<Sent>,
    /// Sent, waiting for their PUBACK.
    in_flight: HashMap<u16, Sent>,
}

impl Link {
    fn open(
        device: &DeviceId,
        broker: &BrokerAddr,
        will: (String, Vec<u8>),
        connects: Arc<Semaphore>,
    ) -> Self {
        let mut options = MqttOptions::new(device.as_str(), broker.host.clone(), broker.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            // The firmware resends what was not acknowledged and resubscribes after every
            // connect, so the broker needs to keep nothing for it.
            .set_clean_session(true)
            .set_last_will(LastWill::new(will.0, will.1, QoS::AtLeastOnce, true))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let (tx, events) = mpsc::channel(EVENT_CAPACITY);
        let pump = tokio::spawn(pump(eventloop, tx, connects));
        Self {
            client,
            events,
            pump,
            session_up: false,
            outbox: VecDeque::new(),
            handed: VecDeque::new(),
            in_flight: HashMap::new(),
        }
    }

    fn idle(&self) -> bool {
        self.outbox.is_empty() && self.handed.is_empty() && self.in_flight.is_empty()
    }

    fn flush(&mut self) {
        while let Some(out) = self.outbox.front() {
            let qos = QoS::AtLeastOnce;
            match self
                .client
                .try_publish(out.topic.clone(), qos, out.retain, out.payload.clone())
            {
                Ok(()) => {
                    if let Some(out) = self.outbox.pop_front() {
                        self.handed.push_back(out.sent);
                    }
                }
                // Full (or the event loop is gone, which the pump reports): try again after
                // the next event.
                Err(ClientError::TryRequest(_) | ClientError::Request(_)) => break,
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Aborting drops the event loop and with it the socket, without a DISCONNECT.
        self.pump.abort();
    }
}

/// Polls the event loop and forwards every event until the connection ends.
async fn pump(mut eventloop: EventLoop, tx: mpsc::Sender<LinkEvent>, connects: Arc<Semaphore>) {
    let mut permit = connects.acquire_owned().await.ok();
    loop {
        let event = eventloop.poll().await;
        let end = matches!(event, Err(_) | Ok(Event::Outgoing(Outgoing::Disconnect)));
        if matches!(event, Err(_) | Ok(Event::Incoming(Packet::ConnAck(_)))) {
            permit = None;
        }
        if tx.send(event).await.is_err() || end {
            drop(permit);
            return;
        }
    }
}

/// How one scale ended.
#[derive(Debug, Clone)]
pub(crate) struct ScaleReport {
    pub unsent_readings: usize,
}

/// One scale and its connection.
#[derive(Debug)]
pub(crate) struct ScaleTask {
    device: DeviceId,
    // Boxed: the firmware's offline buffer makes it large, and it lives across awaits.
    scale: Box<VirtualScale>,
    clock: SimClock,
    broker: BrokerAddr,
    stats: Arc<FleetStats>,
    connects: Arc<Semaphore>,
    shutdown: CancellationToken,
    link: Option<Link>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    ever_connected: bool,
}

impl ScaleTask {
    pub(crate) fn new(
        plan: ScalePlan,
        config: &FleetConfig,
        clock: SimClock,
        stats: Arc<FleetStats>,
        connects: Arc<Semaphore>,
        shutdown: CancellationToken,
    ) -> Self {
        let device = plan.device_id.clone();
        debug!(
            device_id = %device,
            tap = %plan.tap_id,
            keg = plan.keg.kind.name(),
            beer = plan.beer.name,
            level_pct = plan.initial_level * 100.0,
            "scale planned"
        );
        Self {
            device,
            scale: Box::new(VirtualScale::new(plan, &config.world, clock.start_ms())),
            clock,
            broker: config.broker.clone(),
            stats,
            connects,
            shutdown,
            link: None,
            retry_at: None,
            retry_delay: RETRY_FIRST,
            ever_connected: false,
        }
    }

    pub(crate) async fn run(mut self) -> ScaleReport {
        let wake = self.clock.real(STEP_MS).max(MIN_WAKE);
        loop {
            let behind = self.catch_up();
            self.maintain_link();
            self.drain_actions();
            if let Some(link) = &mut self.link {
                link.flush();
            }
            let event = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                event = next_event(&mut self.link) => Some(event),
                () = pause(behind, wake) => None,
            };
            if let Some(event) = event {
                self.on_link_event(event);
            }
        }
        self.stop().await
    }

    /// Steps the world to the simulated clock (at most [`MAX_CATCH_UP_MS`] at a time);
    /// `true` when it is still behind.
    fn catch_up(&mut self) -> bool {
        let target = self.clock.now_ms();
        let until = target.min(self.scale.now_ms() + MAX_CATCH_UP_MS);
        loop {
            let device = &self.device;
            let outcome = self.scale.run_until(until, |at_ms, event| {
                log_world_event(device, at_ms, event);
            });
            match outcome {
                RunOutcome::Reached => break,
                RunOutcome::LinkChanged { up: false } => {
                    info!(device_id = %self.device, "Wi-Fi outage: dropping the connection");
                    self.drop_link();
                }
                RunOutcome::LinkChanged { up: true } => {
                    info!(device_id = %self.device, "Wi-Fi back: reconnecting");
                    self.retry_at = None;
                    self.retry_delay = RETRY_FIRST;
                }
            }
            self.drain_actions();
        }
        let lag = target.saturating_sub(self.scale.now_ms());
        self.stats.lag(lag.saturating_sub(STEP_MS));
        self.scale.now_ms() + STEP_MS <= self.clock.now_ms()
    }

    /// Connects when Wi-Fi is up, no connection exists and no back-off is running.
    fn maintain_link(&mut self) {
        if self.link.is_some() || !self.scale.model().link_up() {
            return;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let (topic, payload) = self.scale.scale().last_will();
        self.link = Some(Link::open(
            &self.device,
            &self.broker,
            (topic.as_str().to_owned(), payload.as_bytes().to_vec()),
            Arc::clone(&self.connects),
        ));
    }

    /// Drops the connection without a DISCONNECT (the broker then publishes the last will).
    fn drop_link(&mut self) {
        if let Some(link) = self.link.take() {
            if link.session_up {
                self.stats.session_down();
            }
            drop(link);
        }
        let now = self.scale.now_ms();
        self.scale.scale_mut().on_disconnected(now);
    }

    fn drain_actions(&mut self) {
        while let Some(action) = self.scale.scale_mut().poll() {
            match action {
                Action::Publish(publish) => self.enqueue(&publish),
                Action::Reboot => {
                    info!(device_id = %self.device, "rebooting");
                    self.drop_link();
                    self.scale.reboot();
                }
                Action::OtaOffered(ota) => info!(
                    device_id = %self.device,
                    version = %ota.version,
                    "OTA offered; the simulator does not flash firmware"
                ),
                // The simulator has no LED, screen or BLE radio; identify is logged when the
                // command is answered.
                Action::SetLed(_)
                | Action::Display(_)
                | Action::BleLiveWeight(_)
                | Action::BleResponse(_) => {}
            }
        }
    }

    fn enqueue(&mut self, publish: &Publish) {
        let kind = match Topic::parse(publish.topic.as_str()) {
            Ok(Topic::Reading(_)) => Kind::Reading,
            Ok(Topic::Response(_)) => Kind::Response,
            _ => Kind::Status,
        };
        // The firmware publishes only while told it is connected, and it is told at once when
        // the connection goes; should a publish still find no link, the firmware resends it
        // after the next connect, so nothing is lost by skipping it here.
        if let Some(link) = &mut self.link {
            link.outbox.push_back(Outbound {
                topic: publish.topic.as_str().to_owned(),
                payload: publish.payload.to_vec(),
                retain: publish.retain,
                sent: Sent {
                    kind,
                    ack: publish.ack,
                },
            });
        }
    }

    fn on_link_event(&mut self, event: Option<LinkEvent>) {
        let now = self.scale.now_ms();
        let Some(link) = &mut self.link else {
            return;
        };
        match event {
            Some(Ok(Event::Incoming(packet))) => match packet {
                Packet::ConnAck(_) => {
                    let filters = self
                        .scale
                        .scale()
                        .subscriptions()
                        .iter()
                        .map(|t| SubscribeFilter::new(t.as_str().to_owned(), QoS::AtLeastOnce))
                        .collect::<Vec<_>>();
                    if link.client.try_subscribe_many(filters).is_err() {
                        self.link_failed("could not queue the subscription");
                    }
                }
                Packet::SubAck(ack) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        warn!(device_id = %self.device, "broker refused a subscription: commands will not arrive");
                    }
                    if !link.session_up {
                        link.session_up = true;
                        self.stats.session_up(self.ever_connected);
                        self.ever_connected = true;
                        self.retry_delay = RETRY_FIRST;
                        debug!(device_id = %self.device, "session up");
                        self.scale.scale_mut().on_connected(now);
                    }
                }
                Packet::Publish(message) => self.on_message(now, &message.topic, &message.payload),
                Packet::PubAck(ack) => {
                    if let Some(sent) = link.in_flight.remove(&ack.pkid) {
                        match sent.kind {
                            Kind::Reading => self.stats.reading_acked(),
                            Kind::Response => self.stats.command_answered(),
                            Kind::Status => {}
                        }
                        if let Some(id) = sent.ack {
                            self.scale.scale_mut().on_puback(id);
                        }
                    }
                }
                _ => {}
            },
            Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if let Some(sent) = link.handed.pop_front() {
                    if sent.kind == Kind::Reading {
                        self.stats.reading_sent();
                    }
                    link.in_flight.insert(pkid, sent);
                }
            }
            Some(Ok(Event::Outgoing(_))) => {}
            Some(Err(err)) => self.link_failed(&err.to_string()),
            None => self.link_failed("connection task ended"),
        }
    }

    fn link_failed(&mut self, error: &str) {
        // The first failure of a streak is worth a warning; the retries are not.
        if self.retry_delay == RETRY_FIRST {
            warn!(device_id = %self.device, broker = %self.broker, error, "MQTT connection lost; retrying");
        } else {
            debug!(device_id = %self.device, error, "MQTT connection failed again");
        }
        self.drop_link();
        self.retry_at = Some(Instant::now() + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
    }

    fn on_message(&mut self, now: u64, topic: &str, payload: &[u8]) {
        match self.scale.scale_mut().on_message(now, topic, payload) {
            Ok(Handled::Command { id, ok }) => {
                let command = match Topic::parse(topic) {
                    Ok(Topic::Command { command, .. }) => Some(command),
                    _ => None,
                };
                if ok && command == Some(CommandName::Identify) {
                    let secs = scalesense_proto::decode_command_for(payload, CommandName::Identify)
                        .ok()
                        .and_then(|c| c.params.duration_s)
                        .unwrap_or(DEFAULT_IDENTIFY_S);
                    info!(device_id = %self.device, "{} identify: flashing LED for {secs} s", self.device);
                }
                info!(
                    device_id = %self.device,
                    command = command.map_or("?", CommandName::as_str),
                    id = %id,
                    ok,
                    "command answered"
                );
            }
            Ok(Handled::Duplicate { id }) => {
                debug!(device_id = %self.device, id = %id, "command already run; ignored");
            }
            Ok(Handled::Ota | Handled::Identify) => {}
            Err(err) => warn!(device_id = %self.device, topic, error = %err, "message rejected"),
        }
    }

    /// Says goodbye: the offline status (a switched-off scale's last will would say the
    /// same), the last PUBACKs awaited for a while, then a clean DISCONNECT.
    async fn stop(mut self) -> ScaleReport {
        if let Some(mut link) = self.link.take()
            && link.session_up
        {
            let (topic, payload) = self.scale.scale().last_will();
            link.outbox.push_back(Outbound {
                topic: topic.as_str().to_owned(),
                payload: payload.as_bytes().to_vec(),
                retain: true,
                sent: Sent {
                    kind: Kind::Status,
                    ack: None,
                },
            });
            link.flush();
            self.link = Some(link);
            let deadline = Instant::now() + STOP_GRACE;
            while self.link.as_ref().is_some_and(|l| !l.idle()) {
                let event = tokio::select! {
                    event = next_event(&mut self.link) => event,
                    () = sleep_until(deadline) => break,
                };
                self.on_link_event(event);
                if let Some(link) = &mut self.link {
                    link.flush();
                }
            }
            // A failure while waiting has already dropped the link and counted it.
            if let Some(mut link) = self.link.take() {
                self.stats.session_down();
                if link.client.try_disconnect().is_ok() {
                    // The pump ends once the DISCONNECT is written.
                    let _ = timeout(Duration::from_secs(1), &mut link.pump).await;
                }
            }
        }
        let unsent = self.scale.scale().buffered_readings();
        if unsent > 0 {
            warn!(device_id = %self.device, unsent, "stopped with readings not yet acknowledged");
        }
        ScaleReport {
            unsent_readings: unsent,
        }
    }
}

/// Waits `wake` before the next catch-up, or only lets other tasks run when the world is
/// behind the clock.
async fn pause(behind: bool, wake: Duration) {
    if behind {
        tokio::task::yield_now().await;
    } else {
        sleep(wake).await;
    }
}

/// The next event of the connection, or never when there is none.
async fn next_event(link: &mut Option<Link>) -> Option<LinkEvent> {
    match link {
        Some(link) => link.events.recv().await,
        None => std::future::pending().await,
    }
}

fn log_world_event(device: &DeviceId, at_ms: u64, event: &WorldEvent) {
    let at = sim_time(at_ms);
    match event {
        WorldEvent::Kicked => info!(device_id = %device, sim_time = %at, "keg kicked"),
        WorldEvent::KegPlaced { full_lbs } => info!(
            device_id = %device,
            sim_time = %at,
            full_lbs = (full_lbs * 10.0).round() / 10.0,
            "staff swapped in a full keg"
        ),
        WorldEvent::Recharged => info!(device_id = %device, sim_time = %at, "battery recharged"),
        WorldEvent::PourStarted { .. }
        | WorldEvent::PourFinished { .. }
        | WorldEvent::KegRemoved
        | WorldEvent::LinkDown
        | WorldEvent::LinkUp => debug!(device_id = %device, sim_time = %at, ?event, "world"),
    }
}

/// Simulated epoch ms as an RFC 3339 instant, for log lines.
fn sim_time(at_ms: u64) -> String {
    i64::try_from(at_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| at_ms.to_string(), |ts| ts.to_string())
}
