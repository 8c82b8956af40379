//! The two ways to run the server, assembled from the parts: `scalesense serve` (PostgreSQL or
//! SQLite, an external broker, stateless replicas) and `scalesense up` (everything in one
//! process: the embedded broker, SQLite in a data directory, the demo bar and a simulated
//! fleet).
//!
//! Start-up order makes every acknowledgement path ready before any message can arrive, and
//! shutdown runs in the reverse order so nothing is acknowledged that is not committed: the
//! simulator stops, the MQTT client and broker stop taking messages, the pipeline commits what
//! is already queued, then HTTP stops. Every task is owned and awaited; none is left detached.

use std::future::IntoFuture;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use scalesense_alerts::{
    AlertEngine, AlertFeed, LeaderLease, Mailer, OutboxConfig, OutboxWorker, PgAdvisoryLease,
    SCHEDULER_LOCK_KEY, Scheduler, SchedulerConfig, SingleReplica, SmtpConfig,
};
use scalesense_api::{ApiConfig, ApiState};
#[cfg(feature = "embedded-broker")]
use scalesense_proto::LocationId;
#[cfg(feature = "embedded-broker")]
use scalesense_sim::{BrokerAddr, Fleet, FleetConfig, FleetError, FleetHandle, WorldConfig};
use scalesense_store::{AccountId, Backend, Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::commands::MqttCommandSink;
#[cfg(feature = "embedded-broker")]
use crate::demo::{self, DemoError};
#[cfg(feature = "embedded-broker")]
use crate::embedded::{EmbeddedBroker, EmbeddedError, loopback_for};
use crate::events::EventBus;
use crate::health::Health;
use crate::http::{AppState, router};
use crate::pipeline::{self, AckPublisher, Pipeline, PipelineConfig};
use crate::subscriber::{BrokerUrl, Ingest, LinkConfig, LinkError, LinkPublisher, MqttLink};

/// Default HTTP address of `scalesense up`.
pub const DEFAULT_HTTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// Default MQTT address of `scalesense up`'s embedded broker.
pub const DEFAULT_MQTT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883);
/// The database file inside `--data-dir`.
pub const DATABASE_FILE: &str = "scalesense.db";

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{addr} is already in use; choose another address with {flag}")]
    PortTaken {
        addr: SocketAddr,
        flag: &'static str,
    },
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Listen {
        addr: SocketAddr,
        flag: &'static str,
        source: io::Error,
    },
    #[cfg(feature = "embedded-broker")]
    #[error("{0}")]
    Broker(EmbeddedError),
    #[error("HTTP server: {0}")]
    Http(io::Error),
    #[error("data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[cfg(feature = "embedded-broker")]
    #[error("demo data: {0}")]
    Demo(#[from] DemoError),
    #[cfg(feature = "embedded-broker")]
    #[error("simulated scales: {0}")]
    Fleet(#[from] FleetError),
    #[error("a server task failed: {0}")]
    Task(String),
    #[error("alerts: {0}")]
    Alerts(String),
}

/// `scalesense serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `postgres://…` or a SQLite path.
    pub database: String,
    pub broker: BrokerUrl,
    pub http: SocketAddr,
    /// Split ingest with other replicas through `$share/{group}/…`.
    pub shared_group: Option<String>,
    /// This replica's name: its MQTT client id is `scalesense-server-{name}`, fixed so the
    /// broker keeps its session across restarts. Unique per replica.
    pub name: String,
    pub alerts: AlertsSetup,
}

/// An address to listen on and whether the user chose it (`--http`/`--mqtt` or their env var).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub addr: SocketAddr,
    pub explicit: bool,
}

impl ListenAddr {
    /// The given address, or `default` when none was given.
    pub fn or_default(given: Option<SocketAddr>, default: SocketAddr) -> Self {
        Self {
            addr: given.unwrap_or(default),
            explicit: given.is_some(),
        }
    }
}

#[cfg(feature = "embedded-broker")]
/// `scalesense up`.
#[derive(Debug, Clone)]
pub struct UpConfig {
    pub data_dir: PathBuf,
    pub http: ListenAddr,
    pub mqtt: ListenAddr,
    pub scales: u16,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// The demo admin's password on first run; generated when `None`.
    pub admin_password: Option<String>,
    pub seed: u64,
    pub alerts: AlertsSetup,
}

#[cfg(feature = "embedded-broker")]
impl UpConfig {
    /// The alert settings, with exports and the daily e-mail in the data directory unless
    /// `--reports-dir` says otherwise.
    fn alerts_setup(&self) -> AlertsSetup {
        AlertsSetup {
            reports_dir: (self.alerts.reports_dir.clone()).or_else(|| Some(self.data_dir.clone())),
            ..self.alerts.clone()
        }
    }
}

#[cfg(feature = "embedded-broker")]
/// What `up` started, for the person who started it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpReport {
    pub broker: SocketAddr,
    pub database: PathBuf,
    pub http: SocketAddr,
    pub scales: u16,
    pub speed: f64,
    pub admin_email: String,
    /// Shown once: the admin password generated on this (first) run.
    pub generated_password: Option<String>,
    /// The demo bar was created by this run.
    pub created_demo: bool,
    /// Things the person should know (a default port was taken and another was picked).
    pub notes: Vec<String>,
}

#[cfg(feature = "embedded-broker")]
impl std::fmt::Display for UpReport {
    /// The summary `scalesense up` prints when everything runs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Scale Sense is up.")?;
        writeln!(f, "  dashboard    http://{}/", self.http)?;
        writeln!(
            f,
            "  HTTP         http://{}  (/metrics, /healthz, /readyz)",
            self.http
        )?;
        writeln!(f, "  MQTT broker  mqtt://{}", self.broker)?;
        writeln!(f, "  database     {}", self.database.display())?;
        writeln!(
            f,
            "  scales       {} simulated, speed {}x",
            self.scales, self.speed
        )?;
        match &self.generated_password {
            Some(password) => writeln!(
                f,
                "  admin        {} / {password}  (generated; shown only this once)",
                self.admin_email
            )?,
            None => writeln!(f, "  admin        {}", self.admin_email)?,
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        write!(f, "Press Ctrl-C to stop.")
    }
}

/// How alerts reach people: the SMTP relay (none: e-mail notifications fail visibly in the
/// outbox) and the dashboard's public URL for links in messages.
#[derive(Debug, Clone, Default)]
pub struct AlertsSetup {
    pub smtp: Option<SmtpConfig>,
    pub dashboard_url: Option<String>,
    /// Where inventory exports and the download-link secret live (`up`: its data directory).
    /// `None`: no exports, no daily export e-mail.
    pub reports_dir: Option<PathBuf>,
}

/// The inventory exporter over `dir`: files in `dir/exports`, the link secret in
/// `dir/download-secret` (created once, so links survive restarts).
fn reports_exporter(
    store: &Arc<dyn Store>,
    dir: &std::path::Path,
) -> Result<Arc<scalesense_reports::Exporter>, AppError> {
    let signer = scalesense_reports::LinkSigner::load_or_create(dir)
        .map_err(|e| AppError::Alerts(format!("reports: {e}")))?;
    Ok(Arc::new(scalesense_reports::Exporter::new(
        Arc::clone(store),
        dir.join("exports"),
        signer,
    )))
}

/// The REST API's settings that depend on the shape: `up` has one account, so logins need
/// not name it.
#[derive(Debug, Clone, Default)]
pub struct ApiSetup {
    pub default_account: Option<AccountId>,
}

/// The parts both shapes share: the pipeline task, the alert engine and its scheduler, and
/// the HTTP server.
#[derive(Debug)]
struct Core {
    pipeline: JoinHandle<()>,
    pipeline_stop: CancellationToken,
    alerts: JoinHandle<()>,
    alerts_stop: CancellationToken,
    /// Marks unanswered commands expired and clears their retained messages.
    expiry: JoinHandle<()>,
    http: JoinHandle<io::Result<()>>,
    http_stop: CancellationToken,
}

/// The alert engine's feed, the engine itself and the task running them.
type AlertsParts = (Arc<AlertFeed>, Arc<AlertEngine>, JoinHandle<()>);

/// Starts the alert engine (fed by the pipeline after each commit) and the scheduler (offline
/// checks, grace expiry, the notification outbox and digests; one replica at a time on
/// PostgreSQL). Returns the feed for the pipeline, the engine (calibration drift is judged on
/// it directly) and the task running both.
fn start_alerts(
    store: &Arc<dyn Store>,
    database_url: &str,
    events: &EventBus,
    setup: AlertsSetup,
    http_addr: SocketAddr,
    stop: CancellationToken,
) -> Result<AlertsParts, AppError> {
    let clock: Arc<dyn scalesense_alerts::Clock> = Arc::new(scalesense_alerts::SystemClock);
    let engine = Arc::new(AlertEngine::new(
        Arc::clone(store),
        Arc::clone(&clock),
        Arc::new(events.clone()),
    ));
    let mailer = setup
        .smtp
        .as_ref()
        .map(Mailer::new)
        .transpose()
        .map_err(|e| AppError::Alerts(format!("SMTP: {e}")))?;
    let dashboard_url = setup
        .dashboard_url
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let (report_mailer, report_clock, report_url) =
        (mailer.clone(), Arc::clone(&clock), dashboard_url.clone());
    let outbox = Arc::new(
        OutboxWorker::new(
            Arc::clone(store),
            clock,
            mailer,
            OutboxConfig {
                dashboard_url,
                ..OutboxConfig::default()
            },
        )
        .map_err(|e| AppError::Alerts(e.to_string()))?,
    );
    let lease: Arc<dyn LeaderLease> = match store.backend() {
        Backend::Postgres => Arc::new(PgAdvisoryLease::new(database_url, SCHEDULER_LOCK_KEY)),
        Backend::Sqlite => Arc::new(SingleReplica),
    };
    let scheduler = Scheduler::new(
        Arc::clone(&engine),
        outbox,
        lease,
        SchedulerConfig::default(),
    );
    // The daily inventory e-mail (issue 9) runs on the scheduler's leader only.
    let scheduler = match &setup.reports_dir {
        Some(dir) => scheduler.with_job(Arc::new(scalesense_reports::DailyExportJob::new(
            Arc::clone(store),
            (*reports_exporter(store, dir)?).clone(),
            report_mailer,
            Arc::clone(&report_clock),
            report_url,
        ))),
        None => scheduler,
    };
    let feed = Arc::new(AlertFeed::new());
    let task_feed = Arc::clone(&feed);
    let task_engine = Arc::clone(&engine);
    let task = tokio::spawn(async move {
        let engine = task_engine;
        match engine.load().await {
            Ok(open) => tracing::info!(open, "alert engine loaded"),
            Err(e) => {
                tracing::warn!(error = %e, "alert engine could not load; it retries on the next tick");
            }
        }
        tokio::join!(
            task_feed.run(&engine, stop.clone()),
            scheduler.run(stop.clone())
        );
    });
    Ok((feed, engine, task))
}

/// "Send test notification" for the API (`POST /api/v1/channels/{id}/test`): an outbox worker
/// of its own that delivers only the tests it is asked for, on whichever replica got the
/// request (the scheduler's worker, which delivers everything else, runs on the leader only).
fn test_sender(
    store: &Arc<dyn Store>,
    setup: &AlertsSetup,
    http_addr: SocketAddr,
) -> Result<Arc<OutboxTester>, AppError> {
    let mailer = setup
        .smtp
        .as_ref()
        .map(Mailer::new)
        .transpose()
        .map_err(|e| AppError::Alerts(format!("SMTP: {e}")))?;
    let worker = OutboxWorker::new(
        Arc::clone(store),
        Arc::new(scalesense_alerts::SystemClock),
        mailer,
        OutboxConfig {
            dashboard_url: (setup.dashboard_url.clone())
                .unwrap_or_else(|| format!("http://{http_addr}")),
            ..OutboxConfig::default()
        },
    )
    .map_err(|e| AppError::Alerts(e.to_string()))?;
    Ok(Arc::new(OutboxTester(worker)))
}

/// The API's [`NotificationTester`](scalesense_api::state::NotificationTester) over an
/// [`OutboxWorker`].
#[derive(Debug)]
struct OutboxTester(OutboxWorker);

#[async_trait::async_trait]
impl scalesense_api::state::NotificationTester for OutboxTester {
    async fn send_test(
        &self,
        account: &AccountId,
        channel: &scalesense_store::RecordId,
    ) -> Result<(), String> {
        self.0
            .send_test(account, channel)
            .await
            .map_err(|e| match e {
                scalesense_alerts::AlertsError::Delivery(d) => d.to_string(),
                other => other.to_string(),
            })
    }
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    fn start(
        store: Arc<dyn Store>,
        database_url: &str,
        rx: tokio::sync::mpsc::Receiver<pipeline::Inbound>,
        acks: Arc<dyn AckPublisher>,
        health: Health,
        http: TcpListener,
        config: PipelineConfig,
        alerts: AlertsSetup,
        api: (ApiSetup, LinkPublisher),
    ) -> Result<Self, AppError> {
        let events = EventBus::default();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let http_addr = http.local_addr().map_err(AppError::Http)?;
        let tester = test_sender(&store, &alerts, http_addr)?;
        let alerts_stop = CancellationToken::new();
        let reports_dir = alerts.reports_dir.clone();
        let (feed, engine, alerts) = start_alerts(
            &store,
            database_url,
            &events,
            alerts,
            http_addr,
            alerts_stop.clone(),
        )?;
        let pipeline_stop = CancellationToken::new();
        let expiry = tokio::spawn(crate::commands::sweep_expired(
            Arc::clone(&store),
            Arc::clone(&acks),
            Arc::clone(&clock),
            alerts_stop.clone(),
        ));
        let pipeline = Pipeline::new(
            Arc::clone(&store),
            events.clone(),
            Some(acks),
            Arc::clone(&clock),
            health.clone(),
            config,
        )
        .with_alerts(feed)
        .with_alert_engine(engine);
        let pipeline = tokio::spawn(pipeline.run(rx, pipeline_stop.clone()));
        let http_stop = CancellationToken::new();
        let (api_setup, publisher) = api;
        let api_state = ApiState::new(
            Arc::clone(&store),
            Arc::new(scalesense_api::SystemClock),
            Arc::new(MqttCommandSink::new(publisher)),
            ApiConfig {
                default_account: api_setup.default_account,
                ..ApiConfig::default()
            },
        )
        .map_err(|e| AppError::Task(format!("REST API: {e}")))?
        .with_notifier(tester)
        .with_changes(Arc::new(crate::web::BusChanges::new(events.clone(), clock)));
        let api_state = match &reports_dir {
            Some(dir) => api_state.with_exports(reports_exporter(&store, dir)?),
            None => api_state,
        };
        // The dashboard: its files, and the live events for the API's users over WebSocket.
        let live = scalesense_web::WsState::new(
            Arc::new(crate::web::ApiWsAuth(api_state.clone())),
            Arc::new(crate::web::BusFeed(events.clone())),
            scalesense_web::WsConfig::default(),
            http_stop.clone(),
        );
        let app = router(AppState {
            store,
            health,
            events,
        })
        .merge(scalesense_api::router(api_state))
        .merge(scalesense_web::router(live));
        let http = tokio::spawn(
            axum::serve(
                http,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
        );
        Ok(Self {
            pipeline,
            pipeline_stop,
            alerts,
            alerts_stop,
            expiry,
            http,
            http_stop,
        })
    }

    /// Commits what is queued, then stops HTTP.
    async fn stop(self) -> Result<(), AppError> {
        self.pipeline_stop.cancel();
        self.pipeline
            .await
            .map_err(|e| AppError::Task(format!("ingest pipeline: {e}")))?;
        self.alerts_stop.cancel();
        self.alerts
            .await
            .map_err(|e| AppError::Task(format!("alert engine: {e}")))?;
        self.expiry
            .await
            .map_err(|e| AppError::Task(format!("command expiry: {e}")))?;
        self.http_stop.cancel();
        self.http
            .await
            .map_err(|e| AppError::Task(format!("HTTP server: {e}")))?
            .map_err(AppError::Http)
    }
}

/// Runs `scalesense serve` until `shutdown` fires.
pub async fn serve(config: ServeConfig, shutdown: CancellationToken) -> Result<(), AppError> {
    let store = scalesense_store::connect(&config.database).await?;
    let http = bind_http(ListenAddr {
        addr: config.http,
        explicit: true,
    })
    .await?
    .0;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let health = Health::new();
    let pipeline_config = PipelineConfig::default();
    let (sender, rx) = pipeline::channel(&pipeline_config);
    let link_stop = CancellationToken::new();
    let link = MqttLink::start(
        LinkConfig::new(
            config.broker.clone(),
            format!("scalesense-server-{}", config.name),
            Some(Ingest {
                pipeline: sender,
                shared_group: config.shared_group.clone(),
            }),
        ),
        health.clone(),
        clock,
        link_stop.clone(),
    )?;
    let core = Core::start(
        store,
        &config.database,
        rx,
        Arc::new(link.publisher()),
        health,
        http,
        pipeline_config,
        config.alerts.clone(),
        (ApiSetup::default(), link.publisher()),
    );
    let core = match core {
        Ok(core) => core,
        Err(e) => {
            link_stop.cancel();
            link.join().await;
            return Err(e);
        }
    };
    tracing::info!(
        broker = %config.broker,
        http = %config.http,
        shared_group = config.shared_group.as_deref().unwrap_or("-"),
        "scalesense serve started"
    );
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    link_stop.cancel();
    link.join().await;
    core.stop().await
}

#[cfg(feature = "embedded-broker")]
/// A running `scalesense up`.
#[derive(Debug)]
pub struct Up {
    report: UpReport,
    fleet: FleetHandle,
    fleet_stop: CancellationToken,
    link: MqttLink,
    link_stop: CancellationToken,
    broker: EmbeddedBroker,
    core: Core,
    shutdown: CancellationToken,
}

#[cfg(feature = "embedded-broker")]
impl Up {
    /// Starts everything; returns once the broker, HTTP and the fleet are running.
    pub async fn start(config: UpConfig, shutdown: CancellationToken) -> Result<Self, AppError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (database, store, demo) = open_demo_store(&config, clock.as_ref()).await?;

        let mut notes = Vec::new();
        let (http, http_note) = bind_http(config.http).await?;
        notes.extend(http_note);
        let http_addr = http.local_addr().map_err(AppError::Http)?;

        let health = Health::new();
        let pipeline_config = PipelineConfig::default();
        let (sender, rx) = pipeline::channel(&pipeline_config);
        let (broker, mqtt_note) = start_broker(config.mqtt, sender, Arc::clone(&clock)).await?;
        notes.extend(mqtt_note);
        let broker_addr = broker.local_addr();
        let local = loopback_for(broker_addr);

        // The server's own publishing client (gw/ack), over loopback to the embedded broker.
        let link_stop = CancellationToken::new();
        let link = MqttLink::start(
            LinkConfig::new(
                BrokerUrl {
                    host: local.ip().to_string(),
                    port: local.port(),
                },
                "scalesense-server-up",
                None,
            ),
            health.clone(),
            Arc::clone(&clock),
            link_stop.clone(),
        );
        let link = match link {
            Ok(link) => link,
            Err(e) => {
                broker.stop().await;
                return Err(e.into());
            }
        };
        let core = Core::start(
            store,
            &database.display().to_string(),
            rx,
            Arc::new(link.publisher()),
            health,
            http,
            pipeline_config,
            config.alerts_setup(),
            (
                ApiSetup {
                    default_account: AccountId::try_from(demo::ACCOUNT).ok(),
                },
                link.publisher(),
            ),
        );
        let core = match core {
            Ok(core) => core,
            Err(e) => {
                link_stop.cancel();
                link.join().await;
                broker.stop().await;
                return Err(e);
            }
        };

        let fleet_stop = CancellationToken::new();
        let fleet = fleet_config(&config, local)
            .map_err(AppError::from)
            .and_then(|fleet| Fleet::start(fleet, fleet_stop.clone()).map_err(AppError::from));
        let fleet = match fleet {
            Ok(fleet) => fleet,
            Err(e) => {
                // Nothing may be left running: stop what started, in order.
                link_stop.cancel();
                link.join().await;
                broker.stop().await;
                if let Err(stop) = core.stop().await {
                    tracing::error!(error = %stop, "stopping after a failed start");
                }
                return Err(e);
            }
        };
        for note in &notes {
            tracing::warn!("{note}");
        }
        Ok(Self {
            report: UpReport {
                broker: broker_addr,
                database,
                http: http_addr,
                scales: config.scales,
                speed: config.speed,
                admin_email: demo.admin_email,
                generated_password: demo.generated_password,
                created_demo: demo.created,
                notes,
            },
            fleet,
            fleet_stop,
            link,
            link_stop,
            broker,
            core,
            shutdown,
        })
    }

    pub fn report(&self) -> &UpReport {
        &self.report
    }

    /// Runs until `shutdown` fires, then stops everything in order.
    pub async fn wait(self) -> Result<(), AppError> {
        self.shutdown.cancelled().await;
        tracing::info!("shutting down");
        self.fleet_stop.cancel();
        let report = self.fleet.join().await;
        tracing::info!(
            scales = report.scales,
            unsent_readings = report.unsent_readings,
            "simulated scales stopped"
        );
        self.link_stop.cancel();
        self.link.join().await;
        self.broker.stop().await;
        self.core.stop().await
    }
}

/// Creates the data directory, opens (or creates) its database and makes sure the demo bar
/// exists.
#[cfg(feature = "embedded-broker")]
async fn open_demo_store(
    config: &UpConfig,
    clock: &dyn Clock,
) -> Result<(PathBuf, Arc<dyn Store>, demo::DemoOutcome), AppError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let database = config.data_dir.join(DATABASE_FILE);
    let store = scalesense_store::connect(&database.to_string_lossy()).await?;
    let demo = demo::ensure(
        store.as_ref(),
        config.scales,
        config.admin_password.as_deref(),
        clock.now_ms(),
    )
    .await?;
    Ok((database, store, demo))
}

/// The simulated fleet of `up`: one scale per demo tap, on the demo bar's local time.
#[cfg(feature = "embedded-broker")]
fn fleet_config(config: &UpConfig, broker: SocketAddr) -> Result<FleetConfig, DemoError> {
    Ok(FleetConfig {
        broker: BrokerAddr {
            host: broker.ip().to_string(),
            port: broker.port(),
        },
        scales: u32::from(config.scales),
        speed: config.speed,
        location: LocationId::try_from(demo::LOCATION)?,
        seed: config.seed,
        first_device_number: 1,
        start_ms: None,
        world: WorldConfig {
            time_zone: jiff::tz::TimeZone::get("America/New_York")
                .unwrap_or(jiff::tz::TimeZone::UTC),
            ..WorldConfig::default()
        },
    })
}

/// Binds the HTTP listener. A taken default port is replaced by a free one (with a note); a
/// taken explicit port is an error naming the flag.
async fn bind_http(listen: ListenAddr) -> Result<(TcpListener, Option<String>), AppError> {
    match TcpListener::bind(listen.addr).await {
        Ok(listener) => Ok((listener, None)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && !listen.explicit => {
            let fallback = SocketAddr::new(listen.addr.ip(), 0);
            let listener =
                TcpListener::bind(fallback)
                    .await
                    .map_err(|source| AppError::Listen {
                        addr: fallback,
                        flag: "--http",
                        source,
                    })?;
            let picked = listener.local_addr().map_err(AppError::Http)?;
            Ok((
                listener,
                Some(format!(
                    "port {} is taken; HTTP listens on {picked} instead (choose with --http)",
                    listen.addr.port()
                )),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(AppError::PortTaken {
            addr: listen.addr,
            flag: "--http",
        }),
        Err(source) => Err(AppError::Listen {
            addr: listen.addr,
            flag: "--http",
            source,
        }),
    }
}

#[cfg(feature = "embedded-broker")]
/// Starts the embedded broker with the same port rule as [`bind_http`].
async fn start_broker(
    listen: ListenAddr,
    pipeline: pipeline::PipelineSender,
    clock: Arc<dyn Clock>,
) -> Result<(EmbeddedBroker, Option<String>), AppError> {
    match EmbeddedBroker::start(listen.addr, pipeline.clone(), Arc::clone(&clock)).await {
        Ok(broker) => Ok((broker, None)),
        Err(EmbeddedError::AddrInUse { addr }) if !listen.explicit => {
            let fallback = SocketAddr::new(addr.ip(), 0);
            let broker = EmbeddedBroker::start(fallback, pipeline, clock)
                .await
                .map_err(AppError::Broker)?;
            let note = format!(
                "port {} is taken; the MQTT broker listens on {} instead (choose with --mqtt)",
                addr.port(),
                broker.local_addr()
            );
            Ok((broker, Some(note)))
        }
        Err(EmbeddedError::AddrInUse { addr }) => Err(AppError::PortTaken {
            addr,
            flag: "--mqtt",
        }),
        Err(e) => Err(AppError::Broker(e)),
    }
}

/// Resolves when the process is asked to stop (Ctrl-C / SIGINT, or SIGTERM).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still works");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Cancels `token` on SIGINT/SIGTERM while `run` runs; returns `run`'s result once it is done.
pub async fn run_until_signal<F>(token: CancellationToken, run: F) -> F::Output
where
    F: std::future::IntoFuture,
{
    let watcher = token.clone();
    let signals = tokio::spawn(async move {
        tokio::select! {
            () = shutdown_signal() => {
                tracing::info!("stop requested");
                watcher.cancel();
            }
            () = watcher.cancelled() => {}
        }
    });
    let result = run.await;
    token.cancel();
    if let Err(e) = signals.await {
        tracing::debug!(error = %e, "signal watcher ended abnormally");
    }
    result
}
