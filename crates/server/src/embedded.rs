//! The embedded MQTT broker (`scalesense up`, BRIEF §2 and §5): rmqtt running in-process on our
//! tokio runtime, with ingest inside its publish path.
//!
//! rmqtt awaits its publish ACL-check hook before it routes a message and before it sends the
//! PUBACK. Our handler, registered at the **lowest** priority so every other check has run,
//! sends each uplink message (`keg/readings/+`, `keg/status/+`, `keg/response/+`,
//! `gw/status/+`, and anything else under `keg/` or `gw/` that is not a server-to-device topic,
//! so it is dead-lettered rather than lost) to the pipeline and waits for its disposition:
//! committed → allow (routed to subscribers and PUBACKed); database unavailable → refused
//! **with disconnect**, because an MQTT 3.1.1 client still gets a PUBACK for a refusal without
//! one. A scale's PUBACK therefore means "in the database". Server-to-device topics and foreign
//! namespaces pass untouched. Last wills never pass the ACL hook, so a second handler on the
//! plain publish hook hands them to the pipeline without waiting (no PUBACK depends on them).
//!
//! **Gateway-forwarded messages** (carrying `gw`/`gseq`) are allowed as soon as they are queued
//! in the pipeline, before their commit. That is safe because their durability does not rest on
//! this PUBACK: the gateway keeps every message on disk until a `gw/ack` confirmation covers it,
//! and `gw/ack` is published only after the commit (see `gwack`). A message lost between this
//! PUBACK and the commit (a crash) is still in the gateway's queue and is resent. Waiting for
//! the commit here would limit a gateway replaying a backlog over one connection to one message
//! per commit.
//!
//! rmqtt's lossy defaults are all set explicitly (message expiry, queue length, in-flight
//! window, session expiry, packet size); retained messages come from the rmqtt-retainer plugin
//! in RAM with no TTL; every message the broker drops is counted by reason. The broker keeps its
//! sessions and queues in memory only: the database is the record, never the broker.
//!
//! What this module must never do: allow an uplink message without either a committed
//! disposition or gateway forwarding, register a superuser (superusers skip the ACL hook), or
//! stop the ingest handler while clients can still publish.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, Register, ReturnType, Type};
use rmqtt::server::MqttServer;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, FromType, Id, IsOnline, NodeId, PublishAclResult, Reason, SharedGroup,
    SubscriptionIdentifier, SubscriptionOptions, TopicName,
};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::pipeline::{PipelineSender, is_ingested};
use crate::telemetry;

/// Largest packet a client may send (contract payloads are well under 1 KiB).
pub const MAX_PACKET_SIZE: u32 = 256 * 1024;
/// Unacknowledged messages per outbound session (rmqtt's default is 16).
pub const MAX_INFLIGHT: NonZeroU16 = NonZeroU16::MIN.saturating_add(127);
/// Messages queued per session before the oldest is dropped (default 1,000). A scale asleep for a
/// week has at most a handful of retained commands; this bounds a stuck subscriber's memory.
pub const MAX_MQUEUE_LEN: usize = 100_000;
/// How long a persistent session outlives its connection (default 2 h).
pub const SESSION_EXPIRY: Duration = Duration::from_hours(7 * 24);
/// How long a queued message waits for its subscriber (default 5 min).
pub const MESSAGE_EXPIRY: Duration = Duration::from_hours(7 * 24);
/// How long start-up may take before it is reported as failed.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Retained messages in RAM without a time-to-live ("0s" means none).
const RETAINER_CONFIG: &str = r#"retained_message_ttl = "0s""#;

/// Why the embedded broker did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddedError {
    #[error("{addr} is already in use")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error("the embedded MQTT broker did not start: {0}")]
    Start(String),
}

/// The running broker.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    scx: ServerContext,
    // Kept so the handlers stay registered for the broker's whole life.
    register: Box<dyn Register>,
    server: JoinHandle<()>,
}

impl fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Listens on `addr` (port 0 picks a free port; see [`EmbeddedBroker::local_addr`]) and
    /// starts serving, with ingest wired to `pipeline`.
    pub async fn start(
        addr: SocketAddr,
        pipeline: PipelineSender,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EmbeddedError> {
        telemetry::handle();
        let listener = rmqtt::net::Builder::new()
            .name("scalesense")
            .laddr(addr)
            // Without it a restart on the same port right after a kill -9 can hang.
            .reuseaddr(Some(true))
            // Nagle adds tens of milliseconds to every PUBACK.
            .nodelay(true)
            .allow_anonymous(true)
            .max_packet_size(MAX_PACKET_SIZE)
            .max_inflight(MAX_INFLIGHT)
            .max_mqueue_len(MAX_MQUEUE_LEN)
            .session_expiry_interval(SESSION_EXPIRY)
            .message_expiry_interval(MESSAGE_EXPIRY)
            .bind()
            .and_then(rmqtt::net::Listener::tcp)
            .map_err(|e| bind_error(addr, &e))?;
        let local = listener
            .local_addr()
            .map_err(|e| EmbeddedError::Start(e.to_string()))?;

        let scx = ServerContext::new()
            // On by default: refuses connections while the host is busy (e.g. compiling).
            .busy_check_enable(false)
            .plugins_config_map_add("rmqtt-retainer", RETAINER_CONFIG)
            .build()
            .await;
        // Without an implementation `$share/…` subscriptions silently receive nothing.
        *scx.extends.shared_subscription_mut().await = Box::new(RoundRobin::default());
        rmqtt_retainer::register(&scx, true, false)
            .await
            .map_err(|e| EmbeddedError::Start(format!("retained messages: {e}")))?;

        let register = scx.extends.hook_mgr().register();
        // Priority 0 is the lowest: every other ACL check runs before the commit.
        register
            .add_priority(
                Type::MessagePublishCheckAcl,
                0,
                Box::new(IngestHook {
                    pipeline: pipeline.clone(),
                    clock: Arc::clone(&clock),
                }),
            )
            .await;
        register
            .add(
                Type::MessagePublish,
                Box::new(LastWillHook { pipeline, clock }),
            )
            .await;
        register
            .add(Type::MessageDropped, Box::new(BrokerMetrics))
            .await;
        register
            .add(Type::ClientConnected, Box::new(BrokerMetrics))
            .await;
        register
            .add(Type::ClientDisconnected, Box::new(BrokerMetrics))
            .await;
        // Handlers are added disabled.
        register.start().await;

        let server = MqttServer::new(scx.clone())
            .listener_by_id(listener, local.port())
            .build();
        // `MqttServer::start` would exit the process on a listener error; run it ourselves.
        let server = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        });
        let broker = Self {
            addr: local,
            scx,
            register,
            server,
        };
        let connect_addr = loopback_for(local);
        match tokio::time::timeout(
            STARTUP_TIMEOUT,
            tokio::net::TcpStream::connect(connect_addr),
        )
        .await
        {
            Ok(Ok(_)) => {
                tracing::info!(addr = %local, "embedded MQTT broker listening");
                Ok(broker)
            }
            Ok(Err(e)) => {
                broker.stop().await;
                Err(EmbeddedError::Start(format!(
                    "{connect_addr} does not accept connections: {e}"
                )))
            }
            Err(_) => {
                broker.stop().await;
                Err(EmbeddedError::Start(format!(
                    "{connect_addr} did not accept a connection within {STARTUP_TIMEOUT:?}"
                )))
            }
        }
    }

    /// The address the broker listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and disconnects every client. The ingest handler stays
    /// registered to the end, so a client still publishing is refused (the pipeline is closed),
    /// never acknowledged without a commit.
    pub async fn stop(self) {
        self.server.abort();
        if let Err(e) = self.server.await
            && !e.is_cancelled()
        {
            tracing::error!(error = %e, "the embedded MQTT broker task failed");
        }
        let shared = self.scx.extends.shared().await;
        let ids: Vec<Id> = shared.iter().map(|entry| entry.id()).collect();
        for id in ids {
            if let Err(e) = shared.entry(id).kick(true, true, true).await {
                tracing::debug!(error = %e, "could not disconnect an MQTT client");
            }
        }
        drop(shared);
        drop(self.register);
        tracing::info!(addr = %self.addr, "embedded MQTT broker stopped");
    }
}

/// Where to connect to reach a listener: its own address, or loopback for a wildcard address.
pub fn loopback_for(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    target
}

fn bind_error(addr: SocketAddr, e: &rmqtt::net::Error) -> EmbeddedError {
    let in_use = e
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::AddrInUse);
    if in_use {
        EmbeddedError::AddrInUse { addr }
    } else {
        EmbeddedError::Bind {
            addr,
            message: format!("{e:#}"),
        }
    }
}

/// The commit-before-PUBACK handler on the publish ACL check.
struct IngestHook {
    pipeline: PipelineSender,
    clock: Arc<dyn Clock>,
}

fn refuse(reason: &'static str) -> ReturnType {
    let refusal = PublishAclResult::rejected(true, Some(reason.into()));
    (false, Some(HookResult::PublishAclResult(refusal)))
}

#[async_trait]
impl Handler for IngestHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::MessagePublishCheckAcl(_, publish) = param else {
            return (true, acc);
        };
        // A higher-priority check already refused it: nothing to store.
        if let Some(HookResult::PublishAclResult(result)) = &acc
            && result.is_rejected()
        {
            return (false, acc);
        }
        let topic: &str = &publish.topic;
        if !is_ingested(topic) {
            return (true, acc);
        }
        let payload = publish.payload.clone();
        let forwarded = matches!(scalesense_proto::decode_forwarding(&payload), Ok(Some(_)));
        let received_at = self.clock.now_ms();
        let allow = (
            true,
            Some(HookResult::PublishAclResult(PublishAclResult::allow())),
        );
        if forwarded {
            // Durable in the gateway's queue until `gw/ack` confirms the commit.
            return match self
                .pipeline
                .submit_detached(topic, payload, received_at)
                .await
            {
                Ok(()) => allow,
                Err(_) => refuse("server shutting down"),
            };
        }
        let Ok(disposition) = self.pipeline.submit(topic, payload, received_at).await else {
            return refuse("server shutting down");
        };
        match disposition.await {
            Ok(d) if d.is_committed() => allow,
            _ => refuse("database unavailable"),
        }
    }
}

/// Hands last wills (`offline` statuses) to the pipeline; they never pass the ACL check.
struct LastWillHook {
    pipeline: PipelineSender,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Handler for LastWillHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::MessagePublish(_, from, publish) = param
            && matches!(from.typ(), FromType::LastWill)
            && is_ingested(&publish.topic)
            && self
                .pipeline
                .submit_detached(
                    &*publish.topic,
                    publish.payload.clone(),
                    self.clock.now_ms(),
                )
                .await
                .is_err()
        {
            tracing::debug!(topic = %publish.topic, "last will not stored: shutting down");
        }
        (true, acc)
    }
}

/// Counts connections and every message the broker drops.
struct BrokerMetrics;

#[async_trait]
impl Handler for BrokerMetrics {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientConnected(_) => {
                metrics::gauge!(telemetry::BROKER_CONNECTIONS).increment(1.0);
            }
            Parameter::ClientDisconnected(_, _) => {
                metrics::gauge!(telemetry::BROKER_CONNECTIONS).decrement(1.0);
            }
            Parameter::MessageDropped(_, _, publish, reason) => {
                let reason = drop_reason(reason);
                metrics::counter!(telemetry::BROKER_DROPPED, "reason" => reason).increment(1);
                tracing::debug!(topic = %publish.topic, reason, "broker dropped a message");
            }
            _ => {}
        }
        (true, acc)
    }
}

/// A bounded label for why the broker dropped a message.
fn drop_reason(reason: &Reason) -> &'static str {
    match reason {
        Reason::MessageExpiration => "expired",
        Reason::MessageQueueFull => "queue_full",
        Reason::InflightWindowFull => "inflight_full",
        Reason::PublishResult(_) => "publish_refused",
        Reason::SessionExpiration => "session_expired",
        Reason::DelayedPublishRefused => "delayed_refused",
        Reason::ConnectKicked(_) => "kicked",
        Reason::ConnectDisconnect(_)
        | Reason::ConnectReadWriteTimeout
        | Reason::ConnectReadWriteError
        | Reason::ConnectRemoteClose
        | Reason::ConnectKeepaliveTimeout => "disconnected",
        _ => "other",
    }
}

/// `$share/{group}/…`: each message goes to one member of the group, round robin, preferring
/// members that are online.
#[derive(Default)]
struct RoundRobin {
    next: AtomicUsize,
}

#[async_trait]
impl SharedSubscription for RoundRobin {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        _group: &SharedGroup,
        _publisher_id: &Id,
        _topic: &TopicName,
        members: &[(
            NodeId,
            ClientId,
            SubscriptionOptions,
            Option<Vec<SubscriptionIdentifier>>,
            Option<IsOnline>,
        )],
    ) -> Option<(usize, IsOnline)> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let online: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].4 != Some(false))
            .collect();
        if online.is_empty() {
            // Everyone is offline: queue it in one member's session.
            return (!members.is_empty()).then(|| (turn % members.len(), false));
        }
        let pick = online[turn % online.len()];
        Some((pick, members[pick].4.unwrap_or(true)))
    }
}
