//! The running gateway: the tasks that move messages between the bar's broker, the durable
//! queue and the server's broker.
//!
//! - **local**: polls the bar's broker (persistent session, manual acks) and hands every
//!   publication, tagged with its connection, to the writer.
//! - **writer**: takes everything that has arrived, appends it to the queue, fsyncs once, and only
//!   then acknowledges the batch to the local broker, in receive order; acknowledgements owed on a
//!   connection that has since dropped are not sent (the broker redelivers).
//! - **uplink**: polls the server's broker; relays confirmations (`gw/ack/{id}`) to the forwarder
//!   and commands and OTA notices to the local broker.
//! - **forwarder**: keeps a [`Window`] of messages in flight, oldest first, adding `gw` and
//!   `gseq`; applies confirmations to the queue; starts over from the oldest unconfirmed message
//!   after a reconnect or a confirmation timeout.
//! - **health**: `gw/status/{id}` (retained) every interval and on connect, and `/healthz` and
//!   `/metrics` over HTTP.
//!
//! Nothing here deletes a message except by a server confirmation (through the queue), and no
//! task ever blocks another: blocking disk work runs on tokio's blocking pool, the only
//! unbounded channel (local → writer) is bounded in practice by the local broker's in-flight
//! window (nothing is acknowledged until it is on disk), and the forwarder only ever `try_`
//! publishes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{
    AsyncClient, ClientError, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS,
    Transport,
};
use scalesense_proto::topic::{
    COMMAND_FILTER, OTA_FILTER, READINGS_FILTER, RESPONSE_FILTER, STATUS_FILTER,
};
use scalesense_proto::{ContractError, Forwarding, GatewayId, Topic};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{BrokerUrl, GatewayArgs};
use crate::health::{self, Counters, Snapshot};
use crate::queue::{MAX_PAYLOAD_LEN, Queue, QueueError, Recovery};
use crate::window::Window;

/// Most local messages appended under one fsync.
const MAX_BATCH: usize = 1024;
/// Most records read from the queue per forwarding step.
const READ_BATCH: usize = 256;
const READ_BYTES: usize = 1 << 20;
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How often the forwarder checks timeouts and syncs confirmations when nothing else happens.
const TICK: Duration = Duration::from_millis(200);
/// Confirmations are made durable at least this often (losing them only causes resends).
const ACK_SYNC_INTERVAL: Duration = Duration::from_secs(1);
const MAX_PACKET: usize = MAX_PAYLOAD_LEN + 1024;

/// Why the gateway could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot read the {what} file {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "an mqtts:// upstream needs --ca: the CA certificate (PEM) that signed the broker's certificate"
    )]
    MissingCa,
    #[error("--ca, --cert and --key secure an mqtts:// upstream; {0} is plain mqtt://")]
    TlsWithoutMqtts(BrokerUrl),
    #[error(
        "--local and --upstream are the same broker ({0}): the gateway would forward its own messages back to itself"
    )]
    SameBroker(BrokerUrl),
    #[error("cannot listen for health requests on {addr}: {source}")]
    Health {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the {0} task stopped unexpectedly")]
    TaskDied(&'static str),
}

/// What the uplink tells the forwarder.
#[derive(Debug)]
enum UplinkEvent {
    Connected,
    Disconnected,
    Confirmed(Vec<(u64, u64)>),
}

/// The inclusive gseq ranges a `gw/ack/{id}` payload confirms. The one place that knows the
/// confirmation's shape.
pub fn confirmed_ranges(payload: &[u8]) -> Result<Vec<(u64, u64)>, ContractError> {
    let ack = scalesense_proto::from_slice::<scalesense_proto::GatewayAck>(payload)?;
    Ok(ack
        .ranges
        .iter()
        .map(|&[first, last]| (first, last))
        .collect())
}

/// Whether a local publication may be queued: an uplink topic of the contract (reading, status,
/// response) and a JSON object that no gateway has forwarded yet.
fn check_uplink(topic: &str, payload: &[u8]) -> Result<(), String> {
    match Topic::parse(topic) {
        Ok(Topic::Reading(_) | Topic::Status(_) | Topic::Response(_)) => {}
        Ok(_) => return Err("not a scale-to-server topic".to_owned()),
        Err(e) => return Err(e.to_string()),
    }
    match scalesense_proto::decode_forwarding(payload) {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err("already forwarded by a gateway (carries gw/gseq)".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug)]
struct Shared {
    id: GatewayId,
    queue: Mutex<Queue>,
    counters: Counters,
    /// Durable records were added: the forwarder may have something to send.
    new_data: Notify,
    /// Publish health now (after connecting upstream).
    publish_health: Notify,
    /// Incremented at every local ConnAck; acknowledgements are only sent on the connection
    /// that delivered the message.
    local_epoch: AtomicU64,
    /// Set by [`Gateway::shutdown`] before it disconnects, so the loops end quietly.
    stopping: AtomicBool,
    recovery: Recovery,
    max_disk: u64,
    window: usize,
    failures: mpsc::UnboundedSender<GatewayError>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock is a bug that already stopped its task; the queue's
        // files are consistent at every await point, so the others go on.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot_blocking(&self) -> Snapshot {
        let mut q = self.queue();
        let queue = q.stats();
        let oldest_age_s = match q.oldest_enqueued_ms() {
            Ok(Some(ms)) => now_ms().saturating_sub(ms) / 1000,
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "health: cannot read the oldest queued message");
                0
            }
        };
        drop(q);
        let c = &self.counters;
        Snapshot {
            queue,
            oldest_age_s,
            max_disk: self.max_disk,
            received: Counters::get(&c.received),
            rejected: Counters::get(&c.rejected),
            published: Counters::get(&c.published),
            confirmed: Counters::get(&c.confirmed),
            dropped: Counters::get(&c.dropped),
            downlink: Counters::get(&c.downlink),
            bad_confirmations: Counters::get(&c.bad_confirmations),
            restarts: Counters::get(&c.restarts),
            in_flight: Counters::get(&c.in_flight),
            local_connected: c.local_connected.load(Ordering::Relaxed),
            uplink_connected: c.uplink_connected.load(Ordering::Relaxed),
            recovery: self.recovery.clone(),
            window: self.window as u64,
        }
    }

    fn fail(&self, error: GatewayError) {
        tracing::error!(error = %error, "gateway: stopping");
        // The receiver is gone only when the gateway is already shutting down.
        let _ = self.failures.send(error);
    }
}

async fn snapshot(shared: Arc<Shared>) -> Option<Snapshot> {
    tokio::task::spawn_blocking(move || shared.snapshot_blocking())
        .await
        .ok()
}

async fn blocking<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, GatewayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| GatewayError::TaskDied(name))?
        .map_err(GatewayError::from)
}

fn read_file(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, GatewayError> {
    std::fs::read(path).map_err(|source| GatewayError::TlsFile {
        what,
        path: path.clone(),
        source,
    })
}

fn status_payload(snapshot: &Snapshot, disconnected: bool) -> Vec<u8> {
    let mut status = snapshot.gateway_status();
    if disconnected {
        status.uplink = scalesense_proto::UplinkState::Disconnected;
    }
    // Built from counters and the queue, so always within the contract's ranges; an encoding
    // failure would only mean an empty health message, never a stopped gateway.
    scalesense_proto::to_vec(&status).unwrap_or_default()
}

fn upstream_options(args: &GatewayArgs, last_will: Vec<u8>) -> Result<MqttOptions, GatewayError> {
    let url = &args.upstream;
    let mut opts = MqttOptions::new(
        format!("scalesense-gw-{}", args.gateway_id),
        &url.host,
        url.port,
    );
    opts.set_keep_alive(KEEP_ALIVE)
        // A persistent session keeps OTA notices and confirmations published while the link
        // was down.
        .set_clean_session(false)
        .set_inflight(args.window)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            Topic::GatewayStatus(args.gateway_id.clone()).to_string(),
            last_will,
            QoS::AtLeastOnce,
            true,
        ));
    if url.tls {
        let ca = args.ca.as_ref().ok_or(GatewayError::MissingCa)?;
        let ca = read_file("CA certificate", ca)?;
        let client_auth = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => Some((
                read_file("client certificate", cert)?,
                read_file("client key", key)?,
            )),
            _ => None,
        };
        opts.set_transport(Transport::tls(ca, client_auth, None));
    } else if args.ca.is_some() || args.cert.is_some() {
        return Err(GatewayError::TlsWithoutMqtts(url.clone()));
    }
    Ok(opts)
}

fn local_options(args: &GatewayArgs) -> MqttOptions {
    let mut opts = MqttOptions::new(
        format!("scalesense-gw-{}-local", args.gateway_id),
        &args.local.host,
        args.local.port,
    );
    opts.set_keep_alive(KEEP_ALIVE)
        // A persistent session: what arrives while the gateway restarts waits in the broker.
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    opts
}

/// Both MQTT clients and their event loops.
struct Links {
    local: AsyncClient,
    local_loop: EventLoop,
    upstream: AsyncClient,
    upstream_loop: EventLoop,
}

fn spawn_tasks(
    shared: &Arc<Shared>,
    links: Links,
    listener: TcpListener,
    args: &GatewayArgs,
    stop: &watch::Receiver<bool>,
) -> Vec<(&'static str, JoinHandle<()>)> {
    let (intake_tx, intake_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(4096);
    let http_shared = shared.clone();
    vec![
        (
            "local",
            tokio::spawn(run_local(
                links.local_loop,
                links.local.clone(),
                intake_tx,
                shared.clone(),
                stop.clone(),
            )),
        ),
        (
            "writer",
            tokio::spawn(run_writer(
                intake_rx,
                links.local.clone(),
                shared.clone(),
                stop.clone(),
            )),
        ),
        (
            "uplink",
            tokio::spawn(run_uplink(
                links.upstream_loop,
                links.upstream.clone(),
                links.local,
                events_tx,
                shared.clone(),
                stop.clone(),
            )),
        ),
        (
            "forwarder",
            tokio::spawn(run_forwarder(
                events_rx,
                links.upstream.clone(),
                shared.clone(),
                args.confirm_timeout,
                stop.clone(),
            )),
        ),
        (
            "health",
            tokio::spawn(run_health(
                links.upstream,
                shared.clone(),
                args.health_interval,
                stop.clone(),
            )),
        ),
        (
            "http",
            tokio::spawn(health::serve(
                listener,
                move || snapshot(http_shared.clone()),
                stop.clone(),
            )),
        ),
    ]
}

/// A running gateway. Stop it with [`Gateway::shutdown`].
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    failures: mpsc::UnboundedReceiver<GatewayError>,
    health_addr: SocketAddr,
    upstream: AsyncClient,
    local: AsyncClient,
}

impl Gateway {
    /// Open the queue, bind the health port and start every task. Connections to the brokers
    /// are made (and remade) in the background.
    pub async fn start(args: GatewayArgs) -> Result<Self, GatewayError> {
        // rumqttc's TLS needs a process-wide rustls provider; ring is the only one we build.
        // An error only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if args.local.host == args.upstream.host && args.local.port == args.upstream.port {
            return Err(GatewayError::SameBroker(args.upstream.clone()));
        }
        let dir = args.data_dir.join("queue");
        let max_disk = args.max_disk;
        let queue = blocking("queue open", move || Queue::open(&dir, max_disk)).await?;
        let recovery = queue.recovery().clone();
        let stats = queue.stats();
        tracing::info!(
            gateway_id = %args.gateway_id, queue_depth = stats.depth, next_gseq = stats.next_gseq,
            torn_tails = recovery.torn_tails, corrupt_segments = recovery.corrupt_copies.len(),
            "gateway: queue open"
        );
        let listener = TcpListener::bind(args.health_listen)
            .await
            .map_err(|source| GatewayError::Health {
                addr: args.health_listen,
                source,
            })?;
        let health_addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Health {
                addr: args.health_listen,
                source,
            })?;

        let (failures_tx, failures) = mpsc::unbounded_channel();
        let window = usize::from(args.window);
        let shared = Arc::new(Shared {
            id: args.gateway_id.clone(),
            queue: Mutex::new(queue),
            counters: Counters::default(),
            new_data: Notify::new(),
            publish_health: Notify::new(),
            local_epoch: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            recovery,
            max_disk,
            window,
            failures: failures_tx,
        });

        let first = shared.snapshot_blocking();
        let up_opts = upstream_options(&args, status_payload(&first, true))?;
        let (upstream, up_loop) = AsyncClient::new(up_opts, window + 256);

        let (local, local_loop) = AsyncClient::new(local_options(&args), 8192);

        let (stop, stop_rx) = watch::channel(false);
        let tasks = spawn_tasks(
            &shared,
            Links {
                local: local.clone(),
                local_loop,
                upstream: upstream.clone(),
                upstream_loop: up_loop,
            },
            listener,
            &args,
            &stop_rx,
        );
        Ok(Self {
            shared,
            stop,
            tasks,
            failures,
            health_addr,
            upstream,
            local,
        })
    }

    /// Where `/healthz` and `/metrics` are served.
    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
    }

    /// The gateway's state now.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        snapshot(self.shared.clone()).await
    }

    /// Resolves when a task hit an error the gateway cannot continue after (the queue's disk
    /// failing); the gateway should then be shut down and the error reported.
    pub async fn failed(&mut self) -> GatewayError {
        match self.failures.recv().await {
            Some(e) => e,
            None => GatewayError::TaskDied("gateway"),
        }
    }

    /// Stop every task, publish a last "disconnected" status, sync the queue and disconnect.
    pub async fn shutdown(self) -> Result<(), GatewayError> {
        if self
            .shared
            .counters
            .uplink_connected
            .load(Ordering::Relaxed)
            && let Some(s) = snapshot(self.shared.clone()).await
        {
            let topic = Topic::GatewayStatus(self.shared.id.clone()).to_string();
            let _ =
                self.upstream
                    .try_publish(topic, QoS::AtLeastOnce, true, status_payload(&s, true));
        }
        // Let the uplink loop send what is queued (the status) before it stops.
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.upstream.try_disconnect();
        let _ = self.local.try_disconnect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            if task.await.is_err() {
                tracing::error!(task = name, "gateway: task panicked");
            }
        }
        let shared = self.shared;
        blocking("queue close", move || shared.queue().sync()).await
    }
}

/// Run the gateway until SIGINT or SIGTERM (or a fatal error), on its own tokio runtime.
pub fn run(args: GatewayArgs) -> Result<(), GatewayError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(GatewayError::Runtime)?;
    runtime.block_on(async {
        let mut gateway = Gateway::start(args).await?;
        tracing::info!(health = %gateway.health_addr(), "gateway: running");
        let failure = tokio::select! {
            e = gateway.failed() => Some(e),
            () = shutdown_signal() => None,
        };
        tracing::info!("gateway: shutting down");
        gateway.shutdown().await?;
        failure.map_or(Ok(()), Err)
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Log a failed connection attempt: at WARN on the 1st, 2nd, 4th, 8th, … in a row (a wrong
/// address or a refused certificate must be visible without flooding the log), else at DEBUG.
fn failed_attempt(side: &str, attempts: &mut u64, error: &rumqttc::ConnectionError) {
    *attempts += 1;
    if attempts.is_power_of_two() {
        tracing::warn!(side, attempts = *attempts, error = %error, "cannot connect; retrying");
    } else {
        tracing::debug!(side, attempts = *attempts, error = %error, "cannot connect; retrying");
    }
}

/// Sleep for `backoff` unless asked to stop; returns false when stopping.
async fn pause(backoff: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(backoff) => true,
        _ = stop.changed() => false,
    }
}

async fn run_local(
    mut events: EventLoop,
    client: AsyncClient,
    intake: mpsc::UnboundedSender<(u64, Publish)>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut attempts = 0u64;
    loop {
        let polled = tokio::select! {
            p = events.poll() => p,
            _ = stop.changed() => return,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = MIN_BACKOFF;
                attempts = 0;
                shared.local_epoch.fetch_add(1, Ordering::SeqCst);
                shared
                    .counters
                    .local_connected
                    .store(true, Ordering::Relaxed);
                tracing::info!(
                    session_present = ack.session_present,
                    "local broker: connected"
                );
                if !ack.session_present {
                    let filters = [READINGS_FILTER, STATUS_FILTER, RESPONSE_FILTER]
                        .map(|f| rumqttc::SubscribeFilter::new(f.to_owned(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::error!(error = %e, "local broker: cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let epoch = shared.local_epoch.load(Ordering::SeqCst);
                if intake.send((epoch, p)).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                if shared
                    .counters
                    .local_connected
                    .swap(false, Ordering::Relaxed)
                {
                    tracing::warn!(error = %e, "local broker: connection lost; reconnecting");
                } else {
                    failed_attempt("local broker", &mut attempts, &e);
                }
                if !pause(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Intake {
    queued: u64,
    rejected: u64,
    dropped: u64,
}

fn intake_blocking(shared: &Shared, items: &[(String, Vec<u8>)]) -> Result<Intake, QueueError> {
    let now = now_ms();
    let mut out = Intake::default();
    let mut q = shared.queue();
    for (topic, payload) in items {
        if let Err(reason) = check_uplink(topic, payload) {
            out.rejected += 1;
            tracing::warn!(topic, reason, "local message not forwarded");
            continue;
        }
        match q.append(topic, payload, now) {
            Ok(a) => {
                out.queued += 1;
                out.dropped += a.dropped;
            }
            Err(e @ QueueError::TooLarge { .. }) => {
                out.rejected += 1;
                tracing::warn!(topic, error = %e, "local message not forwarded");
            }
            Err(e) => return Err(e),
        }
    }
    let ticket = q.begin_sync()?;
    drop(q);
    ticket.sync()?;
    shared.queue().finish_sync(&ticket);
    Ok(out)
}

async fn run_writer(
    mut intake: mpsc::UnboundedReceiver<(u64, Publish)>,
    local: AsyncClient,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            m = intake.recv() => m,
            _ = stop.changed() => None,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match intake.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let items: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|(_, p)| (p.topic.clone(), p.payload.to_vec()))
            .collect();
        let s = shared.clone();
        let outcome = match blocking("writer", move || intake_blocking(&s, &items)).await {
            Ok(o) => o,
            Err(e) => {
                // Nothing of this batch is acknowledged: the local broker keeps it.
                shared.fail(e);
                return;
            }
        };
        let c = &shared.counters;
        Counters::add(&c.received, batch.len() as u64);
        Counters::add(&c.rejected, outcome.rejected);
        Counters::add(&c.dropped, outcome.dropped);
        if outcome.queued > 0 {
            shared.new_data.notify_one();
        }
        let epoch = shared.local_epoch.load(Ordering::SeqCst);
        for (e, p) in &batch {
            if *e == epoch && local.ack(p).await.is_err() {
                return;
            }
        }
    }
}

async fn relay_down(local: &AsyncClient, p: &Publish, shared: &Shared) {
    let Ok(topic @ (Topic::Command { .. } | Topic::Ota(_))) = Topic::parse(&p.topic) else {
        tracing::warn!(topic = %p.topic, "uplink: ignoring a message on an unexpected topic");
        return;
    };
    // Live deliveries of retained messages arrive without the retain flag (MQTT 3.1.1), so the
    // contract decides: commands are retained, including the empty payload that clears one.
    let retain = p.retain || topic.retained();
    match local
        .publish(
            p.topic.clone(),
            QoS::AtLeastOnce,
            retain,
            p.payload.to_vec(),
        )
        .await
    {
        Ok(()) => Counters::add(&shared.counters.downlink, 1),
        Err(e) => tracing::warn!(topic = %p.topic, error = %e, "downlink: cannot relay"),
    }
}

async fn run_uplink(
    mut events: EventLoop,
    client: AsyncClient,
    local: AsyncClient,
    forwarder: mpsc::Sender<UplinkEvent>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let ack_topic = Topic::GatewayAck(shared.id.clone()).to_string();
    let status_topic = Topic::GatewayStatus(shared.id.clone()).to_string();
    let mut backoff = MIN_BACKOFF;
    let mut attempts = 0u64;
    loop {
        let polled = tokio::select! {
            p = events.poll() => p,
            _ = stop.changed() => return,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = MIN_BACKOFF;
                attempts = 0;
                shared
                    .counters
                    .uplink_connected
                    .store(true, Ordering::Relaxed);
                tracing::info!("uplink: connected");
                // Every time, even with a session present: resubscribing redelivers retained
                // commands, so one lost while the gateway restarted still reaches the scale.
                let filters = [ack_topic.as_str(), COMMAND_FILTER, OTA_FILTER]
                    .map(|f| rumqttc::SubscribeFilter::new(f.to_owned(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "uplink: cannot subscribe");
                }
                if forwarder.send(UplinkEvent::Connected).await.is_err() {
                    return;
                }
                shared.publish_health.notify_one();
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.topic == ack_topic {
                    match confirmed_ranges(&p.payload) {
                        Ok(ranges) => {
                            if forwarder
                                .send(UplinkEvent::Confirmed(ranges))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            Counters::add(&shared.counters.bad_confirmations, 1);
                            tracing::warn!(error = %e, "uplink: undecodable confirmation");
                        }
                    }
                } else {
                    relay_down(&local, &p, &shared).await;
                }
            }
            Ok(_) => {}
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                if shared
                    .counters
                    .uplink_connected
                    .swap(false, Ordering::Relaxed)
                {
                    tracing::warn!(error = %e, "uplink: connection lost; queueing until it is back");
                    if forwarder.send(UplinkEvent::Disconnected).await.is_err() {
                        return;
                    }
                } else {
                    failed_attempt("uplink", &mut attempts, &e);
                }
                // The last will carries the numbers of the moment the link went down.
                if let Some(s) = snapshot(shared.clone()).await {
                    events.mqtt_options.set_last_will(LastWill::new(
                        status_topic.clone(),
                        status_payload(&s, true),
                        QoS::AtLeastOnce,
                        true,
                    ));
                }
                if !pause(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The payload as forwarded: the scale's bytes plus `gw` and `gseq`.
fn forwarded_payload(id: &GatewayId, gseq: u64, payload: &[u8]) -> Result<Vec<u8>, String> {
    let forwarding = Forwarding {
        gw: id.clone(),
        gseq,
    };
    let mut out = vec![0; payload.len() + 32 + GatewayId::MAX_LEN];
    let n = scalesense_proto::append_forwarding(payload, &forwarding, &mut out)
        .map_err(|e| e.to_string())?;
    out.truncate(n);
    Ok(out)
}

struct Forwarder {
    window: Window,
    client: AsyncClient,
    shared: Arc<Shared>,
    acks_unsynced: bool,
    last_ack_sync: Instant,
}

impl Forwarder {
    async fn apply_confirmations(&mut self, ranges: Vec<(u64, u64)>) -> Result<(), GatewayError> {
        if ranges.is_empty() {
            return Ok(());
        }
        self.window.confirmed(&ranges);
        let s = self.shared.clone();
        // The counter moves under the queue's lock, so a health snapshot never sees the
        // messages gone from the queue but not yet counted as confirmed.
        blocking("forwarder", move || {
            let mut queue = s.queue();
            let newly = queue.ack(&ranges)?;
            Counters::add(&s.counters.confirmed, newly);
            Ok(())
        })
        .await?;
        self.acks_unsynced = true;
        Ok(())
    }

    async fn oldest_unconfirmed(&self) -> Result<Option<u64>, GatewayError> {
        let s = self.shared.clone();
        blocking("forwarder", move || Ok(s.queue().oldest_unconfirmed())).await
    }

    async fn handle(&mut self, events: Vec<UplinkEvent>) -> Result<(), GatewayError> {
        let mut ranges = Vec::new();
        for event in events {
            match event {
                UplinkEvent::Confirmed(r) => ranges.extend(r),
                UplinkEvent::Connected => {
                    self.apply_confirmations(std::mem::take(&mut ranges))
                        .await?;
                    let s = self.shared.clone();
                    let from = blocking("forwarder", move || {
                        let q = s.queue();
                        Ok(q.oldest_unconfirmed().unwrap_or(q.stats().next_gseq))
                    })
                    .await?;
                    self.window.connected(from);
                    Counters::add(&self.shared.counters.restarts, 1);
                    tracing::info!(from_gseq = from, "uplink: sending everything unconfirmed");
                }
                UplinkEvent::Disconnected => {
                    self.apply_confirmations(std::mem::take(&mut ranges))
                        .await?;
                    self.window.disconnected();
                }
            }
        }
        self.apply_confirmations(ranges).await
    }

    async fn housekeeping(&mut self) -> Result<(), GatewayError> {
        if self.window.in_flight() > 0 {
            let oldest = self.oldest_unconfirmed().await?;
            if self.window.check_timeout(Instant::now(), oldest) {
                Counters::add(&self.shared.counters.restarts, 1);
                tracing::warn!(
                    from_gseq = self.window.next(),
                    "uplink: no confirmation in time; resending everything unconfirmed"
                );
            }
        }
        if self.acks_unsynced && self.last_ack_sync.elapsed() >= ACK_SYNC_INTERVAL {
            let s = self.shared.clone();
            blocking("forwarder", move || s.queue().sync()).await?;
            self.acks_unsynced = false;
            self.last_ack_sync = Instant::now();
        }
        Ok(())
    }

    /// Send from the queue while the window has room.
    async fn fill(&mut self) -> Result<(), GatewayError> {
        while self.window.room() > 0 {
            let from = self.window.next();
            let n = self.window.room().min(READ_BATCH);
            let s = self.shared.clone();
            let records =
                blocking("forwarder", move || s.queue().read(from, n, READ_BYTES)).await?;
            let Some(last) = records.last().map(|r| r.gseq) else {
                break;
            };
            let now = Instant::now();
            let mut unforwardable = Vec::new();
            for r in records {
                let payload = match forwarded_payload(&self.shared.id, r.gseq, &r.payload) {
                    Ok(p) => p,
                    Err(reason) => {
                        // Checked when queued, so this is damage the checksum missed: confirm it
                        // locally rather than resend it forever.
                        tracing::error!(
                            gseq = r.gseq,
                            reason,
                            "uplink: queued message cannot be forwarded; dropping it"
                        );
                        unforwardable.push((r.gseq, r.gseq));
                        continue;
                    }
                };
                let retain = Topic::parse(&r.topic).is_ok_and(|t| t.retained());
                match self
                    .client
                    .try_publish(r.topic, QoS::AtLeastOnce, retain, payload)
                {
                    Ok(()) => {
                        self.window.sent(r.gseq, now);
                        Counters::add(&self.shared.counters.published, 1);
                    }
                    // The client's queue is full: the rest goes at the next wake-up.
                    Err(ClientError::TryRequest(_) | ClientError::Request(_)) => {
                        self.after_fill(unforwardable).await?;
                        return Ok(());
                    }
                }
            }
            self.after_fill(unforwardable).await?;
            if self.window.next() <= last {
                break;
            }
        }
        Ok(())
    }

    async fn after_fill(&mut self, unforwardable: Vec<(u64, u64)>) -> Result<(), GatewayError> {
        if unforwardable.is_empty() {
            return Ok(());
        }
        Counters::add(&self.shared.counters.rejected, unforwardable.len() as u64);
        let s = self.shared.clone();
        blocking("forwarder", move || s.queue().ack(&unforwardable)).await?;
        Ok(())
    }
}

async fn run_forwarder(
    mut events: mpsc::Receiver<UplinkEvent>,
    client: AsyncClient,
    shared: Arc<Shared>,
    confirm_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut f = Forwarder {
        window: Window::new(shared.window, confirm_timeout),
        client,
        shared: shared.clone(),
        acks_unsynced: false,
        last_ack_sync: Instant::now(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => batch.push(ev),
                None => return,
            },
            () = shared.new_data.notified() => {}
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        while let Ok(ev) = events.try_recv() {
            batch.push(ev);
        }
        let step = async {
            f.handle(batch).await?;
            f.housekeeping().await?;
            f.fill().await
        };
        if let Err(e) = step.await {
            shared.fail(e);
            return;
        }
        shared
            .counters
            .in_flight
            .store(f.window.in_flight() as u64, Ordering::Relaxed);
    }
}

async fn run_health(
    client: AsyncClient,
    shared: Arc<Shared>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let topic = Topic::GatewayStatus(shared.id.clone()).to_string();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.publish_health.notified() => {}
            _ = stop.changed() => return,
        }
        if !shared.counters.uplink_connected.load(Ordering::Relaxed) {
            continue;
        }
        let Some(s) = snapshot(shared.clone()).await else {
            return;
        };
        if let Err(e) = client.try_publish(
            topic.clone(),
            QoS::AtLeastOnce,
            true,
            status_payload(&s, false),
        ) {
            tracing::debug!(error = %e, "health: status not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_scale_uplink_json_is_queued() {
        let ok = br#"{"v":1,"seq":1}"#;
        assert_eq!(check_uplink("keg/readings/S1", ok), Ok(()));
        assert_eq!(check_uplink("keg/status/S1", ok), Ok(()));
        assert_eq!(check_uplink("keg/response/S1", ok), Ok(()));
        assert!(check_uplink("keg/command/S1/tare_empty", ok).is_err());
        assert!(check_uplink("keg/readings/bad id", ok).is_err());
        assert!(check_uplink("keg/readings/S1", b"not json").is_err());
        assert!(check_uplink("keg/readings/S1", b"[1]").is_err());
        let forwarded = br#"{"v":1,"gw":"G","gseq":3}"#;
        assert!(check_uplink("keg/readings/S1", forwarded).is_err());
    }

    #[test]
    fn forwarded_payloads_carry_gw_and_gseq_and_keep_unknown_fields() {
        let id = GatewayId::try_from("gw-loc-001").unwrap();
        let out = forwarded_payload(&id, 42, br#"{"v":1,"seq":7,"future":{"x":[1,2]}}"#).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["gw"], "gw-loc-001");
        assert_eq!(json["gseq"], 42);
        assert_eq!(json["seq"], 7);
        assert_eq!(json["future"]["x"][1], 2);
    }

    #[test]
    fn confirmations_decode_to_ranges() {
        assert_eq!(
            confirmed_ranges(br#"{"v":1,"ranges":[[1,5],[9,9]]}"#).unwrap(),
            vec![(1, 5), (9, 9)]
        );
        assert!(confirmed_ranges(br#"{"v":1,"ranges":[[5,1]]}"#).is_err());
        assert!(confirmed_ranges(b"{}").is_err());
    }
}
