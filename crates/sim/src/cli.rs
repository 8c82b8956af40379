//! `scalesense sim`: the flags (each with a `SCALESENSE_SIM_*` variable), a runtime, Ctrl-C, an
//! optional simulated duration, and the progress display — a line redrawn once a second on a
//! terminal, a log line every ten seconds otherwise.
//!
//! The binary flattens [`SimArgs`] into its command line and calls [`run`]; everything the
//! fleet does lives in [`crate::fleet`]. This module decides nothing about the simulation.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use scalesense_proto::LocationId;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fleet::{
    BrokerAddr, Fleet, FleetConfig, FleetError, FleetReport, MAX_SPEED, StatsSnapshot,
};
use crate::world::WorldConfig;

/// Progress lines when stderr is not a terminal, at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Run a fleet of virtual scales against an MQTT broker.
///
/// Each scale runs the real firmware core against a simulated keg: opening hours and evening
/// peaks, pints, halves and pitchers with foam and settling, cooler temperature drift, kegs
/// kicking and being swapped, battery drain and recharge, Wi-Fi outages with catch-up, the
/// last will, and answers to commands. The same seed gives the same bar.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// MQTT broker the scales connect to, one connection each (plain TCP).
    #[arg(
        long,
        env = "SCALESENSE_SIM_BROKER",
        default_value = "mqtt://127.0.0.1:1883",
        value_name = "mqtt://HOST:PORT"
    )]
    pub broker: BrokerAddr,

    /// How many scales (1–999); the i-th sits on tap i of the location.
    #[arg(
        long,
        env = "SCALESENSE_SIM_SCALES",
        default_value_t = 12,
        value_parser = clap::value_parser!(u32).range(1..=999),
        value_name = "N"
    )]
    pub scales: u32,

    /// Simulated seconds per real second: 60 runs one simulated minute per second.
    #[arg(
        long,
        env = "SCALESENSE_SIM_SPEED",
        default_value_t = 1.0,
        value_parser = parse_speed,
        value_name = "X"
    )]
    pub speed: f64,

    /// The location whose taps the scales sit on.
    #[arg(
        long,
        env = "SCALESENSE_SIM_LOCATION",
        default_value = "loc-001",
        value_name = "ID"
    )]
    pub location: LocationId,

    /// Seed of the simulated bar: kegs, beers, pours, kicks, outages and noise all follow it.
    #[arg(
        long,
        env = "SCALESENSE_SIM_SEED",
        default_value_t = 1,
        value_name = "S"
    )]
    pub seed: u64,

    /// Stop after this much simulated time (e.g. 90s, 30m, 2h, 1d, 1h30m); without it, run
    /// until Ctrl-C.
    #[arg(
        long,
        env = "SCALESENSE_SIM_DURATION",
        value_parser = parse_sim_duration,
        value_name = "SIM_TIME"
    )]
    pub duration: Option<Duration>,

    /// Number of the first scale's device id (1 gives SCALE-0001); the others follow.
    #[arg(
        long,
        env = "SCALESENSE_SIM_FIRST_DEVICE",
        default_value_t = 1,
        value_name = "N"
    )]
    pub first_device: u32,

    /// Simulated time to start at, RFC 3339 (e.g. 2026-03-18T18:00:00-05:00); now by default.
    #[arg(long, env = "SCALESENSE_SIM_START", value_name = "TIME")]
    pub start: Option<Timestamp>,

    /// Time zone of the bar's opening hours (16:00–02:00), an IANA name such as
    /// America/Chicago; the system's by default.
    #[arg(long, env = "SCALESENSE_SIM_TIME_ZONE", value_name = "TZ")]
    pub time_zone: Option<String>,
}

/// Why `scalesense sim` could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown time zone {name:?}: {source}")]
    TimeZone { name: String, source: jiff::Error },
    #[error("start time {0} is before 1970")]
    Start(Timestamp),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl SimArgs {
    /// The fleet these flags describe.
    pub fn fleet_config(&self) -> Result<FleetConfig, SimError> {
        let time_zone = match &self.time_zone {
            Some(name) => TimeZone::get(name).map_err(|source| SimError::TimeZone {
                name: name.clone(),
                source,
            })?,
            None => TimeZone::system(),
        };
        let start_ms = self
            .start
            .map(|ts| u64::try_from(ts.as_millisecond()).map_err(|_| SimError::Start(ts)))
            .transpose()?;
        Ok(FleetConfig {
            broker: self.broker.clone(),
            scales: self.scales,
            speed: self.speed,
            location: self.location.clone(),
            seed: self.seed,
            first_device_number: self.first_device,
            start_ms,
            world: WorldConfig {
                time_zone,
                ..WorldConfig::default()
            },
        })
    }
}

/// Runs `scalesense sim` to the end: until Ctrl-C or the simulated duration.
pub fn run(args: &SimArgs) -> Result<FleetReport, SimError> {
    let config = args.fleet_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SimError::Runtime)?;
    runtime.block_on(run_fleet(config, args.duration))
}

/// Runs a fleet with progress display until Ctrl-C or until `duration` of simulated time.
pub async fn run_fleet(
    config: FleetConfig,
    duration: Option<Duration>,
) -> Result<FleetReport, SimError> {
    let scales = config.scales;
    let time_zone = config.world.time_zone.clone();
    let handle = Fleet::start(config, CancellationToken::new())?;
    let clock = handle.clock();
    let deadline = duration.map(|d| clock.instant_at(clock.start_ms() + d.as_millis() as u64));
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let interrupted = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(interrupted);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut interrupted => {
                progress.finish();
                info!("interrupted: stopping the scales");
                break;
            }
            () = sleep_until_opt(deadline) => {
                progress.finish();
                info!("simulated duration reached: stopping the scales");
                break;
            }
            _ = ticker.tick() => {
                progress.show(&handle.stats().snapshot(), scales, clock.now_ms(), &time_zone);
            }
        }
    }
    let stats = handle.shared_stats();
    let report = handle.stop().await;
    let s = stats.snapshot();
    info!(
        scales = report.scales,
        failed = report.failed,
        readings_sent = s.readings_sent,
        readings_acked = s.readings_acked,
        commands_answered = s.commands_answered,
        reconnects = s.reconnects,
        unsent_readings = report.unsent_readings,
        "fleet stopped"
    );
    Ok(report)
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A stderr writer for log events that first clears the progress line on a terminal, so a log
/// line starts at the left margin instead of after the progress text (the next redraw puts the
/// progress line back). Hand [`log_writer`] to the log subscriber.
#[derive(Debug)]
pub struct LogWriter {
    started: bool,
}

/// A [`LogWriter`] for one log event.
pub fn log_writer() -> LogWriter {
    LogWriter { started: false }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if !self.started {
            self.started = true;
            if err.is_terminal() {
                err.write_all(b"\r\x1b[2K")?;
            }
        }
        err.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The progress display.
#[derive(Debug)]
struct Progress {
    tty: bool,
    drawn: bool,
    last_log: Option<std::time::Instant>,
}

impl Progress {
    fn new(tty: bool) -> Self {
        Self {
            tty,
            drawn: false,
            last_log: None,
        }
    }

    fn show(&mut self, stats: &StatsSnapshot, scales: u32, sim_ms: u64, tz: &TimeZone) {
        if self.tty {
            let line = progress_line(stats, scales, sim_ms, tz);
            let mut err = std::io::stderr().lock();
            // A failed write to the terminal only costs the progress line.
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.drawn = true;
        } else if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.last_log = Some(std::time::Instant::now());
            info!(
                connected = stats.connected,
                scales,
                readings_sent = stats.readings_sent,
                readings_acked = stats.readings_acked,
                commands_answered = stats.commands_answered,
                reconnects = stats.reconnects,
                sim_time = %sim_time(sim_ms, tz),
                "progress"
            );
        }
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}

/// The one-line summary shown on a terminal.
fn progress_line(stats: &StatsSnapshot, scales: u32, sim_ms: u64, tz: &TimeZone) -> String {
    format!(
        "{}/{scales} scales connected · readings {} sent, {} acked · {} commands answered · sim {}",
        stats.connected,
        stats.readings_sent,
        stats.readings_acked,
        stats.commands_answered,
        sim_time(sim_ms, tz)
    )
}

fn sim_time(sim_ms: u64, tz: &TimeZone) -> String {
    i64::try_from(sim_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || format!("{sim_ms} ms"),
            |ts| {
                ts.to_zoned_datetime(tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            },
        )
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let speed: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("not a number: {s:?}"))?;
    if speed.is_finite() && speed > 0.0 && speed <= MAX_SPEED {
        Ok(speed)
    } else {
        Err(format!("must be above 0 and at most {MAX_SPEED}"))
    }
}

/// `90s`, `30m`, `2h`, `1d`, `1h30m`, `1.5h`: simulated time.
pub fn parse_sim_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as 90s, 30m, 2h, 1d or 1h30m, not {s:?}");
    let mut total = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let seconds = match unit {
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = next;
    }
    if total > 0.0 && total.is_finite() {
        Ok(Duration::from_secs_f64(total))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_sim_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_sim_duration("30m"), Ok(Duration::from_mins(30)));
        assert_eq!(parse_sim_duration("2h"), Ok(Duration::from_hours(2)));
        assert_eq!(parse_sim_duration("1d"), Ok(Duration::from_hours(24)));
        assert_eq!(parse_sim_duration("1h30m"), Ok(Duration::from_mins(90)));
        assert_eq!(parse_sim_duration("1.5h"), Ok(Duration::from_mins(90)));
        for bad in ["", "2", "h", "2x", "0s", "1h-2m"] {
            assert!(parse_sim_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_match_the_issue() {
        let cli = Cli::try_parse_from(["sim"]).unwrap();
        let config = cli.sim.fleet_config().unwrap();
        assert_eq!(config.broker.to_string(), "mqtt://127.0.0.1:1883");
        assert_eq!(config.scales, 12);
        assert!((config.speed - 1.0).abs() < f64::EPSILON);
        assert_eq!(config.location.as_str(), "loc-001");
        assert_eq!(config.seed, 1);
        assert_eq!(config.first_device_number, 1);
        assert_eq!(config.start_ms, None);
        assert_eq!(cli.sim.duration, None);
    }

    #[test]
    fn flags_reach_the_fleet_config() {
        let cli = Cli::try_parse_from([
            "sim",
            "--broker",
            "mqtt://10.0.0.5:1884",
            "--scales",
            "24",
            "--speed",
            "60",
            "--location",
            "loc-007",
            "--seed",
            "9",
            "--duration",
            "2h",
            "--start",
            "2026-03-18T18:00:00Z",
            "--time-zone",
            "America/Chicago",
        ])
        .unwrap();
        let config = cli.sim.fleet_config().unwrap();
        assert_eq!(config.broker.port, 1884);
        assert_eq!(config.scales, 24);
        assert!((config.speed - 60.0).abs() < f64::EPSILON);
        assert_eq!(config.location.as_str(), "loc-007");
        assert_eq!(config.seed, 9);
        assert_eq!(config.start_ms, Some(1_773_856_800_000));
        assert_eq!(cli.sim.duration, Some(Duration::from_hours(2)));
        for bad in [
            ["sim", "--scales", "0"],
            ["sim", "--scales", "1000"],
            ["sim", "--speed", "-1"],
            ["sim", "--location", "LOC 1"],
            ["sim", "--broker", "mqtts://x"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let unknown = Cli::try_parse_from(["sim", "--time-zone", "Mars/Olympus"]).unwrap();
        assert!(matches!(
            unknown.sim.fleet_config(),
            Err(SimError::TimeZone { .. })
        ));
    }

    #[test]
    fn the_progress_line_says_what_the_fleet_does() {
        let stats = StatsSnapshot {
            connected: 23,
            readings_sent: 1_204,
            readings_acked: 1_200,
            commands_answered: 2,
            reconnects: 1,
            max_lag_ms: 0,
        };
        let line = progress_line(&stats, 24, 1_773_856_800_000, &TimeZone::UTC);
        assert_eq!(
            line,
            "23/24 scales connected · readings 1204 sent, 1200 acked · 2 commands answered · sim 2026-03-18 18:00:00 UTC"
        );
    }
}
