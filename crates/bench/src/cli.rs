//! `scalesense bench …`: the flags of each benchmark and the runtime it runs on. The binary
//! only parses these and prints the report.

use std::path::PathBuf;
use std::time::Duration;

use scalesense_server::subscriber::BrokerUrl;

use crate::BenchError;
use crate::ingest::{Column, IngestConfig, MosquittoSource};
use crate::report::IngestReport;

/// `scalesense bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Ingest throughput, CPU per reading, publish→commit latency and loss: our server with
    /// its embedded broker and through Mosquitto, a Python paho-mqtt + SQLite baseline (one
    /// commit per reading, and 100 per commit), and both brokers' ceilings, in one run.
    /// Build with --release.
    Ingest(IngestArgs),
}

/// `scalesense bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Mosquitto to measure through (paths b, c, d and its ceiling).
    #[arg(
        long,
        env = "SCALESENSE_TEST_MQTT",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    pub mosquitto: String,
    /// Start a Mosquitto of the bench's own on a free port (from this binary) instead of using
    /// --mosquitto, so other clients of a shared broker see none of the bench's messages.
    #[arg(long, value_name = "MOSQUITTO_BINARY", num_args = 0..=1, default_missing_value = "mosquitto")]
    pub private_mosquitto: Option<PathBuf>,
    /// Publisher connections ("scales"), one device each.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=9999))]
    pub publishers: u16,
    /// Readings per saturation run.
    #[arg(long, default_value_t = 40_000)]
    pub readings: u64,
    /// Total rate of the latency runs, readings/s (1,667/s: 100,000 scales at one a minute).
    #[arg(long, default_value_t = 1667.0)]
    pub rate: f64,
    /// Seconds of each latency run.
    #[arg(long, default_value_t = 10.0)]
    pub latency_seconds: f64,
    /// Readings in flight through Mosquitto at saturation (its default queue per client is
    /// 1,000 messages; more than that would be dropped by the broker, not by the path).
    #[arg(long, default_value_t = 500)]
    pub window: usize,
    /// Threads running the publishers.
    #[arg(long, default_value_t = 1)]
    pub publisher_threads: usize,
    /// Columns to run, comma-separated: embedded, mosquitto, python, python-batched,
    /// embedded-noop, mosquitto-plain. [default: all]
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Python used to create the baseline's virtual environment.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The baseline's virtual environment (created once, paho-mqtt installed with pip).
    #[arg(long, default_value = "/var/tmp/scalesense-bench-venv")]
    pub venv: PathBuf,
    /// Run our server without its alert engine, to see what ingest alone costs (the engine
    /// evaluates every committed batch in the same process).
    #[arg(long)]
    pub without_alerts: bool,
    /// Where the temporary databases go.
    #[arg(long, default_value = "/var/tmp")]
    pub work_dir: PathBuf,
}

impl IngestArgs {
    pub fn config(&self) -> Result<IngestConfig, BenchError> {
        let columns = if self.only.is_empty() {
            Column::ALL.to_vec()
        } else {
            self.only
                .iter()
                .map(|name| {
                    Column::ALL
                        .into_iter()
                        .find(|c| c.name() == name.trim())
                        .ok_or_else(|| {
                            BenchError::Config(format!("--only: unknown column {name:?}"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let mosquitto = match &self.private_mosquitto {
            Some(binary) => MosquittoSource::Private(binary.clone()),
            None => MosquittoSource::Url(
                self.mosquitto
                    .parse::<BrokerUrl>()
                    .map_err(|e| BenchError::Config(format!("--mosquitto: {e}")))?,
            ),
        };
        if !(self.rate > 0.0 && self.latency_seconds > 0.0) {
            return Err(BenchError::Config(
                "--rate and --latency-seconds must be positive".into(),
            ));
        }
        Ok(IngestConfig {
            columns,
            mosquitto,
            publishers: self.publishers,
            readings: self.readings,
            rate: self.rate,
            latency_duration: Duration::from_secs_f64(self.latency_seconds),
            window: self.window,
            publisher_threads: self.publisher_threads,
            python: self.python.clone(),
            venv: self.venv.clone(),
            work_dir: self.work_dir.clone(),
            idle_timeout: Duration::from_secs(20),
            without_alerts: self.without_alerts,
        })
    }
}

/// Runs `scalesense bench ingest` on a runtime of its own and returns the report.
pub fn ingest(args: &IngestArgs) -> Result<IngestReport, BenchError> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Io(format!("runtime: {e}")))?;
    runtime.block_on(crate::ingest::run(&config))
}
