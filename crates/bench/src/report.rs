//! The bench's results and their rendering: a markdown table, then the targets of issue #11
//! checked one by one against the numbers of the same run.
//!
//! What this module must never do: print (the binary prints the `Display` output), or call a
//! target met when a number it needs is missing.

use std::fmt;
use std::time::Duration;

use crate::accounting::Accounting;
use crate::ingest::Column;

/// Publish-to-commit latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: usize,
}

impl Latency {
    /// Nearest-rank percentiles of latencies in microseconds; `None` without samples.
    pub fn from_samples(mut samples_us: Vec<i64>) -> Option<Self> {
        if samples_us.is_empty() {
            return None;
        }
        samples_us.sort_unstable();
        let rank = |p: f64| {
            let index = ((p / 100.0) * samples_us.len() as f64).ceil() as usize;
            samples_us[index.clamp(1, samples_us.len()) - 1] as f64 / 1000.0
        };
        Some(Self {
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            samples: samples_us.len(),
        })
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct ColumnResult {
    pub column: Column,
    /// Readings per second at saturation.
    pub throughput: Option<f64>,
    /// CPU µs per reading of the process doing the ingest.
    pub ingest_cpu_us: Option<f64>,
    /// CPU µs per reading of Mosquitto (only when the bench started it).
    pub broker_cpu_us: Option<f64>,
    /// CPU µs per reading of the publishers (subtracted from the bench process's).
    pub publisher_cpu_us: Option<f64>,
    pub latency: Option<Latency>,
    /// Saturation and latency runs together; `None` for the ceilings, which store nothing.
    pub accounting: Option<Accounting>,
    /// Readings the consumer took in the saturation run.
    pub consumed: u64,
    /// Publishes a publisher had to repeat (no PUBACK, refused, connection lost).
    pub resends: u64,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct IngestReport {
    pub publishers: u16,
    pub readings: u64,
    pub rate: f64,
    pub latency_duration: Duration,
    pub mosquitto: String,
    pub columns: Vec<ColumnResult>,
}

/// Issue #11's targets.
pub const TARGET_VS_BATCHED: f64 = 5.0;
pub const TARGET_MOSQUITTO_CEILING: f64 = 0.8;
pub const TARGET_EMBEDDED_CEILING: f64 = 0.5;
pub const TARGET_CPU_US: f64 = 25.0;
pub const TARGET_P99_MS: f64 = 10.0;

impl IngestReport {
    fn column(&self, column: Column) -> Option<&ColumnResult> {
        self.columns.iter().find(|c| c.column == column)
    }

    fn throughput(&self, column: Column) -> Option<f64> {
        self.column(column).and_then(|c| c.throughput)
    }

    /// Each target with the measured value and whether it is met (`None`: not measured).
    pub fn targets(&self) -> Vec<(String, Option<bool>)> {
        let mut lines = Vec::new();
        let ratio = |a: Column, b: Column| Some(self.throughput(a)? / self.throughput(b)?);
        for (path, ceiling, share) in [
            (
                Column::Embedded,
                Column::EmbeddedNoop,
                TARGET_EMBEDDED_CEILING,
            ),
            (
                Column::Mosquitto,
                Column::MosquittoPlain,
                TARGET_MOSQUITTO_CEILING,
            ),
        ] {
            if self.column(path).is_none() {
                continue;
            }
            let vs_batched = ratio(path, Column::PythonBatched);
            lines.push((
                format!(
                    "{} vs batched baseline: {} (target ≥ {TARGET_VS_BATCHED}×)",
                    path.name(),
                    vs_batched.map_or("n/a".into(), |r| format!("{r:.1}×"))
                ),
                vs_batched.map(|r| r >= TARGET_VS_BATCHED),
            ));
            let of_ceiling = ratio(path, ceiling);
            lines.push((
                format!(
                    "{} vs its ceiling ({}): {} (target ≥ {:.0} %)",
                    path.name(),
                    ceiling.name(),
                    of_ceiling.map_or("n/a".into(), |r| format!("{:.0} %", r * 100.0)),
                    share * 100.0
                ),
                of_ceiling.map(|r| r >= share),
            ));
            let column = self.column(path);
            let cpu = column.and_then(|c| c.ingest_cpu_us);
            lines.push((
                format!(
                    "{} server CPU per reading: {} (target ≤ {TARGET_CPU_US} µs)",
                    path.name(),
                    cpu.map_or("n/a".into(), |c| format!("{c:.1} µs"))
                ),
                cpu.map(|c| c <= TARGET_CPU_US),
            ));
            let p99 = column.and_then(|c| c.latency).map(|l| l.p99_ms);
            lines.push((
                format!(
                    "{} p99 publish→commit at {:.0}/s: {} (target < {TARGET_P99_MS} ms)",
                    path.name(),
                    self.rate,
                    p99.map_or("n/a".into(), |p| format!("{p:.1} ms"))
                ),
                p99.map(|p| p < TARGET_P99_MS),
            ));
            let exact = column.and_then(|c| c.accounting);
            lines.push((
                format!(
                    "{} every reading stored exactly once: {}",
                    path.name(),
                    exact.map_or("n/a".into(), |a| format!(
                        "{} of {} (missing {}, duplicates {})",
                        a.exactly_once, a.published, a.missing, a.duplicates
                    ))
                ),
                exact.map(|a| a.is_exact()),
            ));
        }
        lines
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "## scalesense bench ingest\n\n{} publisher connections (QoS 1, one reading in flight each); \
             saturation runs of {} readings; latency runs at {:.0} readings/s for {:.1} s; \
             Mosquitto: {}.\n",
            self.publishers,
            self.readings,
            self.rate,
            self.latency_duration.as_secs_f64(),
            self.mosquitto
        )?;
        writeln!(
            f,
            "| path | readings/s (saturation) | ingest CPU µs/reading | Mosquitto CPU µs/reading | \
             p50 ms | p99 ms | published | exactly once | missing | duplicates |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for c in &self.columns {
            let (published, once, missing, dups) = match c.accounting {
                Some(a) => (
                    a.published.to_string(),
                    a.exactly_once.to_string(),
                    a.missing.to_string(),
                    a.duplicates.to_string(),
                ),
                None => (
                    format!("{} received", c.consumed),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ),
            };
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {published} | {once} | {missing} | {dups} |",
                c.column.label(),
                opt(c.throughput, 0),
                opt(c.ingest_cpu_us, 1),
                opt(c.broker_cpu_us, 1),
                opt(c.latency.map(|l| l.p50_ms), 2),
                opt(c.latency.map(|l| l.p99_ms), 2),
            )?;
        }
        writeln!(
            f,
            "\nIngest CPU: (a), (b) and the ceilings — the bench process (our server runs in it) \
             minus its publisher threads; (c), (d) — the Python process. Publishers' own CPU per \
             reading: {}.",
            self.columns
                .iter()
                .map(|c| format!("{} {}", c.column.name(), opt(c.publisher_cpu_us, 1)))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        if let Some(baseline) = self.throughput(Column::PythonBatched) {
            writeln!(f, "\nThroughput vs the batched baseline (d):")?;
            for c in &self.columns {
                if let Some(t) = c.throughput {
                    writeln!(f, "- {}: {:.1}×", c.column.name(), t / baseline)?;
                }
            }
        }
        let resends: u64 = self.columns.iter().map(|c| c.resends).sum();
        if resends > 0 {
            writeln!(f, "\nPublishes repeated after a missing PUBACK: {resends}.")?;
        }
        writeln!(f, "\nTargets (issue #11):")?;
        for (line, met) in self.targets() {
            let mark = match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            writeln!(f, "- [{mark}] {line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<i64> = (1..=100).map(|ms| ms * 1000).collect();
        let latency = Latency::from_samples(samples).unwrap();
        assert!((latency.p50_ms - 50.0).abs() < 1e-9);
        assert!((latency.p99_ms - 99.0).abs() < 1e-9);
        assert_eq!(Latency::from_samples(Vec::new()), None);
    }

    #[test]
    fn a_missed_target_is_reported_as_missed() {
        let row = |column, throughput| ColumnResult {
            column,
            throughput: Some(throughput),
            ingest_cpu_us: Some(30.0),
            broker_cpu_us: None,
            publisher_cpu_us: None,
            latency: None,
            accounting: None,
            consumed: 1,
            resends: 0,
        };
        let report = IngestReport {
            publishers: 1,
            readings: 1,
            rate: 1.0,
            latency_duration: Duration::from_secs(1),
            mosquitto: String::new(),
            columns: vec![
                row(Column::Embedded, 40_000.0),
                row(Column::PythonBatched, 5_000.0),
                row(Column::EmbeddedNoop, 100_000.0),
            ],
        };
        let targets = report.targets();
        assert_eq!(targets[0].1, Some(true), "{}", targets[0].0);
        assert_eq!(targets[1].1, Some(false), "{}", targets[1].0);
        assert_eq!(targets[2].1, Some(false), "{}", targets[2].0);
        assert_eq!(targets[3].1, None, "{}", targets[3].0);
        assert!(
            report
                .to_string()
                .contains("| (a) scalesense, embedded broker")
        );
    }
}
