//! `scalesense bench ingest` (issue #11): the ingest paths measured side by side in one run,
//! on the same machine and with the same publishers.
//!
//! Columns: (a) our server with its embedded broker (ingest in the publish hook, as `up`
//! assembles it: pipeline, group commit, alert feed, event bus); (b) our server subscribed to
//! Mosquitto (persistent session, manual acks, as `serve` assembles it); (c) a Python
//! paho-mqtt subscriber committing every reading to SQLite, and (d) the same committing 100 at
//! a time; (e) the ceilings: the embedded broker whose hook answers at once without touching a
//! database, and Mosquitto delivering to one plain subscriber that does nothing.
//!
//! Each column runs twice: at saturation (readings/s, CPU per reading) and at a fixed total
//! rate (publish-to-commit latency). Every run starts from a fresh copy of one SQLite file with
//! the demo bar and afterwards counts the rows by `(device, boot, seq)` against what the
//! publishers had acknowledged by their broker.
//!
//! What this module must never do: take a number from the code under test when it can be
//! measured from outside (rows are counted in the file; latency ends when the commit is
//! announced — the server's event bus after the commit, the baseline's own clock after its
//! COMMIT returns).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scalesense_proto::LocationId;
use scalesense_server::clock::{Clock, SystemClock};
use scalesense_server::embedded::EmbeddedBroker;
use scalesense_server::events::{Event, EventBus};
use scalesense_server::health::Health;
use scalesense_server::pipeline::{self, Disposition, Pipeline, PipelineConfig};
use scalesense_server::subscriber::{BrokerUrl, Ingest, LinkConfig, MqttLink};
use scalesense_store::{SqliteSettings, SqliteStore, Store};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::accounting::{Accounting, Layout, stored_counts};
use crate::external::{Baseline, BaselineMode, PrivateMosquitto, PythonEnv};
use crate::publishers::{self, Pace, Plan, Published, epoch_us};
use crate::report::{ColumnResult, IngestReport, Latency};
use crate::{BenchError, cpu};

/// One column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// (a) our server, embedded broker.
    Embedded,
    /// (b) our server, subscribed to Mosquitto.
    Mosquitto,
    /// (c) Python baseline, one commit per reading.
    PythonPerMessage,
    /// (d) Python baseline, 100 readings per commit.
    PythonBatched,
    /// (e) embedded broker, hook answering at once.
    EmbeddedNoop,
    /// (e) Mosquitto to one plain subscriber.
    MosquittoPlain,
}

impl Column {
    pub const ALL: [Self; 6] = [
        Self::Embedded,
        Self::Mosquitto,
        Self::PythonPerMessage,
        Self::PythonBatched,
        Self::EmbeddedNoop,
        Self::MosquittoPlain,
    ];

    /// The short name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Mosquitto => "mosquitto",
            Self::PythonPerMessage => "python",
            Self::PythonBatched => "python-batched",
            Self::EmbeddedNoop => "embedded-noop",
            Self::MosquittoPlain => "mosquitto-plain",
        }
    }

    /// The row label of the table.
    pub fn label(self) -> &'static str {
        match self {
            Self::Embedded => "(a) scalesense, embedded broker → SQLite",
            Self::Mosquitto => "(b) scalesense, Mosquitto → subscriber → SQLite",
            Self::PythonPerMessage => "(c) Python paho → SQLite, 1 commit/reading",
            Self::PythonBatched => "(d) Python paho → SQLite, 100/commit",
            Self::EmbeddedNoop => "(e) ceiling: embedded broker, no-op hook",
            Self::MosquittoPlain => "(e) ceiling: Mosquitto → plain subscriber",
        }
    }

    fn uses_mosquitto(self) -> bool {
        !matches!(self, Self::Embedded | Self::EmbeddedNoop)
    }

    fn is_python(self) -> bool {
        matches!(self, Self::PythonPerMessage | Self::PythonBatched)
    }

    /// Columns that store readings, so latency and loss are measured.
    fn stores(self) -> bool {
        !matches!(self, Self::EmbeddedNoop | Self::MosquittoPlain)
    }
}

/// Where Mosquitto is.
#[derive(Debug, Clone)]
pub enum MosquittoSource {
    /// A running broker (`--mosquitto`).
    Url(BrokerUrl),
    /// One the bench starts from this binary on a free port (`--private-mosquitto`).
    Private(PathBuf),
}

/// Everything one `bench ingest` run needs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub columns: Vec<Column>,
    pub mosquitto: MosquittoSource,
    /// Publisher connections (scales), one device each.
    pub publishers: u16,
    /// Readings per saturation run.
    pub readings: u64,
    /// Total rate of the latency runs, readings/s.
    pub rate: f64,
    /// Length of each latency run.
    pub latency_duration: Duration,
    /// Readings published but not yet committed, at most (paths through Mosquitto, whose
    /// default queue per client holds 1,000 messages).
    pub window: usize,
    /// Threads of the publishers' runtime.
    pub publisher_threads: usize,
    /// Interpreter used to create the baseline's venv.
    pub python: String,
    pub venv: PathBuf,
    /// Where the temporary databases go (a fresh directory inside it).
    pub work_dir: PathBuf,
    /// Give up waiting when nothing is committed for this long.
    pub idle_timeout: Duration,
    /// Run our server without the alert engine (to see what ingest alone costs).
    pub without_alerts: bool,
}

/// How a run paces its publishers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Saturation,
    Latency,
}

/// Runs the configured columns and returns the table.
pub async fn run(config: &IngestConfig) -> Result<IngestReport, BenchError> {
    std::fs::create_dir_all(&config.work_dir)
        .map_err(|e| BenchError::Io(format!("{}: {e}", config.work_dir.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("scalesense-bench-")
        .tempdir_in(&config.work_dir)
        .map_err(|e| BenchError::Io(e.to_string()))?;
    let bench = Bench::prepare(config, dir.path()).await?;
    let mut report = IngestReport {
        publishers: config.publishers,
        readings: config.readings,
        rate: config.rate,
        latency_duration: config.latency_duration,
        mosquitto: bench.mosquitto_label.clone(),
        columns: Vec::new(),
    };
    for (n, &column) in config.columns.iter().enumerate() {
        tracing::info!(column = column.name(), "saturation run");
        let saturated = bench.run(column, Mode::Saturation, n).await?;
        let mut result = ColumnResult {
            column,
            throughput: saturated.throughput(),
            ingest_cpu_us: saturated.per_reading(saturated.ingest_cpu),
            broker_cpu_us: saturated.per_reading(saturated.broker_cpu),
            publisher_cpu_us: saturated.per_reading(saturated.publisher_cpu),
            latency: None,
            accounting: saturated.accounting,
            consumed: saturated.consumed,
            resends: saturated.published.resends,
        };
        if column.stores() {
            tracing::info!(column = column.name(), rate = config.rate, "latency run");
            let paced = bench.run(column, Mode::Latency, n).await?;
            result.latency = Latency::from_samples(paced.latencies_us);
            if let (Some(total), Some(more)) = (&mut result.accounting, paced.accounting) {
                total.add(more);
            }
            result.resends += paced.published.resends;
        }
        report.columns.push(result);
    }
    bench.finish();
    Ok(report)
}

/// What one run measured.
#[derive(Debug, Default)]
struct RunOutcome {
    published: Published,
    consumed: u64,
    elapsed: Duration,
    ingest_cpu: Option<Duration>,
    broker_cpu: Option<Duration>,
    publisher_cpu: Option<Duration>,
    latencies_us: Vec<i64>,
    accounting: Option<Accounting>,
}

impl RunOutcome {
    fn throughput(&self) -> Option<f64> {
        let seconds = self.elapsed.as_secs_f64();
        (seconds > 0.0 && self.consumed > 0).then(|| self.consumed as f64 / seconds)
    }

    fn per_reading(&self, cpu: Option<Duration>) -> Option<f64> {
        let cpu = cpu?;
        (self.consumed > 0).then(|| cpu.as_secs_f64() * 1e6 / self.consumed as f64)
    }
}

/// Counts what the consumer under test has committed (or received), wakes the run's waiter,
/// and gives window permits back to the publishers.
#[derive(Debug, Default)]
struct Progress {
    consumed: AtomicU64,
    changed: Notify,
    window: Option<Arc<Semaphore>>,
}

impl Progress {
    fn new(window: Option<Arc<Semaphore>>) -> Arc<Self> {
        Arc::new(Self {
            window,
            ..Self::default()
        })
    }

    fn add(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.consumed.fetch_add(n, Ordering::AcqRel);
        if let Some(window) = &self.window {
            window.add_permits(n as usize);
        }
        self.changed.notify_one();
    }

    fn get(&self) -> u64 {
        self.consumed.load(Ordering::Acquire)
    }
}

/// Which process to charge for the ingest.
#[derive(Debug, Clone, Copy)]
enum Charged {
    /// The bench process minus the publishers' threads.
    ThisProcess,
    Child(u32),
}

impl Charged {
    fn read(self) -> Option<Duration> {
        match self {
            Self::ThisProcess => Some(
                cpu::this_process()?.saturating_sub(cpu::threads_named(publishers::THREAD_PREFIX)?),
            ),
            Self::Child(pid) => cpu::process(pid),
        }
    }
}

/// The parts shared by every run.
struct Bench {
    config: IngestConfig,
    dir: PathBuf,
    template: PathBuf,
    devices: Vec<String>,
    mosquitto: Option<(String, u16)>,
    private_mosquitto: Option<PrivateMosquitto>,
    mosquitto_label: String,
    python: Option<PythonEnv>,
    publishers: tokio::runtime::Runtime,
    boot_base: u32,
}

impl Bench {
    async fn prepare(config: &IngestConfig, dir: &Path) -> Result<Self, BenchError> {
        let columns = &config.columns;
        let (mosquitto, private_mosquitto, mosquitto_label) =
            if columns.iter().any(|c| c.uses_mosquitto()) {
                match &config.mosquitto {
                    MosquittoSource::Url(url) => (
                        Some((url.host.clone(), url.port)),
                        None,
                        format!("{url} (shared)"),
                    ),
                    MosquittoSource::Private(binary) => {
                        let broker = PrivateMosquitto::start(binary).await?;
                        let label = format!(
                            "{} on 127.0.0.1:{} (started by the bench, default settings)",
                            binary.display(),
                            broker.port
                        );
                        (
                            Some(("127.0.0.1".to_owned(), broker.port)),
                            Some(broker),
                            label,
                        )
                    }
                }
            } else {
                (None, None, "not used".to_owned())
            };
        let python = if columns.iter().any(|c| c.is_python()) {
            Some(PythonEnv::prepare(&config.python, &config.venv).await?)
        } else {
            None
        };
        let devices: Vec<String> = (1..=config.publishers)
            .map(|n| {
                scalesense_server::demo::device_id(n)
                    .map(|d| d.as_str().to_owned())
                    .map_err(|e| BenchError::Config(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let template = dir.join("template.db");
        create_template(&template, config.publishers).await?;
        let publishers = publishers::runtime(config.publisher_threads)?;
        // Each run publishes under a boot number of its own, so rows of another run (or of
        // another client of a shared broker) are never counted as this run's.
        let boot_base = (epoch_us() / 1_000_000 % 40_000_000) as u32 * 100;
        Ok(Self {
            config: config.clone(),
            dir: dir.to_owned(),
            template,
            devices,
            mosquitto,
            private_mosquitto,
            mosquitto_label,
            python,
            publishers,
            boot_base,
        })
    }

    fn finish(self) {
        self.publishers.shutdown_background();
        drop(self.private_mosquitto);
    }

    fn broker_pid(&self) -> Option<u32> {
        self.private_mosquitto
            .as_ref()
            .and_then(PrivateMosquitto::pid)
    }

    fn mosquitto_addr(&self) -> Result<(String, u16), BenchError> {
        self.mosquitto
            .clone()
            .ok_or_else(|| BenchError::Config("no Mosquitto configured".into()))
    }

    /// One run of one column.
    async fn run(&self, column: Column, mode: Mode, n: usize) -> Result<RunOutcome, BenchError> {
        let boot = self.boot_base + n as u32 * 2 + u32::from(mode == Mode::Latency);
        let tag = format!("{}-{}-{boot}", std::process::id(), column.name());
        let run_dir = self.dir.join(&tag);
        std::fs::create_dir_all(&run_dir).map_err(|e| BenchError::Io(e.to_string()))?;
        let readings = match mode {
            Mode::Saturation => self.config.readings,
            Mode::Latency => {
                (self.config.rate * self.config.latency_duration.as_secs_f64()).round() as u64
            }
        };
        let windowed = mode == Mode::Saturation && column.uses_mosquitto();
        let window = windowed.then(|| Arc::new(Semaphore::new(self.config.window.max(1))));
        let pace = match mode {
            Mode::Saturation => Pace::Saturate {
                window: window.clone(),
            },
            Mode::Latency => Pace::Rate(self.config.rate),
        };
        let progress = Progress::new(window);
        let (host, port, consumer) = self
            .start_consumer(column, &run_dir, &tag, &progress)
            .await?;
        let plan = Arc::new(Plan {
            host,
            port,
            devices: self.devices.clone(),
            boot,
            readings,
            pace,
            client_prefix: format!("bench-pub-{tag}"),
        });
        let mut outcome = self.measure(plan, &progress, consumer.charged()).await;
        let commits = consumer.stop().await?;
        outcome.latencies_us = latencies(&outcome.published, &self.devices, &commits);
        if column.stores() {
            let (path, layout) = match column {
                Column::Embedded | Column::Mosquitto => (run_dir.join("store.db"), Layout::Store),
                _ => (run_dir.join("baseline.db"), Layout::Baseline),
            };
            let stored = stored_counts(&path, layout, i64::from(boot)).await?;
            let published = outcome
                .published
                .sent
                .iter()
                .map(|s| (self.devices[s.device].clone(), i64::from(s.seq)));
            outcome.accounting = Some(Accounting::compare(published, stored));
        }
        if let Err(e) = std::fs::remove_dir_all(&run_dir) {
            tracing::debug!(error = %e, "could not remove a run's files");
        }
        Ok(outcome)
    }

    /// Publishes the plan and waits until the consumer has taken every reading that got a
    /// PUBACK (or nothing moves for the idle timeout); CPU is read over exactly that window.
    async fn measure(
        &self,
        plan: Arc<Plan>,
        progress: &Arc<Progress>,
        charged: Charged,
    ) -> RunOutcome {
        let broker_pid = if plan.port == self.mosquitto.as_ref().map_or(0, |m| m.1) {
            self.broker_pid()
        } else {
            None
        };
        let cpu_start = Arc::new(std::sync::Mutex::new(None));
        let started_at = Arc::new(std::sync::Mutex::new(None));
        let publishing = {
            let plan = Arc::clone(&plan);
            let cpu_start = Arc::clone(&cpu_start);
            let started_at = Arc::clone(&started_at);
            let runtime = self.publishers.handle().clone();
            tokio::spawn(async move {
                publishers::run(&runtime, plan, move || {
                    *lock(&cpu_start) = Some((
                        charged.read(),
                        broker_pid.and_then(cpu::process),
                        cpu::threads_named(publishers::THREAD_PREFIX),
                    ));
                    *lock(&started_at) = Some(Instant::now());
                })
                .await
            })
        };
        let target = plan.readings;
        let mut last_change = Instant::now();
        let mut last_seen = progress.get();
        let mut done_publishing: Option<Published> = None;
        let mut publishing = Some(publishing);
        loop {
            let consumed = progress.get();
            if consumed != last_seen {
                last_seen = consumed;
                last_change = Instant::now();
            }
            let published_count = done_publishing.as_ref().map(|p| p.sent.len() as u64);
            let complete = consumed >= target || published_count.is_some_and(|p| consumed >= p);
            if complete || last_change.elapsed() > self.config.idle_timeout {
                if !complete {
                    tracing::warn!(
                        consumed,
                        target,
                        "nothing committed for the idle timeout; stopping the run"
                    );
                }
                break;
            }
            if let Some(task) = publishing.as_mut().filter(|t| t.is_finished()) {
                done_publishing = Some(task.await.unwrap_or_default());
                publishing = None;
                continue;
            }
            tokio::select! {
                () = progress.changed.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let finished_at = Instant::now();
        let end = (
            charged.read(),
            broker_pid.and_then(cpu::process),
            cpu::threads_named(publishers::THREAD_PREFIX),
        );
        let published = match (done_publishing, publishing) {
            (Some(p), _) => p,
            (None, Some(task)) => task.await.unwrap_or_default(),
            (None, None) => Published::default(),
        };
        let start = lock(&cpu_start).take();
        let started = lock(&started_at).take();
        let elapsed = started.map_or(Duration::ZERO, |s| finished_at.saturating_duration_since(s));
        let delta = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
        let (ingest_cpu, broker_cpu, publisher_cpu) = match start {
            Some((ingest, broker, publishers)) => (
                delta(ingest, end.0),
                delta(broker, end.1),
                delta(publishers, end.2),
            ),
            None => (None, None, None),
        };
        RunOutcome {
            consumed: last_seen,
            published,
            elapsed,
            ingest_cpu,
            broker_cpu,
            publisher_cpu,
            latencies_us: Vec::new(),
            accounting: None,
        }
    }

    /// Starts what consumes the readings of `column`; returns where to publish.
    async fn start_consumer(
        &self,
        column: Column,
        run_dir: &Path,
        tag: &str,
        progress: &Arc<Progress>,
    ) -> Result<(String, u16, Consumer), BenchError> {
        match column {
            Column::Embedded | Column::Mosquitto => {
                let db = run_dir.join("store.db");
                std::fs::copy(&self.template, &db)
                    .map_err(|e| BenchError::Io(format!("copying the template database: {e}")))?;
                let source = if column == Column::Embedded {
                    Source::Embedded
                } else {
                    let (host, port) = self.mosquitto_addr()?;
                    Source::External(BrokerUrl { host, port }, format!("scalesense-bench-{tag}"))
                };
                let server = OurServer::start(
                    &db,
                    source,
                    Arc::clone(progress),
                    !self.config.without_alerts,
                )
                .await?;
                let (host, port) = match &server.broker {
                    Some(broker) => ("127.0.0.1".to_owned(), broker.local_addr().port()),
                    None => self.mosquitto_addr()?,
                };
                Ok((host, port, Consumer::Server(Box::new(server))))
            }
            Column::EmbeddedNoop => {
                let (sender, mut rx) = pipeline::channel(&PipelineConfig::default());
                let counter = Arc::clone(progress);
                let stop = CancellationToken::new();
                let stopped = stop.clone();
                // The broker's hooks keep their senders after it stops: end on the token.
                let responder = tokio::spawn(async move {
                    loop {
                        let inbound = tokio::select! {
                            () = stopped.cancelled() => break,
                            inbound = rx.recv() => inbound,
                        };
                        let Some(inbound) = inbound else { break };
                        if let Some(reply) = inbound.reply {
                            let _ = reply.send(Disposition::Stored);
                        }
                        counter.add(1);
                    }
                });
                let clock: Arc<dyn Clock> = Arc::new(SystemClock);
                let broker = EmbeddedBroker::start(loopback_any(), sender, clock)
                    .await
                    .map_err(|e| BenchError::Server(e.to_string()))?;
                let port = broker.local_addr().port();
                Ok((
                    "127.0.0.1".to_owned(),
                    port,
                    Consumer::Noop {
                        broker,
                        responder,
                        stop,
                    },
                ))
            }
            Column::MosquittoPlain => {
                let (host, port) = self.mosquitto_addr()?;
                let subscriber = PlainSubscriber::start(
                    &host,
                    port,
                    &format!("bench-plain-{tag}"),
                    Arc::clone(progress),
                )
                .await?;
                Ok((host, port, Consumer::Plain(subscriber)))
            }
            Column::PythonPerMessage | Column::PythonBatched => {
                self.start_python(column, run_dir, tag, progress).await
            }
        }
    }

    /// Starts the Python baseline and a task turning its progress lines into [`Progress`].
    async fn start_python(
        &self,
        column: Column,
        run_dir: &Path,
        tag: &str,
        progress: &Arc<Progress>,
    ) -> Result<(String, u16, Consumer), BenchError> {
        let env = self
            .python
            .as_ref()
            .ok_or_else(|| BenchError::Config("no Python environment".into()))?;
        let (host, port) = self.mosquitto_addr()?;
        let batch = if column == Column::PythonBatched {
            100
        } else {
            1
        };
        let latency_out = run_dir.join("latency.csv");
        let baseline = Baseline::start(
            env,
            &host,
            port,
            &run_dir.join("baseline.db"),
            BaselineMode { batch },
            &format!("bench-python-{tag}"),
            Some(&latency_out),
        )
        .await?;
        let pid = baseline
            .pid()
            .ok_or_else(|| BenchError::Python("the baseline has no pid".into()))?;
        let stop = CancellationToken::new();
        let counter = Arc::clone(progress);
        let watch_stop = stop.clone();
        let watcher = tokio::spawn(async move {
            let mut baseline = baseline;
            let mut seen = 0;
            loop {
                tokio::select! {
                    () = watch_stop.cancelled() => break,
                    count = baseline.next_count() => match count {
                        Some(count) => {
                            counter.add(count.saturating_sub(seen));
                            seen = seen.max(count);
                        }
                        None => break,
                    },
                }
            }
            baseline
        });
        Ok((
            host,
            port,
            Consumer::Python {
                pid,
                stop,
                watcher,
                latency_out,
            },
        ))
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn loopback_any() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A commit as the consumer announced it: device, the reading's `ts` or `seq`, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Commit {
    /// From the server's event bus (events carry the reading's device time).
    ByTs {
        device: String,
        ts_ms: i64,
        at_us: i64,
    },
    /// From the baseline's latency file.
    BySeq {
        device: String,
        seq: i64,
        at_us: i64,
    },
}

/// Publish-to-commit latencies (µs) of the readings whose commit was seen.
fn latencies(published: &Published, devices: &[String], commits: &[Commit]) -> Vec<i64> {
    let mut by_ts: HashMap<(&str, i64), i64> = HashMap::new();
    let mut by_seq: HashMap<(&str, i64), i64> = HashMap::new();
    for sent in &published.sent {
        let device = devices[sent.device].as_str();
        by_ts.insert((device, sent.ts_ms), sent.sent_us);
        by_seq.insert((device, i64::from(sent.seq)), sent.sent_us);
    }
    commits
        .iter()
        .filter_map(|commit| match commit {
            Commit::ByTs {
                device,
                ts_ms,
                at_us,
            } => by_ts
                .get(&(device.as_str(), *ts_ms))
                .map(|sent| at_us - sent),
            Commit::BySeq { device, seq, at_us } => by_seq
                .get(&(device.as_str(), *seq))
                .map(|sent| at_us - sent),
        })
        .collect()
}

/// The consumer of one run.
enum Consumer {
    Server(Box<OurServer>),
    Noop {
        broker: EmbeddedBroker,
        responder: JoinHandle<()>,
        stop: CancellationToken,
    },
    Plain(PlainSubscriber),
    Python {
        pid: u32,
        stop: CancellationToken,
        watcher: JoinHandle<Baseline>,
        latency_out: PathBuf,
    },
}

impl Consumer {
    fn charged(&self) -> Charged {
        match self {
            Self::Python { pid, .. } => Charged::Child(*pid),
            _ => Charged::ThisProcess,
        }
    }

    /// Stops it and returns the commits it announced.
    async fn stop(self) -> Result<Vec<Commit>, BenchError> {
        match self {
            Self::Server(server) => server.stop().await,
            Self::Noop {
                broker,
                responder,
                stop,
            } => {
                broker.stop().await;
                stop.cancel();
                drop(responder.await);
                Ok(Vec::new())
            }
            Self::Plain(subscriber) => {
                subscriber.stop().await;
                Ok(Vec::new())
            }
            Self::Python {
                stop,
                watcher,
                latency_out,
                ..
            } => {
                stop.cancel();
                let baseline = watcher
                    .await
                    .map_err(|e| BenchError::Python(format!("baseline watcher: {e}")))?;
                baseline.stop().await?;
                read_baseline_latencies(&latency_out)
            }
        }
    }
}

fn read_baseline_latencies(path: &Path) -> Result<Vec<Commit>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::Python(format!("{}: {e}", path.display())))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            let device = fields.next()?.to_owned();
            let _boot = fields.next()?;
            let seq = fields.next()?.parse().ok()?;
            let at_us = fields.next()?.parse().ok()?;
            Some(Commit::BySeq { device, seq, at_us })
        })
        .collect())
}

/// Creates the SQLite file every run of our server starts from: migrations and the demo bar
/// with one tap, keg and scale per publisher.
async fn create_template(path: &Path, scales: u16) -> Result<(), BenchError> {
    let store = SqliteStore::open_with(path, &SqliteSettings::default())
        .await
        .map_err(|e| BenchError::Database(e.to_string()))?;
    let started = Instant::now();
    scalesense_server::demo::ensure(
        &store,
        scales,
        Some("bench-admin-password"),
        SystemClock.now_ms(),
    )
    .await
    .map_err(|e| BenchError::Database(format!("demo bar: {e}")))?;
    store.close().await;
    tracing::info!(
        scales,
        took_ms = started.elapsed().as_millis(),
        "template database ready"
    );
    Ok(())
}

/// How our server takes readings in.
enum Source {
    Embedded,
    /// The broker, and the server's client id (its persistent session).
    External(BrokerUrl, String),
}

/// Our server, assembled as `up` (embedded) or `serve` (external broker) assemble it, minus
/// HTTP and the alert scheduler: pipeline with the alert feed, event bus, the server's MQTT
/// link, and the embedded broker when it has one.
struct OurServer {
    store: Arc<SqliteStore>,
    broker: Option<EmbeddedBroker>,
    link: MqttLink,
    link_stop: CancellationToken,
    session: Option<(BrokerUrl, String)>,
    pipeline: JoinHandle<()>,
    pipeline_stop: CancellationToken,
    alerts: JoinHandle<()>,
    alerts_stop: CancellationToken,
    observer: JoinHandle<Vec<Commit>>,
    observer_stop: CancellationToken,
}

impl OurServer {
    async fn start(
        db: &Path,
        source: Source,
        progress: Arc<Progress>,
        with_alerts: bool,
    ) -> Result<Self, BenchError> {
        let store = Arc::new(
            SqliteStore::open_with(db, &SqliteSettings::default())
                .await
                .map_err(|e| BenchError::Database(e.to_string()))?,
        );
        let dyn_store: Arc<dyn Store> = store.clone();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let health = Health::new();
        // Big enough that the bench's own subscriber never lags behind a batch.
        let events = EventBus::new(1 << 16);
        let config = PipelineConfig::default();
        let (sender, rx) = pipeline::channel(&config);

        let observer_stop = CancellationToken::new();
        let observer = observe_commits(&events, progress, observer_stop.clone())?;

        let link_stop = CancellationToken::new();
        let (broker, link_config, session) = match source {
            Source::Embedded => {
                let broker = EmbeddedBroker::start(loopback_any(), sender, Arc::clone(&clock))
                    .await
                    .map_err(|e| BenchError::Server(e.to_string()))?;
                let url = BrokerUrl {
                    host: "127.0.0.1".into(),
                    port: broker.local_addr().port(),
                };
                let link = LinkConfig::new(url, "scalesense-server-bench", None);
                (Some(broker), link, None)
            }
            Source::External(url, client_id) => {
                let link = LinkConfig::new(
                    url.clone(),
                    client_id.clone(),
                    Some(Ingest {
                        pipeline: sender,
                        shared_group: None,
                    }),
                );
                (None, link, Some((url, client_id)))
            }
        };
        let link = MqttLink::start(
            link_config,
            health.clone(),
            Arc::clone(&clock),
            link_stop.clone(),
        )
        .map_err(|e| BenchError::Server(e.to_string()))?;

        let feed = Arc::new(scalesense_alerts::AlertFeed::new());
        let alerts_stop = CancellationToken::new();
        let alerts = run_alerts(&dyn_store, &events, Arc::clone(&feed), alerts_stop.clone());
        let pipeline_stop = CancellationToken::new();
        let pipeline = Pipeline::new(
            dyn_store,
            events,
            Some(Arc::new(link.publisher())),
            clock,
            health.clone(),
            config,
        );
        let pipeline = if with_alerts {
            pipeline.with_alerts(feed)
        } else {
            pipeline
        };
        let pipeline = tokio::spawn(pipeline.run(rx, pipeline_stop.clone()));
        let server = Self {
            store,
            broker,
            link,
            link_stop,
            session,
            pipeline,
            pipeline_stop,
            alerts,
            alerts_stop,
            observer,
            observer_stop,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !health.broker_connected() {
            if Instant::now() > deadline {
                drop(server.stop().await);
                return Err(BenchError::Server(
                    "the server's MQTT client did not connect within 30 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    /// Stops in `up`'s order and returns the commits the event bus announced.
    async fn stop(self) -> Result<Vec<Commit>, BenchError> {
        self.link_stop.cancel();
        self.link.join().await;
        if let Some(broker) = self.broker {
            broker.stop().await;
        }
        self.pipeline_stop.cancel();
        self.pipeline
            .await
            .map_err(|e| BenchError::Server(format!("pipeline: {e}")))?;
        self.alerts_stop.cancel();
        drop(self.alerts.await);
        self.observer_stop.cancel();
        let commits = self
            .observer
            .await
            .map_err(|e| BenchError::Server(format!("event observer: {e}")))?;
        self.store.close().await;
        if let Some((url, client_id)) = self.session {
            clear_session(&url.host, url.port, &client_id).await;
        }
        Ok(commits)
    }
}

/// Records every reading the server announces on its event bus after the commit.
fn observe_commits(
    events: &EventBus,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> Result<JoinHandle<Vec<Commit>>, BenchError> {
    let location = LocationId::try_from(scalesense_server::demo::LOCATION)
        .map_err(|e| BenchError::Config(e.to_string()))?;
    let mut subscription = events.subscribe(&location);
    Ok(tokio::spawn(async move {
        let mut commits = Vec::new();
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => break,
                event = subscription.recv() => event,
            };
            let Some(event) = event else { break };
            if let Event::Reading { device_id, ts, .. } = event.as_ref() {
                commits.push(Commit::ByTs {
                    device: device_id.as_str().to_owned(),
                    ts_ms: *ts,
                    at_us: epoch_us(),
                });
                progress.add(1);
            }
        }
        commits
    }))
}

/// The alert engine fed by the pipeline after each commit, as `up` and `serve` run it (the
/// scheduler and the outbox are left out: they work on timers, not per reading).
fn run_alerts(
    store: &Arc<dyn Store>,
    events: &EventBus,
    feed: Arc<scalesense_alerts::AlertFeed>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let clock: Arc<dyn scalesense_alerts::Clock> = Arc::new(scalesense_alerts::SystemClock);
    let engine =
        scalesense_alerts::AlertEngine::new(Arc::clone(store), clock, Arc::new(events.clone()));
    tokio::spawn(async move {
        if let Err(e) = engine.load().await {
            tracing::warn!(error = %e, "alert engine could not load");
        }
        feed.run(&engine, stop).await;
    })
}

/// Removes a persistent session from the broker (connect with a clean session and leave), so
/// the bench leaves no queue behind.
async fn clear_session(host: &str, port: u16, client_id: &str) {
    use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, MqttOptions, Outgoing};
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Incoming::ConnAck(_))) => {
                    let _ = client.try_disconnect();
                }
                Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// The Mosquitto ceiling's consumer: subscribes to every reading with QoS 1 and only counts.
struct PlainSubscriber {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl PlainSubscriber {
    async fn start(
        host: &str,
        port: u16,
        client_id: &str,
        progress: Arc<Progress>,
    ) -> Result<Self, BenchError> {
        use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, MqttOptions, QoS};
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        client
            .subscribe(scalesense_proto::topic::READINGS_FILTER, QoS::AtLeastOnce)
            .await
            .map_err(|e| BenchError::Mqtt(e.to_string()))?;
        let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Incoming::SubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        match subscribed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(BenchError::Mqtt(format!("plain subscriber: {e}"))),
            Err(_) => {
                return Err(BenchError::Mqtt(
                    "plain subscriber: no SUBACK within 10 s".into(),
                ));
            }
        }
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stopped.cancelled() => break,
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(MqttEvent::Incoming(Incoming::Publish(_))) => progress.add(1),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "plain subscriber lost its connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while eventloop.poll().await.is_ok() {}
            })
            .await;
        });
        Ok(Self { stop, task })
    }

    async fn stop(self) {
        self.stop.cancel();
        drop(self.task.await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publishers::Sent;

    #[test]
    fn latencies_join_commits_to_their_publish() {
        let published = Published {
            sent: vec![
                Sent {
                    device: 0,
                    seq: 1,
                    ts_ms: 1_000,
                    sent_us: 1_000_000,
                },
                Sent {
                    device: 1,
                    seq: 1,
                    ts_ms: 1_000,
                    sent_us: 1_000_500,
                },
            ],
            ..Published::default()
        };
        let devices = vec!["A".to_owned(), "B".to_owned()];
        let commits = vec![
            Commit::ByTs {
                device: "B".into(),
                ts_ms: 1_000,
                at_us: 1_002_500,
            },
            Commit::BySeq {
                device: "A".into(),
                seq: 1,
                at_us: 1_003_000,
            },
            // Not published in this run: ignored.
            Commit::ByTs {
                device: "C".into(),
                ts_ms: 1_000,
                at_us: 1_000_000,
            },
        ];
        assert_eq!(
            latencies(&published, &devices, &commits),
            vec![2_000, 3_000]
        );
    }
}
