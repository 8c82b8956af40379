//! The ingest pipeline (BRIEF §5): two ways in, one pipeline.
//!
//! Sources (the embedded broker's publish hook, the external-broker subscriber) push
//! [`Inbound`] messages into one **bounded** channel, so a slow database slows the senders
//! instead of growing a queue. One task runs **group commits**: it waits for a message, then
//! takes whatever else is already queued (up to [`PipelineConfig::max_batch`]) without ever
//! waiting on a timer, decodes every message with `scalesense-proto`, converts wire units to
//! SI, and writes the batch's readings with one `Store::ingest_batch` call (one transaction).
//! Statuses, command responses and dead letters are written right after it, one store call
//! each: the store has no method that takes them into the readings' transaction. Only then is
//! every sender told what became of its message ([`Disposition`]); a source acknowledges a
//! message to MQTT only on a committed disposition, so **nothing is acknowledged before it is
//! in the database**. After the replies come gateway commit confirmations (`gw/ack`) and live
//! events.
//!
//! A scale's answer to a command is recorded once (a resend is a `Duplicate`), and only then is
//! its effect written ([`crate::effects`]: the tare record, the calibration, whose drift the
//! alert engine judges in a task this pipeline owns). After each batch, keg levels that stayed
//! near zero are checked for the "Kicked?" suspicion (`tap_updated`).
//!
//! Bad input (a malformed payload, a wrong contract version, an out-of-range value, an unknown
//! device or topic) is never retried: it is stored as a dead letter with the contract's reason,
//! counted by kind and logged at a bounded rate, and then acknowledged, so a broken scale cannot
//! make its broker resend it forever. A database that fails answers the batch `Unavailable`
//! (nothing acknowledged, so the scale or broker resends), marks the server not ready, and the
//! next attempt waits with a growing backoff.
//!
//! What this module must never do: acknowledge (reply with a committed disposition) before the
//! store call that covers the message has returned `Ok`; wait on a timer while messages are
//! queued; or block on a slow event subscriber or MQTT publisher.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use scalesense_alerts::{AlertEngine, AlertFeed, BatchSummary};
use scalesense_domain::units::Kilograms;
use scalesense_proto::topic::Direction;
use scalesense_proto::{
    CommandId, ContractError, DeviceId, DeviceState, Forwarding, GatewayId, GatewayStatus,
    LocationId, TapId, Topic,
};
use scalesense_store::{
    DeviceStatus, DeviceStatusUpdate, IngestReading, KegId, Millis, ReadingOutcome, Store,
    StoreError, StoredReading,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::effects::{self, Planned};
use crate::events::{Event, EventBus};
use crate::gwack::{ack_messages, ranges_by_gateway};
use crate::health::Health;
use crate::telemetry;

/// The "Kicked?" level (the API's rule, so the dashboard and the event agree).
const KICK_LEVEL_PCT: f64 = scalesense_api::routes::kegs::KICK_LEVEL_PCT;

/// What became of one message. Everything but `Unavailable` is committed: the message (or its
/// dead letter) is in the database and may be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Newly stored.
    Stored,
    /// Already stored before (a resend); nothing changed.
    Duplicate,
    /// Rejected for good and kept as a dead letter with this reason.
    DeadLettered(String),
    /// The database failed: nothing was stored and nothing may be acknowledged.
    Unavailable,
}

impl Disposition {
    /// True when the message may be acknowledged.
    pub fn is_committed(&self) -> bool {
        !matches!(self, Self::Unavailable)
    }
}

/// One message from a source.
#[derive(Debug)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
    /// When the source received it, epoch ms (for the ingest-lag metric and as the time of a
    /// reading from a scale whose clock is unset).
    pub received_at_ms: i64,
    /// Where to send the disposition; `None` when the source does not wait (a last will, a
    /// gateway-forwarded message confirmed through `gw/ack`).
    pub reply: Option<oneshot::Sender<Disposition>>,
}

/// The pipeline no longer accepts messages (shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ingest pipeline is shut down")]
pub struct PipelineClosed;

/// The sending side, one clone per source. Sending waits while the channel is full.
#[derive(Debug, Clone)]
pub struct PipelineSender {
    tx: mpsc::Sender<Inbound>,
}

impl PipelineSender {
    /// Queues a message and returns where its disposition will arrive.
    pub async fn submit(
        &self,
        topic: impl Into<String>,
        payload: Bytes,
        received_at_ms: i64,
    ) -> Result<oneshot::Receiver<Disposition>, PipelineClosed> {
        let (reply, disposition) = oneshot::channel();
        self.send(Inbound {
            topic: topic.into(),
            payload,
            received_at_ms,
            reply: Some(reply),
        })
        .await?;
        Ok(disposition)
    }

    /// Queues a message whose sender does not wait for the outcome.
    pub async fn submit_detached(
        &self,
        topic: impl Into<String>,
        payload: Bytes,
        received_at_ms: i64,
    ) -> Result<(), PipelineClosed> {
        self.send(Inbound {
            topic: topic.into(),
            payload,
            received_at_ms,
            reply: None,
        })
        .await
    }

    async fn send(&self, inbound: Inbound) -> Result<(), PipelineClosed> {
        self.tx.send(inbound).await.map_err(|_| PipelineClosed)
    }
}

/// Where the pipeline's own publishes go (the server's MQTT client): `gw/ack` confirmations,
/// and clearing a command's retained message once the scale has answered it. Must not block: a
/// publish that cannot be queued is counted and dropped (the gateway resends and is confirmed
/// later; a retained command left behind is answered as a duplicate by the scale).
pub trait AckPublisher: Send + Sync + Debug {
    /// Queues `payload` for QoS-1 publishing on `topic`; false when it could not be queued.
    fn publish(&self, topic: &str, payload: Vec<u8>) -> bool;
    /// Queues an empty retained QoS-1 publish on `topic`, which deletes the retained message;
    /// false when it could not be queued.
    fn clear_retained(&self, topic: &str) -> bool;
}

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Messages the channel holds before senders wait.
    pub channel_capacity: usize,
    /// Most messages in one group commit.
    pub max_batch: usize,
    /// First wait after a failed commit; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// At most one dead-letter log line per this interval (the rest are counted in it).
    pub dead_letter_log_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 4096,
            max_batch: 2048,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            dead_letter_log_interval: Duration::from_secs(10),
        }
    }
}

/// Creates the bounded channel between the sources and the pipeline.
pub fn channel(config: &PipelineConfig) -> (PipelineSender, mpsc::Receiver<Inbound>) {
    let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
    (PipelineSender { tx }, rx)
}

/// Why a message is rejected for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A short stable kind for the metric label (`malformed`, `unknown_device`, …).
    pub kind: &'static str,
    /// The text stored with the dead letter.
    pub reason: String,
}

impl Rejection {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    fn contract(e: &ContractError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

/// A message decoded and converted to what the store takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Reading(IngestReading),
    Status {
        device: DeviceId,
        update: DeviceStatusUpdate,
    },
    Response {
        device: DeviceId,
        id: CommandId,
        ok: bool,
        result: serde_json::Value,
    },
    GatewayStatus {
        gateway: GatewayId,
        status: GatewayStatus,
    },
    Rejected(Rejection),
}

/// Whether a message on `topic` is ingested: every device-to-server topic of the contract, and
/// anything else under `keg/` or `gw/` that is not a server-to-device topic (so a scale
/// publishing to a wrong topic is dead-lettered rather than lost). Other namespaces are not ours.
pub fn is_ingested(topic: &str) -> bool {
    match Topic::parse(topic) {
        Ok(t) => t.direction() == Direction::Uplink,
        Err(_) => topic.starts_with("keg/") || topic.starts_with("gw/"),
    }
}

/// Decodes one message by its topic, validating it against the contract and converting wire
/// units (pounds) to SI. Pure: the same input gives the same output.
pub fn decode(topic: &str, payload: &[u8], received_at_ms: i64) -> Decoded {
    let topic = match Topic::parse(topic) {
        Ok(t) => t,
        Err(e) => {
            return Decoded::Rejected(Rejection::new(
                "unknown_topic",
                format!("topic {topic:?}: {e}"),
            ));
        }
    };
    let decoded = match topic {
        Topic::Reading(device) => decode_reading(device, payload, received_at_ms),
        Topic::Status(device) => decode_status(device, payload, received_at_ms),
        Topic::Response(device) => decode_response(device, payload),
        Topic::GatewayStatus(gateway) => scalesense_proto::from_slice::<GatewayStatus>(payload)
            .map(|status| Decoded::GatewayStatus { gateway, status })
            .map_err(|e| Rejection::contract(&e)),
        Topic::Command { .. } | Topic::Ota(_) | Topic::GatewayAck(_) => Err(Rejection::new(
            "not_uplink",
            format!("topic {topic}: a server-to-device topic is not ingested"),
        )),
    };
    decoded.unwrap_or_else(Decoded::Rejected)
}

fn decode_reading(
    device: DeviceId,
    payload: &[u8],
    received_at_ms: i64,
) -> Result<Decoded, Rejection> {
    let reading = scalesense_proto::from_slice::<scalesense_proto::Reading>(payload)
        .map_err(|e| Rejection::contract(&e))?;
    // The store keeps a level with every reading; a scale that has not been tared has none.
    // Such a reading is kept as a dead letter rather than stored with an invented level.
    let level_pct = reading.level_pct_clamped().ok_or_else(|| {
        Rejection::new(
            "untared",
            "level_pct: absent (the scale is not tared yet), so the reading has no level to store",
        )
    })?;
    Ok(Decoded::Reading(IngestReading {
        device_id: device,
        boot: i64::from(reading.boot),
        seq: i64::from(reading.seq),
        // Validated to lie within 2020–2100, so it fits i64.
        ts: reading.ts.map_or(received_at_ms, |ts| ts as i64),
        weight_kg: Kilograms::from_lbs(reading.weight_lbs).0,
        level_pct,
        battery_v: Some(reading.battery_v),
        battery_pct: Some(reading.battery_pct),
        rssi: Some(i64::from(reading.rssi)),
        stable: reading.stable,
        tare_status: Some(reading.tare_status.as_str().to_owned()),
    }))
}

fn decode_status(
    device: DeviceId,
    payload: &[u8],
    received_at_ms: i64,
) -> Result<Decoded, Rejection> {
    let status = scalesense_proto::from_slice::<scalesense_proto::Status>(payload)
        .map_err(|e| Rejection::contract(&e))?;
    let online = status.state == DeviceState::Online;
    Ok(Decoded::Status {
        device,
        update: DeviceStatusUpdate {
            status: if online {
                DeviceStatus::Online
            } else {
                DeviceStatus::Offline
            },
            fw_version: status.fw.as_ref().map(|v| v.as_str().to_owned()),
            // A last will (`offline`) says nothing about maintenance: leave the flag alone.
            maintenance: online.then_some(status.maintenance),
            battery_v: status.battery_v,
            battery_pct: status.battery_pct,
            rssi: status.rssi.map(i64::from),
            at: received_at_ms,
        },
    })
}

fn decode_response(device: DeviceId, payload: &[u8]) -> Result<Decoded, Rejection> {
    let response = scalesense_proto::from_slice::<scalesense_proto::Response>(payload)
        .map_err(|e| Rejection::contract(&e))?;
    let result = if response.ok {
        serde_json::to_value(&response.result).unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::json!({ "error": response.error.as_deref() })
    };
    Ok(Decoded::Response {
        device,
        id: response.id,
        ok: response.ok,
        result,
    })
}

/// A store failure, split into "retry later" and "this message is wrong for good".
fn classify_failure(e: &StoreError) -> Result<Rejection, ()> {
    match e {
        StoreError::Unavailable(_) | StoreError::Corrupt(_) => Err(()),
        other => Ok(Rejection::new("store_rejected", other.to_string())),
    }
}

/// Rate-limits one kind of log line: at most one per interval, with a count of the rest.
#[derive(Debug)]
struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Returns how many lines were suppressed since the last one when this one may be logged.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// One message of a batch on its way through.
struct Item {
    inbound: Inbound,
    forwarding: Option<Forwarding>,
    decoded: Decoded,
    disposition: Option<Disposition>,
}

/// The group-commit task. Build it with [`Pipeline::new`] and run it with [`Pipeline::run`].
#[derive(Debug)]
pub struct Pipeline {
    store: Arc<dyn Store>,
    events: EventBus,
    acks: Option<Arc<dyn AckPublisher>>,
    clock: Arc<dyn Clock>,
    health: Health,
    config: PipelineConfig,
    /// Last maintenance flag seen per device, to turn statuses into enter/exit events.
    maintenance: HashMap<DeviceId, bool>,
    /// Last location seen per device, to place command answers on a location's channel.
    device_locations: HashMap<DeviceId, LocationId>,
    dead_letter_log: LogLimiter,
    /// Where committed batches go for alert evaluation (off the commit path).
    alerts: Option<Arc<AlertFeed>>,
    /// What the batch being committed changed, for the alert engine.
    alert_summary: BatchSummary,
    /// Where a recorded calibration's drift is judged (the drift alert).
    engine: Option<Arc<AlertEngine>>,
    /// Drift evaluations under way, owned here so none is left detached.
    followups: JoinSet<()>,
    /// Low readings of the batch, to look for an empty keg once the batch is answered.
    kick_checks: Vec<KickCheck>,
    /// Taps whose keg is suspected empty ("Kicked?"), with that keg.
    kick_suspected: HashMap<TapId, KegId>,
}

/// A reading at or below the "Kicked?" level, to check after the batch is answered.
#[derive(Debug, Clone)]
struct KickCheck {
    stored: StoredReading,
    level_pct: f64,
    ts: Millis,
}

impl Pipeline {
    pub fn new(
        store: Arc<dyn Store>,
        events: EventBus,
        acks: Option<Arc<dyn AckPublisher>>,
        clock: Arc<dyn Clock>,
        health: Health,
        config: PipelineConfig,
    ) -> Self {
        telemetry::handle();
        let dead_letter_log = LogLimiter::new(config.dead_letter_log_interval);
        Self {
            store,
            events,
            acks,
            clock,
            health,
            config,
            maintenance: HashMap::new(),
            device_locations: HashMap::new(),
            dead_letter_log,
            alerts: None,
            alert_summary: BatchSummary::new(),
            engine: None,
            followups: JoinSet::new(),
            kick_checks: Vec::new(),
            kick_suspected: HashMap::new(),
        }
    }

    /// Judges every calibration a scale reports against the drift threshold, at once (off the
    /// commit path).
    #[must_use]
    pub fn with_alert_engine(mut self, engine: Arc<AlertEngine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Hands every committed batch's changes to the alert engine's feed. Submitting never
    /// waits, so alert evaluation cannot slow ingest.
    #[must_use]
    pub fn with_alerts(mut self, feed: Arc<AlertFeed>) -> Self {
        self.alerts = Some(feed);
        self
    }

    /// Runs group commits until `shutdown` fires, then stops taking new messages, commits what
    /// is already queued and returns.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Inbound>, shutdown: CancellationToken) {
        let mut backoff = self.config.backoff_min;
        let mut closing = false;
        loop {
            let first = if closing {
                rx.recv().await
            } else {
                tokio::select! {
                    message = rx.recv() => message,
                    () = shutdown.cancelled() => {
                        // Senders now get `PipelineClosed`; what is queued is still committed.
                        rx.close();
                        closing = true;
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            while self.followups.try_join_next().is_some() {}
            if self.commit(batch).await {
                backoff = self.config.backoff_min;
            } else if !closing {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(self.config.backoff_max);
            }
        }
        while self.followups.join_next().await.is_some() {}
        tracing::debug!("ingest pipeline stopped");
    }

    /// Commits one batch and answers every message in it. Returns false when the database
    /// failed for any of them.
    async fn commit(&mut self, batch: Vec<Inbound>) -> bool {
        metrics::counter!(telemetry::BATCHES).increment(1);
        metrics::histogram!(telemetry::BATCH_SIZE).record(batch.len() as f64);
        let mut items: Vec<Item> = batch
            .into_iter()
            .map(|inbound| Item {
                forwarding: scalesense_proto::decode_forwarding(&inbound.payload)
                    .ok()
                    .flatten(),
                decoded: decode(&inbound.topic, &inbound.payload, inbound.received_at_ms),
                inbound,
                disposition: None,
            })
            .collect();

        let mut events = Vec::new();
        let mut db_error: Option<String> = None;
        let mut wrote = false;
        let mut to_dead_letter: Vec<(usize, Rejection)> = Vec::new();

        self.commit_readings(
            &mut items,
            &mut events,
            &mut db_error,
            &mut wrote,
            &mut to_dead_letter,
        )
        .await;

        for (index, item) in items.iter_mut().enumerate() {
            if item.disposition.is_some() {
                continue;
            }
            let outcome = match item.decoded.clone() {
                Decoded::Reading(_) => continue,
                Decoded::Rejected(rejection) => Err(Ok(rejection)),
                Decoded::Status { device, update } => {
                    self.commit_status(&device, &update, &mut events).await
                }
                Decoded::Response {
                    device,
                    id,
                    ok,
                    result,
                } => {
                    self.commit_response(&device, &id, ok, &result, &mut events)
                        .await
                }
                Decoded::GatewayStatus { gateway, status } => {
                    Ok(Self::gateway_status(&gateway, &status))
                }
            };
            match outcome {
                Ok(disposition) => {
                    wrote = true;
                    item.disposition = Some(disposition);
                }
                Err(Ok(rejection)) => to_dead_letter.push((index, rejection)),
                Err(Err(e)) => {
                    db_error.get_or_insert(e);
                    item.disposition = Some(Disposition::Unavailable);
                }
            }
        }

        self.write_dead_letters(&mut items, to_dead_letter, &mut db_error, &mut wrote)
            .await;

        match &db_error {
            Some(error) => self.health.db_failed(error),
            None if wrote => self.health.db_ok(),
            None => {}
        }
        self.answer(items, events);
        let summary = std::mem::take(&mut self.alert_summary);
        if let Some(feed) = &self.alerts {
            feed.submit(summary);
        }
        self.check_kicks().await;
        db_error.is_none()
    }

    /// Stores each rejected message as a dead letter, one store call each (the store has no
    /// batch method for them).
    async fn write_dead_letters(
        &mut self,
        items: &mut [Item],
        to_dead_letter: Vec<(usize, Rejection)>,
        db_error: &mut Option<String>,
        wrote: &mut bool,
    ) {
        let now = self.clock.now_ms();
        for (index, rejection) in to_dead_letter {
            let item = &mut items[index];
            let stored = self
                .store
                .record_dead_letter(
                    &item.inbound.topic,
                    &item.inbound.payload,
                    &rejection.reason,
                    now,
                )
                .await;
            match stored {
                Ok(_) => {
                    *wrote = true;
                    metrics::counter!(telemetry::DEAD_LETTERS, "reason" => rejection.kind)
                        .increment(1);
                    if let Some(suppressed) = self.dead_letter_log.allow() {
                        tracing::warn!(
                            topic = %item.inbound.topic,
                            kind = rejection.kind,
                            reason = %rejection.reason,
                            suppressed,
                            "message stored as a dead letter"
                        );
                    }
                    item.disposition = Some(Disposition::DeadLettered(rejection.reason));
                }
                Err(e) => {
                    db_error.get_or_insert(e.to_string());
                    item.disposition = Some(Disposition::Unavailable);
                }
            }
        }
    }

    /// Writes every reading of the batch with one `ingest_batch` call and records the outcome
    /// of each.
    async fn commit_readings(
        &mut self,
        items: &mut [Item],
        events: &mut Vec<Event>,
        db_error: &mut Option<String>,
        wrote: &mut bool,
        to_dead_letter: &mut Vec<(usize, Rejection)>,
    ) {
        let (indices, readings): (Vec<usize>, Vec<IngestReading>) = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match &item.decoded {
                Decoded::Reading(r) => Some((i, r.clone())),
                _ => None,
            })
            .unzip();
        if readings.is_empty() {
            return;
        }
        let outcomes = ingest(self.store.as_ref(), &readings).await;
        for ((index, reading), outcome) in indices.into_iter().zip(&readings).zip(outcomes) {
            let item = &mut items[index];
            match outcome {
                Ok(ReadingOutcome::Stored(stored)) => {
                    *wrote = true;
                    metrics::counter!(telemetry::READINGS_INGESTED).increment(1);
                    self.device_locations
                        .insert(reading.device_id.clone(), stored.location_id.clone());
                    self.alert_summary.add_reading(&reading.device_id, &stored);
                    self.note_level(&stored, reading);
                    events.push(reading_event(reading, stored));
                    item.disposition = Some(Disposition::Stored);
                }
                Ok(ReadingOutcome::Duplicate) => {
                    *wrote = true;
                    metrics::counter!(telemetry::READINGS_DUPLICATE).increment(1);
                    item.disposition = Some(Disposition::Duplicate);
                }
                Ok(ReadingOutcome::UnknownDevice) => to_dead_letter.push((
                    index,
                    Rejection::new(
                        "unknown_device",
                        format!("device {} is not registered", reading.device_id),
                    ),
                )),
                Ok(ReadingOutcome::Unassigned) => to_dead_letter.push((
                    index,
                    Rejection::new(
                        "unassigned",
                        format!(
                            "device {} is on no tap: its telemetry was updated, the reading kept here",
                            reading.device_id
                        ),
                    ),
                )),
                Ok(ReadingOutcome::Invalid(reason)) => {
                    to_dead_letter.push((index, Rejection::new("invalid", reason)));
                }
                Err(e) => {
                    db_error.get_or_insert(e);
                    item.disposition = Some(Disposition::Unavailable);
                }
            }
        }
    }

    async fn commit_status(
        &mut self,
        device: &DeviceId,
        update: &DeviceStatusUpdate,
        events: &mut Vec<Event>,
    ) -> Result<Disposition, Result<Rejection, String>> {
        let recorded = self.store.record_device_status(device, update).await;
        let recorded = recorded.map_err(|e| classify_failure(&e).map_err(|()| e.to_string()))?;
        let Some(device_row) = recorded else {
            return Err(Ok(Rejection::new(
                "unknown_device",
                format!("device {device} is not registered"),
            )));
        };
        metrics::counter!(telemetry::STATUSES).increment(1);
        self.alert_summary.add_status(&device_row);
        if let Some(location) = &device_row.location_id {
            self.device_locations
                .insert(device.clone(), location.clone());
            let before = self
                .maintenance
                .insert(device.clone(), device_row.maintenance);
            let changed = before.map_or(device_row.maintenance, |b| b != device_row.maintenance);
            events.push(Event::DeviceStatus {
                location_id: location.clone(),
                device_id: device.clone(),
                tap_id: device_row.tap_id.clone(),
                status: device_row.status,
                fw_version: device_row.fw_version.clone(),
                maintenance: device_row.maintenance,
                battery_pct: update.battery_pct,
                rssi: update.rssi,
                at: update.at,
            });
            if changed {
                let (location_id, device_id, tap_id, at) = (
                    location.clone(),
                    device.clone(),
                    device_row.tap_id.clone(),
                    update.at,
                );
                events.push(if device_row.maintenance {
                    Event::MaintenanceEntered {
                        location_id,
                        device_id,
                        tap_id,
                        at,
                    }
                } else {
                    Event::MaintenanceExited {
                        location_id,
                        device_id,
                        tap_id,
                        at,
                    }
                });
            }
        }
        Ok(Disposition::Stored)
    }

    async fn commit_response(
        &mut self,
        device: &DeviceId,
        id: &CommandId,
        ok: bool,
        result: &serde_json::Value,
        events: &mut Vec<Event>,
    ) -> Result<Disposition, Result<Rejection, String>> {
        let at = self.clock.now_ms();
        let planned = effects::plan(self.store.as_ref(), device, id, ok, result)
            .await
            .map_err(|e| classify_failure(&e).map_err(|()| e.to_string()))?;
        let (account, location, issued_by, result, effect) = match planned {
            Planned::Unknown => {
                return Err(Ok(Rejection::new(
                    "unknown_command",
                    format!("command {id} of device {device} does not exist"),
                )));
            }
            // A resend of an answer already recorded: nothing is applied again.
            Planned::AlreadyAnswered => return Ok(Disposition::Duplicate),
            Planned::New {
                account,
                location,
                issued_by,
                result,
                effect,
                ..
            } => (account, location, issued_by, result, effect),
        };
        match self
            .store
            .complete_command(device, id, ok, &result, at)
            .await
        {
            Ok(command) => {
                metrics::counter!(telemetry::RESPONSES).increment(1);
                self.clear_command(device, &command.name);
                let location = location.or_else(|| self.device_locations.get(device).cloned());
                if let Some(location) = location {
                    self.device_locations
                        .insert(device.clone(), location.clone());
                    events.push(Event::CommandCompleted {
                        location_id: location,
                        device_id: device.clone(),
                        command_id: id.clone(),
                        name: command.name,
                        ok,
                        at,
                    });
                }
                // The answer is recorded once and for all: its effect is written now, and never
                // for a resend of it.
                match effects::apply(
                    self.store.as_ref(),
                    &account,
                    device,
                    &issued_by,
                    effect,
                    at,
                )
                .await
                {
                    Ok(applied) => {
                        events.extend(applied.events);
                        if let Some((account, device, drift)) = applied.calibration {
                            self.judge_calibration(account, device, drift);
                        }
                    }
                    Err(e) => tracing::error!(
                        device_id = %device,
                        command_id = %id,
                        error = %e,
                        "the answer is recorded but its effect could not be written; send the command again"
                    ),
                }
                Ok(Disposition::Stored)
            }
            // The command was already answered: this is a resend of that answer.
            Err(StoreError::Conflict { .. }) => Ok(Disposition::Duplicate),
            Err(StoreError::NotFound { .. }) => Err(Ok(Rejection::new(
                "unknown_command",
                format!("command {id} of device {device} does not exist"),
            ))),
            Err(e) => Err(classify_failure(&e).map_err(|()| e.to_string())),
        }
    }

    /// Hands a recorded calibration's drift to the alert engine without waiting for it.
    fn judge_calibration(
        &mut self,
        account: scalesense_store::AccountId,
        device: DeviceId,
        drift: Option<f64>,
    ) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        self.followups.spawn(async move {
            if let Err(e) = engine.on_calibration(&account, &device, drift).await {
                tracing::warn!(device_id = %device, error = %e, "calibration drift not judged");
            }
        });
    }

    /// Keeps a stored reading for the "Kicked?" check when its keg looks low, and forgets a
    /// suspicion once the level is back up.
    fn note_level(&mut self, stored: &StoredReading, reading: &IngestReading) {
        let low = stored.keg_id.is_some() && reading.level_pct <= KICK_LEVEL_PCT;
        if low || self.kick_suspected.remove(&stored.tap_id).is_some() {
            self.kick_checks.push(KickCheck {
                stored: stored.clone(),
                level_pct: reading.level_pct,
                ts: reading.ts,
            });
        }
    }

    /// After the batch is answered: a keg whose level stayed near zero long enough is suspected
    /// empty, and a suspicion that no longer holds is dropped; each change is a `tap_updated`.
    async fn check_kicks(&mut self) {
        for check in std::mem::take(&mut self.kick_checks) {
            let stored = &check.stored;
            let suspected = match &stored.keg_id {
                Some(keg) if self.kick_suspected.get(&stored.tap_id) == Some(keg) => continue,
                Some(keg) => {
                    match scalesense_api::routes::kegs::kick_suspected(
                        self.store.as_ref(),
                        &stored.account_id,
                        keg,
                        Some(check.level_pct),
                        Some(check.ts),
                    )
                    .await
                    {
                        Ok(true) => {
                            self.kick_suspected
                                .insert(stored.tap_id.clone(), keg.clone());
                            true
                        }
                        Ok(false) if check.level_pct <= KICK_LEVEL_PCT => continue,
                        Ok(false) => false,
                        Err(e) => {
                            tracing::debug!(tap_id = %stored.tap_id, error = %e, "empty-keg check skipped");
                            continue;
                        }
                    }
                }
                None => false,
            };
            if suspected {
                tracing::info!(tap_id = %stored.tap_id, keg_id = ?stored.keg_id, "keg suspected empty");
            }
            self.events.publish(Event::TapUpdated {
                location_id: stored.location_id.clone(),
                tap_id: stored.tap_id.clone(),
                changed: vec!["kick_suspected".into()],
                at: check.ts,
            });
        }
    }

    /// The answer is committed: the retained command has done its work, so it is cleared.
    fn clear_command(&self, device: &DeviceId, name: &str) {
        if let Some(acks) = &self.acks {
            crate::commands::clear_retained_command(acks.as_ref(), device, name);
        }
    }

    /// A gateway's health, exposed as metrics. The store has no table for it, so nothing is
    /// written.
    fn gateway_status(gateway: &GatewayId, status: &GatewayStatus) -> Disposition {
        metrics::counter!(telemetry::GATEWAY_STATUSES).increment(1);
        metrics::gauge!(telemetry::GATEWAY_QUEUE_DEPTH, "gateway" => gateway.as_str().to_owned())
            .set(status.queue_depth as f64);
        Disposition::Stored
    }

    /// Replies to every sender, then confirms commits to gateways and emits events.
    fn answer(&mut self, items: Vec<Item>, events: Vec<Event>) {
        let now = self.clock.now_ms();
        let mut committed_forwarded = Vec::new();
        for item in items {
            let disposition = item.disposition.unwrap_or(Disposition::Unavailable);
            if disposition.is_committed() {
                metrics::histogram!(telemetry::INGEST_LAG_MS)
                    .record((now - item.inbound.received_at_ms).max(0) as f64);
                if let Some(forwarding) = item.forwarding {
                    committed_forwarded.push((forwarding.gw, forwarding.gseq));
                }
            } else {
                metrics::counter!(telemetry::INGEST_UNAVAILABLE).increment(1);
            }
            if let Some(reply) = item.inbound.reply {
                // The sender may have given up (its connection dropped); it will resend.
                let _ = reply.send(disposition);
            }
        }
        for (gateway, ranges) in ranges_by_gateway(committed_forwarded) {
            self.publish_acks(&gateway, &ranges);
        }
        for event in events {
            self.events.publish(event);
        }
    }

    /// Confirms to a gateway the `gseq` ranges this batch committed (duplicates included, so a
    /// resend after a lost confirmation is confirmed again).
    fn publish_acks(&self, gateway: &GatewayId, ranges: &[[u64; 2]]) {
        let Some(acks) = &self.acks else { return };
        let topic = Topic::GatewayAck(gateway.clone()).to_string();
        for ack in ack_messages(ranges) {
            let published =
                scalesense_proto::to_vec(&ack).is_ok_and(|payload| acks.publish(&topic, payload));
            if published {
                metrics::counter!(telemetry::GATEWAY_ACKS).increment(1);
            } else {
                metrics::counter!(telemetry::GATEWAY_ACKS_FAILED).increment(1);
                tracing::debug!(gateway = %gateway, "gw/ack could not be queued; the gateway resends");
            }
        }
    }
}

/// `ingest_batch` with a fallback: when the batch is refused for a reason that is not the
/// database being unavailable (a constraint one reading breaks), each reading is retried alone
/// so one bad reading cannot hold the others back forever.
async fn ingest(
    store: &dyn Store,
    readings: &[IngestReading],
) -> Vec<Result<ReadingOutcome, String>> {
    match store.ingest_batch(readings).await {
        Ok(outcome) if outcome.readings.len() == readings.len() => {
            outcome.readings.into_iter().map(Ok).collect()
        }
        Ok(outcome) => {
            let error = format!(
                "the store answered {} outcomes for {} readings",
                outcome.readings.len(),
                readings.len()
            );
            readings.iter().map(|_| Err(error.clone())).collect()
        }
        Err(e) if readings.len() > 1 && classify_failure(&e).is_ok() => {
            let mut outcomes = Vec::with_capacity(readings.len());
            for reading in readings {
                outcomes.push(ingest_one(store, reading).await);
            }
            outcomes
        }
        Err(e) => match classify_failure(&e) {
            Ok(rejection) => vec![Ok(ReadingOutcome::Invalid(rejection.reason))],
            Err(()) => readings.iter().map(|_| Err(e.to_string())).collect(),
        },
    }
}

async fn ingest_one(store: &dyn Store, reading: &IngestReading) -> Result<ReadingOutcome, String> {
    match store.ingest_batch(std::slice::from_ref(reading)).await {
        Ok(mut outcome) if outcome.readings.len() == 1 => {
            Ok(outcome.readings.pop().unwrap_or(ReadingOutcome::Duplicate))
        }
        Ok(_) => Err("the store answered the wrong number of outcomes".to_owned()),
        Err(e) => match classify_failure(&e) {
            Ok(rejection) => Ok(ReadingOutcome::Invalid(rejection.reason)),
            Err(()) => Err(e.to_string()),
        },
    }
}

fn reading_event(reading: &IngestReading, stored: StoredReading) -> Event {
    Event::Reading {
        location_id: stored.location_id,
        tap_id: stored.tap_id,
        device_id: reading.device_id.clone(),
        keg_id: stored.keg_id,
        series: stored.series,
        ts: reading.ts,
        weight_kg: reading.weight_kg,
        level_pct: reading.level_pct,
        volume_l: stored.volume_l,
        battery_pct: reading.battery_pct,
        stable: reading.stable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn reading_json(extra: &str) -> String {
        format!(
            r#"{{"v":1,"seq":19,"boot":3,"weight_lbs":100.0,"level_pct":55.5,"battery_v":3.94,"battery_pct":78,"rssi":-60,"stable":true,"tare_status":"complete"{extra}}}"#
        )
    }

    fn rejected(d: &Decoded) -> (&'static str, &str) {
        match d {
            Decoded::Rejected(r) => (r.kind, r.reason.as_str()),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_reading_is_converted_to_si() {
        let d = decode("keg/readings/SCALE-0001", reading_json("").as_bytes(), NOW);
        let Decoded::Reading(r) = d else {
            panic!("{d:?}")
        };
        assert_eq!(r.device_id.as_str(), "SCALE-0001");
        assert_eq!((r.boot, r.seq), (3, 19));
        assert!((r.weight_kg - 45.359_237).abs() < 1e-9);
        assert!((r.level_pct - 55.5).abs() < 1e-12);
        // No device time: the receipt time stands in.
        assert_eq!(r.ts, NOW);
        assert_eq!(r.tare_status.as_deref(), Some("complete"));
        let with_ts = decode(
            "keg/readings/SCALE-0001",
            reading_json(r#","ts":1700000000123"#).as_bytes(),
            NOW,
        );
        assert!(matches!(
            with_ts,
            Decoded::Reading(IngestReading {
                ts: 1_700_000_000_123,
                ..
            })
        ));
    }

    #[test]
    fn every_bad_input_class_is_rejected_with_the_contract_reason() {
        let topic = "keg/readings/SCALE-0001";
        assert_eq!(
            rejected(&decode(topic, b"{not json", NOW)),
            ("malformed", "malformed payload: not a single JSON object")
        );
        assert_eq!(
            rejected(&decode(
                topic,
                reading_json("").replace("\"v\":1", "\"v\":2").as_bytes(),
                NOW
            )),
            (
                "unsupported_version",
                "v: contract version 2 is newer than the supported version 1"
            )
        );
        assert_eq!(
            rejected(&decode(
                topic,
                reading_json("").replace("55.5", "130").as_bytes(),
                NOW
            ))
            .0,
            "out_of_range"
        );
        assert_eq!(
            rejected(&decode(
                topic,
                reading_json("").replace("\"seq\":19,", "").as_bytes(),
                NOW
            )),
            ("missing", "seq: required field is missing")
        );
        assert_eq!(
            rejected(&decode(
                "keg/levels/SCALE-0001",
                reading_json("").as_bytes(),
                NOW
            ))
            .0,
            "unknown_topic"
        );
        assert_eq!(
            rejected(&decode(
                "keg/readings/bad id",
                reading_json("").as_bytes(),
                NOW
            ))
            .0,
            "unknown_topic"
        );
        assert_eq!(
            rejected(&decode("keg/ota/SCALE-0001", b"{}", NOW)).0,
            "not_uplink"
        );
        let untared = reading_json("").replace(r#""level_pct":55.5,"#, "");
        assert_eq!(
            rejected(&decode(topic, untared.as_bytes(), NOW)).0,
            "untared"
        );
    }

    #[test]
    fn a_last_will_leaves_maintenance_alone() {
        let d = decode(
            "keg/status/SCALE-0001",
            br#"{"v":1,"state":"offline"}"#,
            NOW,
        );
        let Decoded::Status { update, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(update.status, DeviceStatus::Offline);
        assert_eq!(update.maintenance, None);
        let d = decode(
            "keg/status/SCALE-0001",
            br#"{"v":1,"state":"online","fw":"1.2.0","maintenance":true,"battery_pct":80}"#,
            NOW,
        );
        let Decoded::Status { update, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(update.maintenance, Some(true));
        assert_eq!(update.fw_version.as_deref(), Some("1.2.0"));
        assert_eq!(update.at, NOW);
    }

    #[test]
    fn responses_keep_their_result_or_error() {
        let d = decode(
            "keg/response/SCALE-0001",
            br#"{"v":1,"id":"c-1","ok":false,"error":"unstable"}"#,
            NOW,
        );
        let Decoded::Response { id, ok, result, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(id.as_str(), "c-1");
        assert!(!ok);
        assert_eq!(result, serde_json::json!({ "error": "unstable" }));
    }

    #[test]
    fn uplink_and_unknown_topics_under_our_prefixes_are_ingested() {
        for topic in [
            "keg/readings/SCALE-0001",
            "keg/status/SCALE-0001",
            "keg/response/SCALE-0001",
            "gw/status/gw-1",
            "keg/levels/SCALE-0001",
            "keg/readings/a/b",
        ] {
            assert!(is_ingested(topic), "{topic}");
        }
        for topic in [
            "keg/command/SCALE-0001/tare_empty",
            "keg/ota/SCALE-0001",
            "gw/ack/gw-1",
            "homeassistant/sensor/x/config",
            "$SYS/broker/uptime",
        ] {
            assert!(!is_ingested(topic), "{topic}");
        }
    }

    #[test]
    fn the_dead_letter_log_is_rate_limited() {
        let mut limiter = LogLimiter::new(Duration::from_hours(1));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
        limiter.last = Some(Instant::now().checked_sub(Duration::from_hours(2)).unwrap());
        assert_eq!(limiter.allow(), Some(2));
    }
}
