//! The server's own MQTT client ([`MqttLink`]): the way in from an external broker (Mosquitto,
//! a cluster) and the way out for everything the server publishes (`gw/ack` now, commands
//! later). With the embedded broker the same client connects to it over 127.0.0.1 and only
//! publishes; going through a real connection keeps one publishing path for both shapes and
//! lets the broker treat the server like any other client.
//!
//! As a subscriber it keeps a **persistent session** (clean session off, a fixed client id) and
//! acknowledges **manually**: every message goes to the pipeline, and its PUBACK is sent only
//! when the pipeline answers with a committed disposition. PUBACKs go out strictly in receive
//! order (a FIFO of pending dispositions; the head is acknowledged when it resolves), as MQTT
//! requires and as some brokers enforce by dropping the connection. When the database fails
//! for the head message, nothing after it may be acknowledged on that connection either, so the
//! link drops the connection after a backoff and reconnects: the broker then redelivers every
//! unacknowledged message of the session. Acks pending from an old connection are never sent on
//! a new one (the broker redelivers those messages and they are acknowledged then); duplicates
//! are harmless because the store deduplicates on our own ids, never on packet ids or DUP.
//!
//! What this module must never do: acknowledge a message whose disposition is not committed,
//! acknowledge out of receive order, or block the pipeline when publishing (publishes are
//! queued without waiting and dropped, counted, when the client's queue is full).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Publish, QoS, SubscribeFilter,
};
use scalesense_proto::topic::{
    GATEWAY_STATUS_FILTER, READINGS_FILTER, RESPONSE_FILTER, STATUS_FILTER, shared,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::health::Health;
use crate::pipeline::{AckPublisher, Disposition, PipelineSender};

/// Largest MQTT packet the server sends or accepts. Contract payloads are well under 1 KiB; the
/// bound only keeps a misbehaving client from costing memory.
pub const MAX_PACKET_SIZE: usize = 256 * 1024;

/// The topics the server ingests.
pub const INGEST_FILTERS: [&str; 4] = [
    READINGS_FILTER,
    STATUS_FILTER,
    RESPONSE_FILTER,
    GATEWAY_STATUS_FILTER,
];

/// An MQTT broker address: `mqtt://host:port` (or `tcp://`; the port defaults to 1883).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

/// Why a broker URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    #[error(
        "broker URL {0:?} must start with mqtt:// or tcp:// (TLS brokers are not supported yet)"
    )]
    Scheme(String),
    #[error("broker URL {0:?} has no host")]
    Host(String),
    #[error("broker URL {0:?} has a bad port")]
    Port(String),
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(url: &str) -> Result<Self, BrokerUrlError> {
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| BrokerUrlError::Scheme(url.to_owned()))?;
        let rest = rest.trim_end_matches('/');
        // `host`, `host:port`, `[v6]` or `[v6]:port`.
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| BrokerUrlError::Host(url.to_owned()))?;
                let port = match after {
                    "" => None,
                    _ => Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| BrokerUrlError::Port(url.to_owned()))?,
                    ),
                };
                (host, port)
            }
            None => match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| BrokerUrlError::Port(url.to_owned()))?,
            None => 1883,
        };
        if host.is_empty() || host.contains(['/', '@', '[', ']']) {
            return Err(BrokerUrlError::Host(url.to_owned()));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

/// What the link subscribes to and where it sends what it receives.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub pipeline: PipelineSender,
    /// Split the ingest topics with other replicas through `$share/{group}/…`.
    pub shared_group: Option<String>,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub broker: BrokerUrl,
    /// Fixed, so the broker keeps this server's session across restarts.
    pub client_id: String,
    /// `Some`: subscribe and feed the pipeline (external broker); `None`: publish only.
    pub ingest: Option<Ingest>,
    pub keep_alive: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl LinkConfig {
    pub fn new(broker: BrokerUrl, client_id: impl Into<String>, ingest: Option<Ingest>) -> Self {
        Self {
            broker,
            client_id: client_id.into(),
            ingest,
            keep_alive: Duration::from_secs(30),
            max_backoff: Duration::from_secs(5),
        }
    }

    fn filters(&self) -> Result<Vec<String>, LinkError> {
        let group = self.ingest.as_ref().and_then(|i| i.shared_group.as_deref());
        INGEST_FILTERS
            .iter()
            .map(|filter| match group {
                Some(group) => shared(group, filter)
                    .map(|s| s.as_str().to_owned())
                    .map_err(|e| LinkError::SharedGroup(e.to_string())),
                None => Ok((*filter).to_owned()),
            })
            .collect()
    }
}

/// Why the link could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("--shared-group: {0}")]
    SharedGroup(String),
}

/// Queues publishes on the link's client without waiting.
#[derive(Debug, Clone)]
pub struct LinkPublisher {
    client: AsyncClient,
}

impl LinkPublisher {
    /// Queues a retained QoS 1 publish (commands: a scale that is offline gets it when it comes
    /// back). Waits only for room in the client's queue, not for the broker.
    pub async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .map_err(|e| e.to_string())
    }
}

impl AckPublisher for LinkPublisher {
    fn publish(&self, topic: &str, payload: Vec<u8>) -> bool {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .is_ok()
    }

    fn clear_retained(&self, topic: &str) -> bool {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, true, Vec::new())
            .is_ok()
    }
}

/// A message received on a connection, waiting for its disposition.
struct PendingAck {
    /// The connection (counted by ConnAcks) the message arrived on.
    connection: u64,
    publish: Publish,
    disposition: oneshot::Receiver<Disposition>,
}

/// What to do with the head of the ack queue once its disposition is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckDecision {
    /// Send its PUBACK.
    Ack,
    /// Send nothing: it arrived on a connection that is gone, or after a failure on this one.
    /// The broker redelivers it.
    Skip,
    /// It was not committed and nothing after it may be acknowledged on this connection: drop
    /// the connection so the broker redelivers everything unacknowledged.
    Reconnect,
}

/// The acknowledgement rule, apart from the I/O: acks go out in receive order (the caller keeps
/// the FIFO), only on the connection a message arrived on, and never after an unacknowledged
/// message of the same connection.
#[derive(Debug, Default)]
struct AckOrder {
    /// Messages of this connection and older may no longer be acknowledged.
    poisoned: Option<u64>,
}

impl AckOrder {
    fn decide(&mut self, arrived_on: u64, current: u64, committed: bool) -> AckDecision {
        let live = arrived_on == current && self.poisoned.is_none_or(|p| arrived_on > p);
        match (live, committed) {
            (false, _) => AckDecision::Skip,
            (true, true) => AckDecision::Ack,
            (true, false) => {
                self.poisoned = Some(arrived_on);
                AckDecision::Reconnect
            }
        }
    }
}

/// How long shutdown waits for the acknowledgements of messages already handed to the
/// pipeline. Whatever is not acknowledged by then is redelivered to the next session.
pub const ACK_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The running client: one task driving the connection and, when ingesting, one acknowledging
/// in receive order (owned by the first).
#[derive(Debug)]
pub struct MqttLink {
    publisher: LinkPublisher,
    task: JoinHandle<()>,
}

impl MqttLink {
    /// Starts connecting (and reconnecting, with backoff) until `shutdown` fires.
    pub fn start(
        config: LinkConfig,
        health: Health,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Self, LinkError> {
        crate::telemetry::handle();
        let filters = config.filters()?;
        let mut options = MqttOptions::new(
            config.client_id.clone(),
            config.broker.host.clone(),
            config.broker.port,
        );
        options
            .set_keep_alive(config.keep_alive)
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
            // The subscriber's session must outlive a restart so the broker keeps what we have
            // not acknowledged; a publish-only client has nothing to keep.
            .set_clean_session(config.ingest.is_none())
            .set_manual_acks(true);
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let publisher = LinkPublisher {
            client: client.clone(),
        };
        let connection = Arc::new(AtomicU64::new(0));
        let reconnect = Arc::new(Notify::new());
        let (ingest, acker) = match config.ingest.clone() {
            Some(ingest) => {
                let (acks_tx, acks_rx) = mpsc::channel(4096);
                let acker = tokio::spawn(acknowledge(
                    acks_rx,
                    client.clone(),
                    Arc::clone(&connection),
                    Arc::clone(&reconnect),
                ));
                (Some((ingest.pipeline, acks_tx)), Some(acker))
            }
            None => (None, None),
        };
        let driver = Driver {
            config,
            filters,
            client,
            eventloop,
            health,
            clock,
            connection,
            reconnect,
            ingest,
            acker,
        };
        let task = tokio::spawn(driver.run(shutdown));
        Ok(Self { publisher, task })
    }

    /// A handle that publishes through this link.
    pub fn publisher(&self) -> LinkPublisher {
        self.publisher.clone()
    }

    /// Waits for the link to end (after its shutdown token fired): acknowledgements of what the
    /// pipeline already has are sent (for up to [`ACK_DRAIN_TIMEOUT`]), then it disconnects.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "MQTT link task failed");
        }
    }
}

struct Driver {
    config: LinkConfig,
    filters: Vec<String>,
    client: AsyncClient,
    eventloop: EventLoop,
    health: Health,
    clock: Arc<dyn Clock>,
    connection: Arc<AtomicU64>,
    reconnect: Arc<Notify>,
    ingest: Option<(PipelineSender, mpsc::Sender<PendingAck>)>,
    acker: Option<JoinHandle<()>>,
}

impl Driver {
    async fn run(mut self, shutdown: CancellationToken) {
        let broker = self.config.broker.to_string();
        let mut backoff = Duration::from_millis(100);
        let mut logged_down = false;
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.reconnect.notified() => {
                    // The database failed for a message at the head of the ack queue: nothing
                    // more can be acknowledged on this connection. Drop it; after a pause the
                    // broker redelivers everything unacknowledged.
                    self.health.set_broker_connected(false);
                    self.eventloop.clean();
                    tracing::warn!(broker = %broker, "reconnecting so the broker redelivers unacknowledged messages");
                    if sleep_or_cancel(backoff, &shutdown).await { break; }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    continue;
                }
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    // Every ConnAck starts a new connection: acks still pending from the old
                    // one are void (the broker redelivers those messages).
                    self.connection.fetch_add(1, Ordering::AcqRel);
                    // A subscriber is ready only once its subscription is confirmed.
                    self.health.set_broker_connected(self.ingest.is_none());
                    logged_down = false;
                    backoff = Duration::from_millis(100);
                    tracing::info!(broker = %broker, session_present = ack.session_present, "connected to the MQTT broker");
                    if self.ingest.is_some() {
                        let filters = self
                            .filters
                            .iter()
                            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                        if let Err(e) = self.client.try_subscribe_many(filters) {
                            tracing::error!(error = %e, "could not queue the subscription");
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        .count();
                    if refused > 0 {
                        tracing::error!(refused, filters = ?self.filters, "the broker refused a subscription");
                    } else {
                        self.health.set_broker_connected(true);
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    if !self.forward(publish).await {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.health.set_broker_connected(false);
                    if !logged_down {
                        tracing::warn!(broker = %broker, error = %e, "MQTT connection lost; retrying");
                        logged_down = true;
                    }
                    if sleep_or_cancel(backoff, &shutdown).await {
                        break;
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        self.drain_acks().await;
        self.health.set_broker_connected(false);
        // Best effort: say goodbye so the broker does not wait for the keep-alive to expire.
        if self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Ok(event) = self.eventloop.poll().await {
                    if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        tracing::debug!(broker = %broker, "MQTT link stopped");
    }

    /// Stops taking messages, then keeps the connection served while the acknowledger sends the
    /// acks of messages the pipeline already has (the pipeline stops after the link).
    async fn drain_acks(&mut self) {
        // Closing the queue tells the acknowledger to finish what it holds and stop.
        self.ingest = None;
        let Some(mut acker) = self.acker.take() else {
            return;
        };
        let drained = tokio::time::timeout(ACK_DRAIN_TIMEOUT, async {
            loop {
                tokio::select! {
                    done = &mut acker => return done,
                    event = self.eventloop.poll() => {
                        if event.is_err() {
                            // Disconnected: pending acks are void, the broker redelivers.
                            return (&mut acker).await;
                        }
                    }
                }
            }
        })
        .await;
        match drained {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "MQTT acknowledger failed"),
            Err(_) => {
                acker.abort();
                tracing::warn!(
                    "unacknowledged messages remain at shutdown; the broker redelivers them"
                );
            }
        }
    }

    /// Hands a received message to the pipeline and queues its acknowledgement. Returns false
    /// when the pipeline is shut down (the message stays unacknowledged; the broker keeps it).
    async fn forward(&mut self, publish: Publish) -> bool {
        let Some((pipeline, acks)) = &self.ingest else {
            return true;
        };
        let connection = self.connection.load(Ordering::Acquire);
        let topic = publish.topic.clone();
        let payload: Bytes = publish.payload.clone();
        let Ok(disposition) = pipeline.submit(topic, payload, self.clock.now_ms()).await else {
            return false;
        };
        acks.send(PendingAck {
            connection,
            publish,
            disposition,
        })
        .await
        .is_ok()
    }
}

/// Waits `duration`; true when `shutdown` fired first.
async fn sleep_or_cancel(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = shutdown.cancelled() => true,
    }
}

/// Acknowledges received messages strictly in receive order, each once its disposition is
/// committed and only on the connection it arrived on. Ends when its queue is closed and every
/// message in it is resolved.
async fn acknowledge(
    mut incoming: mpsc::Receiver<PendingAck>,
    client: AsyncClient,
    connection: Arc<AtomicU64>,
    reconnect: Arc<Notify>,
) {
    let mut pending: VecDeque<PendingAck> = VecDeque::new();
    let mut order = AckOrder::default();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            next = incoming.recv(), if open => match next {
                Some(item) => pending.push_back(item),
                None => open = false,
            },
            disposition = async {
                match pending.front_mut() {
                    Some(head) => (&mut head.disposition).await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(head) = pending.pop_front() else { continue };
                // Unavailable, or the pipeline dropped the message while shutting down, is not
                // committed.
                let committed = disposition.is_ok_and(|d| d.is_committed());
                let current = connection.load(Ordering::Acquire);
                match order.decide(head.connection, current, committed) {
                    AckDecision::Ack => {
                        if client.ack(&head.publish).await.is_err() {
                            break;
                        }
                    }
                    AckDecision::Skip => {}
                    AckDecision::Reconnect => reconnect.notify_one(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_stop_at_the_first_uncommitted_message_of_a_connection() {
        let mut order = AckOrder::default();
        // Connection 1: two committed, then one the database failed for.
        assert_eq!(order.decide(1, 1, true), AckDecision::Ack);
        assert_eq!(order.decide(1, 1, true), AckDecision::Ack);
        assert_eq!(order.decide(1, 1, false), AckDecision::Reconnect);
        // Later messages of that connection stay unacknowledged, committed or not, so the
        // acks already sent remain a prefix of what arrived.
        assert_eq!(order.decide(1, 1, true), AckDecision::Skip);
        assert_eq!(order.decide(1, 1, false), AckDecision::Skip);
        // After the reconnect (connection 2) the broker redelivers; acks flow again.
        assert_eq!(order.decide(1, 2, true), AckDecision::Skip);
        assert_eq!(order.decide(2, 2, true), AckDecision::Ack);
    }

    #[test]
    fn acks_from_an_old_connection_are_never_sent_on_a_new_one() {
        let mut order = AckOrder::default();
        assert_eq!(order.decide(3, 4, true), AckDecision::Skip);
        // A failure of an old connection's message forces nothing: that connection is gone.
        assert_eq!(order.decide(3, 4, false), AckDecision::Skip);
        assert_eq!(order.decide(4, 4, true), AckDecision::Ack);
    }

    #[test]
    fn broker_urls_parse() {
        let url: BrokerUrl = "mqtt://127.0.0.1:1884".parse().unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 1884));
        assert_eq!(url.to_string(), "mqtt://127.0.0.1:1884");
        let url: BrokerUrl = "tcp://broker.local".parse().unwrap();
        assert_eq!((url.host.as_str(), url.port), ("broker.local", 1883));
        let url: BrokerUrl = "mqtt://[::1]:1883/".parse().unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 1883));
        assert_eq!(url.to_string(), "mqtt://[::1]:1883");
        assert!(matches!(
            "mqtts://x:8883".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Scheme(_))
        ));
        assert!(matches!(
            "mqtt://:1883".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Host(_))
        ));
        assert!(matches!(
            "mqtt://x:0".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Port(_))
        ));
        assert!(matches!(
            "mqtt://x:99999".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Port(_))
        ));
    }

    #[test]
    fn shared_groups_prefix_every_filter() {
        let (pipeline, _rx) = crate::pipeline::channel(&crate::pipeline::PipelineConfig::default());
        let url: BrokerUrl = "mqtt://127.0.0.1".parse().unwrap();
        let config = LinkConfig::new(
            url.clone(),
            "scalesense-server-a",
            Some(Ingest {
                pipeline: pipeline.clone(),
                shared_group: Some("scalesense".into()),
            }),
        );
        assert_eq!(
            config.filters().unwrap(),
            vec![
                "$share/scalesense/keg/readings/+",
                "$share/scalesense/keg/status/+",
                "$share/scalesense/keg/response/+",
                "$share/scalesense/gw/status/+",
            ]
        );
        let bad = LinkConfig::new(
            url,
            "x",
            Some(Ingest {
                pipeline,
                shared_group: Some("a/b".into()),
            }),
        );
        assert!(matches!(bad.filters(), Err(LinkError::SharedGroup(_))));
    }
}
