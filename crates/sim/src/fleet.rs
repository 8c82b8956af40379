//! A fleet of virtual scales on a broker: configuration, the shared simulated clock, live
//! statistics and the handle that stops them.
//!
//! [`Fleet::start`] plans every scale from the seed and spawns one task per scale (see
//! `runner`), each with its own MQTT connection as on real hardware. The fleet stops when the
//! caller's [`CancellationToken`] is cancelled; [`FleetHandle::join`] then waits until every
//! scale has said goodbye. Dropping the handle instead aborts the tasks: none is ever left
//! running detached.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scalesense_proto::payload::{MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};
use scalesense_proto::{DeviceId, LocationId};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::plan::{MAX_SCALES, PlanError, ScalePlan};
use crate::runner::{ScaleReport, ScaleTask};
use crate::world::WorldConfig;

/// The fastest the simulation may run: beyond this a step is shorter than a microsecond of
/// real time and nothing useful is simulated any more.
pub const MAX_SPEED: f64 = 100_000.0;
/// Connection handshakes in progress at once, so a large fleet does not hit the broker with
/// hundreds of simultaneous connects.
pub const MAX_CONCURRENT_CONNECTS: usize = 16;

/// Where the broker is: `mqtt://HOST:PORT` (plain TCP; the simulator speaks no TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

/// Why a broker address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerAddrError {
    #[error("unsupported scheme {0:?}: the simulator connects with plain mqtt://HOST:PORT")]
    Scheme(String),
    #[error("no host in broker address")]
    NoHost,
    #[error("bad port {0:?}")]
    Port(String),
}

impl FromStr for BrokerAddr {
    type Err = BrokerAddrError;

    fn from_str(s: &str) -> Result<Self, BrokerAddrError> {
        let rest = match s.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => return Err(BrokerAddrError::Scheme(scheme.to_owned())),
            None => s,
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(BrokerAddrError::NoHost)?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(BrokerAddrError::NoHost);
        }
        let port = match port {
            None => 1883,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| BrokerAddrError::Port(p.to_owned()))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

/// Simulated time: `start + real elapsed × speed`. Copied into every task, so they all agree.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start_ms: u64,
    origin: Instant,
    speed: f64,
}

impl SimClock {
    /// A clock reading `start_ms` (simulated epoch ms) now and running `speed` times real time.
    pub fn starting_now(start_ms: u64, speed: f64) -> Self {
        Self {
            start_ms,
            origin: Instant::now(),
            speed,
        }
    }

    /// Simulated epoch ms now.
    pub fn now_ms(&self) -> u64 {
        self.at(Instant::now())
    }

    /// Simulated epoch ms at real instant `instant`.
    pub fn at(&self, instant: Instant) -> u64 {
        let elapsed = instant.saturating_duration_since(self.origin);
        self.start_ms + (elapsed.as_secs_f64() * 1_000.0 * self.speed) as u64
    }

    pub fn start_ms(&self) -> u64 {
        self.start_ms
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The real instant at which the clock reads `sim_ms` (the start for earlier times).
    pub fn instant_at(&self, sim_ms: u64) -> Instant {
        self.origin + self.real(sim_ms.saturating_sub(self.start_ms))
    }

    /// How long `sim_ms` of simulated time takes in real time.
    pub fn real(&self, sim_ms: u64) -> Duration {
        Duration::from_secs_f64(sim_ms as f64 / 1_000.0 / self.speed)
    }
}

/// Everything a fleet needs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub broker: BrokerAddr,
    /// How many scales (1–999: one per tap).
    pub scales: u32,
    /// Simulated seconds per real second.
    pub speed: f64,
    pub location: LocationId,
    pub seed: u64,
    /// The first scale is `SCALE-{first_device_number:04}`, the next one up, and so on.
    pub first_device_number: u32,
    /// Simulated time at the start, epoch ms; `None` for the wall clock's now.
    pub start_ms: Option<u64>,
    pub world: WorldConfig,
}

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("a fleet needs 1 to {MAX_SCALES} scales, not {0}")]
    Scales(u32),
    #[error("speed must be above 0 and at most {MAX_SPEED}, not {0}")]
    Speed(f64),
    #[error("device numbers from {first} for {scales} scales run past {max}", max = u32::MAX)]
    DeviceNumbers { first: u32, scales: u32 },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("simulated start time {0} ms is outside the contract's timestamp range")]
    Start(u64),
    #[error("Fleet::start must be called inside a Tokio runtime")]
    NoRuntime,
}

impl FleetConfig {
    /// The plans of every scale, in tap order.
    pub fn plans(&self) -> Result<Vec<ScalePlan>, FleetError> {
        if !(1..=MAX_SCALES).contains(&self.scales) {
            return Err(FleetError::Scales(self.scales));
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= MAX_SPEED) {
            return Err(FleetError::Speed(self.speed));
        }
        if self.first_device_number.checked_add(self.scales).is_none() {
            return Err(FleetError::DeviceNumbers {
                first: self.first_device_number,
                scales: self.scales,
            });
        }
        (0..self.scales)
            .map(|i| {
                ScalePlan::new(self.seed, i, self.first_device_number + i, &self.location)
                    .map_err(FleetError::from)
            })
            .collect()
    }
}

/// Live counters, updated by the scale tasks.
#[derive(Debug, Default)]
pub struct FleetStats {
    connected: AtomicU64,
    readings_sent: AtomicU64,
    readings_acked: AtomicU64,
    commands_answered: AtomicU64,
    reconnects: AtomicU64,
    max_lag_ms: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Scales with an MQTT session up (connected and subscribed).
    pub connected: u64,
    /// Reading publishes handed to the broker (a resend after a reconnect counts again).
    pub readings_sent: u64,
    /// Readings the broker acknowledged.
    pub readings_acked: u64,
    /// Command responses the broker acknowledged.
    pub commands_answered: u64,
    /// Sessions re-established after the first one (Wi-Fi outages, reboots, broker trouble).
    pub reconnects: u64,
    /// The furthest any scale's world has fallen behind the simulated clock, ms: near zero
    /// when the machine keeps up with the speed.
    pub max_lag_ms: u64,
}

impl FleetStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            readings_sent: self.readings_sent.load(Ordering::Relaxed),
            readings_acked: self.readings_acked.load(Ordering::Relaxed),
            commands_answered: self.commands_answered.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            max_lag_ms: self.max_lag_ms.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn session_up(&self, reconnect: bool) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        if reconnect {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn session_down(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn reading_sent(&self) {
        self.readings_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reading_acked(&self) {
        self.readings_acked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn command_answered(&self) {
        self.commands_answered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn lag(&self, ms: u64) {
        self.max_lag_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// How the fleet ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetReport {
    /// Scales that stopped cleanly.
    pub scales: usize,
    /// Readings still in the scales' offline buffers at the end (never sent or never acked).
    pub unsent_readings: usize,
    /// Scale tasks that panicked or were aborted.
    pub failed: usize,
}

/// The fleet.
#[derive(Debug)]
pub struct Fleet;

impl Fleet {
    /// Boots every scale and connects it to the broker; runs until `shutdown` is cancelled
    /// (by the caller, or by [`FleetHandle::stop`]). Must be called inside a Tokio runtime.
    pub fn start(
        config: FleetConfig,
        shutdown: CancellationToken,
    ) -> Result<FleetHandle, FleetError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| FleetError::NoRuntime)?;
        let plans = config.plans()?;
        let start_ms = config.start_ms.unwrap_or_else(wall_clock_ms);
        if !(MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&start_ms) {
            return Err(FleetError::Start(start_ms));
        }
        let clock = SimClock::starting_now(start_ms, config.speed);
        let stats = Arc::new(FleetStats::default());
        let connects = Arc::new(Semaphore::new(MAX_CONCURRENT_CONNECTS));
        let devices = plans.iter().map(|p| p.device_id.clone()).collect();
        let mut tasks = JoinSet::new();
        for plan in plans {
            let task = ScaleTask::new(
                plan,
                &config,
                clock,
                Arc::clone(&stats),
                Arc::clone(&connects),
                shutdown.clone(),
            );
            tasks.spawn_on(task.run(), &runtime);
        }
        tracing::info!(
            scales = config.scales,
            broker = %config.broker,
            speed = config.speed,
            seed = config.seed,
            location = %config.location,
            "fleet started"
        );
        Ok(FleetHandle {
            config,
            shutdown,
            stats,
            clock,
            devices,
            tasks,
        })
    }
}

/// A running fleet.
#[derive(Debug)]
pub struct FleetHandle {
    config: FleetConfig,
    shutdown: CancellationToken,
    stats: Arc<FleetStats>,
    clock: SimClock,
    devices: Vec<DeviceId>,
    tasks: JoinSet<ScaleReport>,
}

impl FleetHandle {
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    pub fn stats(&self) -> &FleetStats {
        &self.stats
    }

    /// The counters, to read from elsewhere (a dashboard, a metrics exporter).
    pub fn shared_stats(&self) -> Arc<FleetStats> {
        Arc::clone(&self.stats)
    }

    /// The simulated clock every scale runs on. Commands must be issued and expire on it:
    /// the scales judge `expires_at` by simulated time.
    pub fn clock(&self) -> SimClock {
        self.clock
    }

    /// The fleet's device ids, in tap order.
    pub fn devices(&self) -> &[DeviceId] {
        &self.devices
    }

    /// Cancels the shutdown token and waits until every scale has said goodbye.
    pub async fn stop(self) -> FleetReport {
        self.shutdown.cancel();
        self.join().await
    }

    /// Waits until every scale has stopped, which happens once the shutdown token is
    /// cancelled.
    pub async fn join(mut self) -> FleetReport {
        let mut report = FleetReport::default();
        while let Some(result) = self.tasks.join_next().await {
            match result {
                Ok(scale) => {
                    report.scales += 1;
                    report.unsent_readings += scale.unsent_readings;
                }
                Err(err) => {
                    tracing::error!(error = %err, "a scale task failed");
                    report.failed += 1;
                }
            }
        }
        report
    }
}

/// The wall clock, epoch ms (0 if the system clock is before 1970).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_parse() {
        let b: BrokerAddr = "mqtt://127.0.0.1:1883".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("127.0.0.1", 1883));
        assert_eq!(b.to_string(), "mqtt://127.0.0.1:1883");
        let b: BrokerAddr = "mqtt://broker.local".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("broker.local", 1883));
        let b: BrokerAddr = "localhost:1884".parse().unwrap();
        assert_eq!(b.port, 1884);
        let b: BrokerAddr = "mqtt://[::1]:1885/".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 1885));
        assert_eq!(b.to_string(), "mqtt://[::1]:1885");
        assert_eq!(
            "mqtts://x:8883".parse::<BrokerAddr>(),
            Err(BrokerAddrError::Scheme("mqtts".into()))
        );
        assert_eq!(
            "mqtt://:1883".parse::<BrokerAddr>(),
            Err(BrokerAddrError::NoHost)
        );
        assert_eq!(
            "mqtt://h:0".parse::<BrokerAddr>(),
            Err(BrokerAddrError::Port("0".into()))
        );
        assert_eq!(
            "mqtt://h:x".parse::<BrokerAddr>(),
            Err(BrokerAddrError::Port("x".into()))
        );
    }

    fn config() -> FleetConfig {
        FleetConfig {
            broker: "mqtt://127.0.0.1:1883".parse().unwrap(),
            scales: 3,
            speed: 60.0,
            location: LocationId::try_from("loc-001").unwrap(),
            seed: 1,
            first_device_number: 41,
            start_ms: None,
            world: WorldConfig::default(),
        }
    }

    #[test]
    fn plans_number_devices_and_taps() {
        let plans = config().plans().unwrap();
        let ids: Vec<&str> = plans.iter().map(|p| p.device_id.as_str()).collect();
        assert_eq!(ids, ["SCALE-0041", "SCALE-0042", "SCALE-0043"]);
        assert_eq!(plans[2].tap_id.as_str(), "loc-001#TAP#03");
        assert!(matches!(
            FleetConfig {
                scales: 0,
                ..config()
            }
            .plans(),
            Err(FleetError::Scales(0))
        ));
        assert!(matches!(
            FleetConfig {
                speed: 0.0,
                ..config()
            }
            .plans(),
            Err(FleetError::Speed(_))
        ));
        assert!(matches!(
            FleetConfig {
                first_device_number: u32::MAX,
                ..config()
            }
            .plans(),
            Err(FleetError::DeviceNumbers { .. })
        ));
    }

    #[test]
    fn start_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(
            Fleet::start(config(), CancellationToken::new()),
            Err(FleetError::NoRuntime)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_runs_speed_times_real_time() {
        let clock = SimClock::starting_now(1_000_000, 60.0);
        assert_eq!(clock.now_ms(), 1_000_000);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(clock.now_ms(), 1_000_000 + 120_000);
        assert_eq!(clock.real(60_000), Duration::from_secs(1));
    }
}
