//! Scale Sense benchmarks, run from the binary as `scalesense bench …` (issue #11: ingest).
//!
//! A benchmark here measures the product's real assembly against real brokers, a real
//! database file and a baseline measured in the same run on the same machine, and reports
//! the numbers next to the targets. Speed is measured here, never in tests; the
//! crate's tests only check that the accounting (loss, duplicates, latency joins, percentiles)
//! is right and that a tiny run completes.
//!
//! What this crate must never do: change the code paths it measures (it assembles the server
//! from its public parts, as `up` and `serve` do), or report a number it did not measure.

pub mod accounting;
pub mod cli;
pub mod cpu;
pub mod external;
pub mod ingest;
pub mod publishers;
pub mod report;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(String),
    #[error("database: {0}")]
    Database(String),
    #[error("server: {0}")]
    Server(String),
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("Python baseline: {0}")]
    Python(String),
}
