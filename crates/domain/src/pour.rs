//! Pour rate, hours remaining, pour detection, and the pour reports (pours per hour, volume by
//! hour of day, keg lifespan, style split).
//!
//! The seed computed `(max − min) / window`, which breaks whenever the weight goes *up*: a keg
//! swap, a re-tare, a hand resting on the keg, sensor noise. Here only decreases beyond a noise
//! floor count as beer poured, increases never do, only the current keg's samples are used and
//! maintenance samples are skipped. When there is not enough data the answer is "unknown"
//! (`None`), never a division by zero, a negative rate or an infinite ETA. This module must never
//! read a clock: "now" is always an argument.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::units::{EpochMs, Kilograms, Litres, Percent, SpecificGravity, volume_from_net};

/// Sums the drops in a time-ordered series of amounts, ignoring changes within `noise_floor`.
///
/// A reference level follows the series with hysteresis: it moves down when the amount falls
/// more than the floor below it (that fall is counted), and up when the amount rises more than
/// the floor above it (a refill or re-tare, not counted). Noise whose peak-to-peak swing stays
/// within the floor therefore adds nothing, while a slow trickle is still counted in steps.
fn sum_of_drops(amounts: impl IntoIterator<Item = f64>, noise_floor: f64) -> f64 {
    let floor = noise_floor.max(0.0);
    let mut reference: Option<f64> = None;
    let mut total = 0.0;
    for amount in amounts.into_iter().filter(|a| a.is_finite()) {
        match reference {
            None => reference = Some(amount),
            Some(r) if r - amount > floor => {
                total += r - amount;
                reference = Some(amount);
            }
            Some(r) if amount - r > floor => reference = Some(amount),
            Some(_) => {}
        }
    }
    total
}

/// Settings for [`pour_rate`]; per location, partial JSON overrides the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PourRateConfig {
    /// How far back to look (seed default: 6 h).
    pub window_secs: u64,
    /// Drops at or below this are noise, not beer.
    pub noise_floor: Litres,
    /// Shortest span of usable samples that gives a rate (shorter: unknown).
    pub min_span_secs: u64,
    /// Fewest usable samples that give a rate (at least 2 whatever this says).
    pub min_samples: usize,
}

impl Default for PourRateConfig {
    fn default() -> Self {
        Self {
            window_secs: 6 * 3_600,
            noise_floor: Litres(0.05),
            min_span_secs: 10 * 60,
            min_samples: 2,
        }
    }
}

impl PourRateConfig {
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    pub fn min_span(&self) -> Duration {
        Duration::from_secs(self.min_span_secs)
    }
}

/// One stored reading as the pour-rate computation needs it. `keg` is whatever identifies the
/// keg on the tap (a keg id, or a counter bumped on every keg change); only equality is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PourSample<K> {
    pub at: EpochMs,
    pub volume: Litres,
    pub keg: K,
    pub in_maintenance: bool,
}

/// How fast the current keg is being poured and how long it will last at that rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PourRate {
    /// Always finite and ≥ 0.
    pub litres_per_hour: f64,
    /// `None` when nothing was poured over the window (the keg is not running out).
    pub hours_remaining: Option<f64>,
    /// Beer counted as poured over the span used.
    pub poured: Litres,
    /// Volume at the latest usable sample (≥ 0).
    pub volume_now: Litres,
    /// From the first to the last usable sample; the rate is `poured / span`.
    pub span_secs: u64,
    /// How many samples were used.
    pub samples: usize,
}

/// Pour rate of the keg on the tap now, from samples in `(now − window, now]`.
///
/// The current keg is the keg of the latest sample in the window; only the unbroken run of that
/// keg's samples ending there is used (stop at a keg change), minus maintenance samples. The rate
/// divides by the span actually covered, not the nominal window, so a keg tapped an hour ago is
/// not diluted over six. Returns `None` (unknown) with fewer than `min_samples` usable samples or
/// a span shorter than `min_span`. Samples need not be sorted; non-finite volumes are skipped.
pub fn pour_rate<K: PartialEq>(
    samples: &[PourSample<K>],
    now: EpochMs,
    config: &PourRateConfig,
) -> Option<PourRate> {
    let window_start = now.minus(config.window());
    let mut in_window: Vec<&PourSample<K>> = samples
        .iter()
        .filter(|s| s.at > window_start && s.at <= now && s.volume.0.is_finite())
        .collect();
    in_window.sort_by_key(|s| s.at);
    let current_keg = &in_window.last()?.keg;
    let run_start = in_window
        .iter()
        .rposition(|s| s.keg != *current_keg)
        .map_or(0, |i| i + 1);
    let used: Vec<&PourSample<K>> = in_window[run_start..]
        .iter()
        .copied()
        .filter(|s| !s.in_maintenance)
        .collect();

    let (first, last) = (used.first()?, used.last()?);
    let span = last.at.saturating_since(first.at);
    if used.len() < config.min_samples.max(2) || span < config.min_span() || span.is_zero() {
        return None;
    }
    let poured = sum_of_drops(used.iter().map(|s| s.volume.0), config.noise_floor.0);
    let litres_per_hour = poured / (span.as_secs_f64() / 3_600.0);
    let volume_now = last.volume.0.max(0.0);
    let hours_remaining = (litres_per_hour > 0.0).then(|| volume_now / litres_per_hour);
    Some(PourRate {
        litres_per_hour,
        hours_remaining,
        poured: Litres(poured),
        volume_now: Litres(volume_now),
        span_secs: span.as_secs(),
        samples: used.len(),
    })
}

/// One raw scale reading for pour detection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub at: EpochMs,
    pub weight: Kilograms,
    /// The scale's own "settled" flag: the weight has stopped moving.
    pub stable: bool,
}

/// A detected pour: the weight dropped and the scale settled again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PourEvent {
    /// The first reading that showed the drop.
    pub started: EpochMs,
    /// The reading at which the scale settled.
    pub ended: EpochMs,
    /// Weight that left the keg.
    pub weight: Kilograms,
    /// That weight as beer at the keg's gravity.
    pub volume: Litres,
}

/// Settings for [`PourDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectorConfig {
    /// Weight changes at or below this are noise.
    pub noise_floor: Kilograms,
    /// A "pour" that has not settled after this long is something else (the keg being moved):
    /// it is dropped without an event and a new baseline is awaited.
    pub max_pour_secs: u64,
    /// A settled drop larger than this is a keg taken off the scale, not a pour.
    pub max_drop: Kilograms,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            noise_floor: Kilograms(0.05),
            max_pour_secs: 10 * 60,
            max_drop: Kilograms(10.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
enum DetectorState {
    /// No settled weight yet (start, after `reset`, after an abandoned pour).
    NoBaseline,
    /// Settled at `baseline`.
    Idle { baseline: Kilograms },
    /// The weight dropped below `baseline` at `started` and has not settled yet.
    Pouring {
        baseline: Kilograms,
        started: EpochMs,
    },
}

/// Turns a scale's readings into pour events: a drop beyond the noise floor followed by the scale
/// settling again. Serialisable so a restart resumes mid-pour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PourDetector {
    config: DetectorConfig,
    gravity: SpecificGravity,
    state: DetectorState,
    last_at: Option<EpochMs>,
}

impl PourDetector {
    pub fn new(config: DetectorConfig, gravity: SpecificGravity) -> Self {
        Self {
            config,
            gravity,
            state: DetectorState::NoBaseline,
            last_at: None,
        }
    }

    /// Forget the baseline, e.g. on entering maintenance or a keg change.
    pub fn reset(&mut self) {
        self.state = DetectorState::NoBaseline;
    }

    /// True while a pour has started and not yet settled, unless it has gone on longer than a
    /// pour can (the scale may have stopped reporting mid-pour).
    pub fn pouring_now(&self, now: EpochMs) -> bool {
        match self.state {
            DetectorState::Pouring { started, .. } => {
                now.saturating_since(started) <= Duration::from_secs(self.config.max_pour_secs)
            }
            _ => false,
        }
    }

    /// Feeds one reading; returns the pour it completes, if any. Readings older than the last
    /// one fed and non-finite weights are ignored.
    pub fn observe(&mut self, reading: Reading) -> Option<PourEvent> {
        if !reading.weight.0.is_finite() || self.last_at.is_some_and(|last| reading.at < last) {
            return None;
        }
        self.last_at = Some(reading.at);
        let max_pour = Duration::from_secs(self.config.max_pour_secs);
        if let DetectorState::Pouring { started, .. } = self.state
            && reading.at.saturating_since(started) > max_pour
        {
            self.state = DetectorState::NoBaseline;
        }

        let w = reading.weight;
        let floor = self.config.noise_floor.0.max(0.0);
        let (next, event) = match self.state {
            DetectorState::NoBaseline if reading.stable => {
                (DetectorState::Idle { baseline: w }, None)
            }
            DetectorState::NoBaseline => (DetectorState::NoBaseline, None),
            DetectorState::Idle { baseline } if reading.stable => {
                // Settled again without an unsettled reading in between (readings are sparse).
                (
                    DetectorState::Idle { baseline: w },
                    self.pour(baseline, w, reading.at, reading.at),
                )
            }
            DetectorState::Idle { baseline } if baseline.0 - w.0 > floor => (
                DetectorState::Pouring {
                    baseline,
                    started: reading.at,
                },
                None,
            ),
            // Unsettled but not lower: a bump, keep the baseline.
            idle @ DetectorState::Idle { .. } => (idle, None),
            DetectorState::Pouring { baseline, started } if reading.stable => (
                DetectorState::Idle { baseline: w },
                self.pour(baseline, w, started, reading.at),
            ),
            pouring @ DetectorState::Pouring { .. } => (pouring, None),
        };
        self.state = next;
        event
    }

    /// The pour from `baseline` down to the settled weight `settled`, if it is one.
    fn pour(
        &self,
        baseline: Kilograms,
        settled: Kilograms,
        started: EpochMs,
        ended: EpochMs,
    ) -> Option<PourEvent> {
        let drop = baseline.0 - settled.0;
        let is_pour = drop > self.config.noise_floor.0.max(0.0) && drop <= self.config.max_drop.0;
        is_pour.then(|| PourEvent {
            started,
            ended,
            weight: Kilograms(drop),
            volume: volume_from_net(Kilograms(drop), self.gravity),
        })
    }
}

/// Pours that ended in `(now − window, now]`, per hour of that window; 0 for an empty window.
pub fn pours_per_hour(events: &[PourEvent], now: EpochMs, window: Duration) -> f64 {
    if window.is_zero() {
        return 0.0;
    }
    let since = now.minus(window);
    let n = events
        .iter()
        .filter(|e| e.ended > since && e.ended <= now)
        .count();
    n as f64 / (window.as_secs_f64() / 3_600.0)
}

/// Volume poured per local hour of the day over a report period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HourOfDay {
    /// Litres poured in each local hour (index 0 = 00:00–00:59), summed over the period.
    pub totals: [f64; 24],
    /// Local calendar days the period touches (partial days count as one).
    pub days: u32,
}

impl HourOfDay {
    /// Average litres per day for each hour: `totals / days` (all zero for an empty period).
    pub fn average_per_day(&self) -> [f64; 24] {
        let days = f64::from(self.days.max(1));
        self.totals.map(|t| t / days)
    }
}

/// Sums `pours` (instant, litres) into the local hour of day they happened in, in the location's
/// time zone, over the half-open period `[start, end)`.
///
/// Hours are wall-clock hours: on a day when clocks go back, both 01:00 hours add to hour 1; on a
/// day when they go forward, the skipped hour gets nothing. `days` lets the caller report either
/// totals or per-day averages ([`HourOfDay::average_per_day`]). Pours outside the period, with
/// non-finite or negative volume, or outside the calendar range are skipped.
pub fn volume_by_hour_of_day(
    pours: &[(EpochMs, Litres)],
    start: EpochMs,
    end: EpochMs,
    tz: &TimeZone,
) -> HourOfDay {
    let mut totals = [0.0; 24];
    for &(at, litres) in pours {
        if at < start || at >= end || !litres.0.is_finite() || litres.0 < 0.0 {
            continue;
        }
        if let Ok(ts) = at.to_timestamp() {
            let hour = tz.to_datetime(ts).hour();
            totals[usize::try_from(hour).unwrap_or(0) % 24] += litres.0;
        }
    }
    HourOfDay {
        totals,
        days: local_days(start, end, tz),
    }
}

/// Local calendar dates touched by `[start, end)`; 0 when it is empty or out of range.
fn local_days(start: EpochMs, end: EpochMs, tz: &TimeZone) -> u32 {
    if end <= start {
        return 0;
    }
    match (start.to_timestamp(), EpochMs(end.0 - 1).to_timestamp()) {
        (Ok(first), Ok(last)) => {
            let first = tz.to_datetime(first).date();
            let last = tz.to_datetime(last).date();
            let whole_days = first.duration_until(last).as_hours() / 24;
            u32::try_from(whole_days + 1).unwrap_or(0)
        }
        _ => 0,
    }
}

/// A keg's life on a tap: from tapping to kicked (or the last reading while still on).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KegLifespan {
    pub tapped_at: EpochMs,
    pub ended_at: EpochMs,
    /// Whether `ended_at` is the kick (true) or just the last reading (false).
    pub kicked: bool,
    pub lifespan_secs: u64,
    /// Beer counted as poured, by the same drops-only rule as the pour rate.
    pub total_poured: Litres,
}

/// The lifespan of one keg from its own readings (instant, volume left), which the caller takes
/// from the keg's readings without maintenance samples. Readings outside `[tapped_at, ended_at]`
/// are ignored; they need not be sorted.
pub fn keg_lifespan(
    tapped_at: EpochMs,
    kicked_at: Option<EpochMs>,
    readings: &[(EpochMs, Litres)],
    noise_floor: Litres,
) -> KegLifespan {
    let mut own: Vec<(EpochMs, Litres)> = readings
        .iter()
        .copied()
        .filter(|(at, _)| *at >= tapped_at && kicked_at.is_none_or(|k| *at <= k))
        .collect();
    own.sort_by_key(|(at, _)| *at);
    let last_reading = own.last().map_or(tapped_at, |(at, _)| *at);
    let ended_at = kicked_at.unwrap_or(last_reading).max(tapped_at);
    KegLifespan {
        tapped_at,
        ended_at,
        kicked: kicked_at.is_some(),
        lifespan_secs: ended_at.saturating_since(tapped_at).as_secs(),
        total_poured: Litres(sum_of_drops(own.iter().map(|(_, v)| v.0), noise_floor.0)),
    }
}

/// One style's part of the volume poured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StyleShare {
    pub style: String,
    pub volume: Litres,
    /// Of the total poured, 0–100.
    pub share: Percent,
}

/// Volume poured per beer style from `(style, litres)` pairs (a pour, or a keg's total),
/// largest first (ties by name). Non-finite and non-positive volumes are skipped.
pub fn style_split<'a>(pours: impl IntoIterator<Item = (&'a str, Litres)>) -> Vec<StyleShare> {
    let mut by_style: BTreeMap<&str, f64> = BTreeMap::new();
    for (style, litres) in pours {
        if litres.0.is_finite() && litres.0 > 0.0 {
            *by_style.entry(style).or_insert(0.0) += litres.0;
        }
    }
    let total: f64 = by_style.values().sum();
    let mut shares: Vec<StyleShare> = by_style
        .into_iter()
        .map(|(style, v)| StyleShare {
            style: style.to_owned(),
            volume: Litres(v),
            share: Percent(v / total * 100.0),
        })
        .collect();
    // BTreeMap iteration is by name, and the sort is stable, so equal volumes stay by name.
    shares.sort_by(|a, b| b.volume.0.total_cmp(&a.volume.0));
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::tests::close;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;
    const H: i64 = 3_600_000;

    fn s(at_min: i64, volume: f64, keg: u32) -> PourSample<u32> {
        PourSample {
            at: EpochMs(at_min * MIN),
            volume: Litres(volume),
            keg,
            in_maintenance: false,
        }
    }

    #[test]
    fn steady_pour_gives_rate_and_eta() {
        // 6 L/h for 6 h, one reading a minute, ending at 10 L.
        let samples: Vec<_> = (0..=360).map(|m| s(m, 46.0 - 0.1 * m as f64, 1)).collect();
        let r = pour_rate(&samples, EpochMs(360 * MIN), &PourRateConfig::default()).unwrap();
        // The sample at exactly now − 6 h is outside the half-open window.
        assert_eq!(r.samples, 360);
        assert!(close(r.litres_per_hour, 6.0, 1e-9), "{}", r.litres_per_hour);
        assert!(close(r.hours_remaining.unwrap(), 10.0 / 6.0, 1e-9));
        assert!(close(r.volume_now.0, 10.0, 1e-12));
        assert_eq!(r.span_secs, 359 * 60);
    }

    #[test]
    fn keg_swap_uses_only_the_new_keg() {
        // Old keg drains to 2.15 L, new keg (50 L) tapped at minute 120, poured at 6 L/h.
        let mut samples: Vec<_> = (0..120).map(|m| s(m, 20.0 - m as f64 * 0.15, 7)).collect();
        samples.extend((120..=240).map(|m| s(m, 50.0 - (m - 120) as f64 * 0.1, 8)));
        let r = pour_rate(&samples, EpochMs(240 * MIN), &PourRateConfig::default()).unwrap();
        assert_eq!(r.samples, 121);
        assert!(close(r.litres_per_hour, 6.0, 1e-9), "{}", r.litres_per_hour);
        assert!(close(r.hours_remaining.unwrap(), 38.0 / 6.0, 1e-9));
        // The seed's (max − min) / 6 h would have said (50 − 2.15) / 6 ≈ 8 L/h.
    }

    #[test]
    fn increases_and_noise_do_not_count() {
        let mut samples = vec![s(0, 30.0, 1), s(10, 29.0, 1)]; // 1 L poured
        samples.push(s(20, 35.0, 1)); // re-tare: up 6 L, not a pour
        samples.push(s(30, 34.5, 1)); // 0.5 L poured
        // Noise ±0.02 L around 34.5 for half an hour.
        samples.extend((31..60).map(|m| s(m, 34.5 + if m % 2 == 0 { 0.02 } else { -0.02 }, 1)));
        let r = pour_rate(&samples, EpochMs(60 * MIN), &PourRateConfig::default()).unwrap();
        assert!(close(r.poured.0, 1.5, 1e-9), "{}", r.poured.0);
        assert!(close(r.litres_per_hour, 1.5 / (59.0 / 60.0), 1e-9));

        let flat: Vec<_> = (0..60)
            .map(|m| s(m, 20.0 + (m % 3) as f64 * 0.02, 1))
            .collect();
        let r = pour_rate(&flat, EpochMs(60 * MIN), &PourRateConfig::default()).unwrap();
        assert!(close(r.litres_per_hour, 0.0, 0.0));
        assert_eq!(r.hours_remaining, None);
    }

    #[test]
    fn slow_trickle_below_the_floor_per_sample_still_counts() {
        // 0.01 L per minute: every step is below the 0.05 L floor, the total is not.
        let samples: Vec<_> = (0..=60).map(|m| s(m, 10.0 - 0.01 * m as f64, 1)).collect();
        let r = pour_rate(&samples, EpochMs(60 * MIN), &PourRateConfig::default()).unwrap();
        assert!(
            r.litres_per_hour > 0.5 && r.litres_per_hour <= 0.6 + 1e-9,
            "{}",
            r.litres_per_hour
        );
    }

    #[test]
    fn maintenance_samples_are_skipped() {
        let mut samples: Vec<_> = (0..=60).map(|m| s(m, 20.0 - m as f64 * 0.1, 1)).collect();
        // Keg lifted for line cleaning: reads near zero, flagged as maintenance.
        for sample in &mut samples[20..30] {
            sample.volume = Litres(0.0);
            sample.in_maintenance = true;
        }
        let r = pour_rate(&samples, EpochMs(60 * MIN), &PourRateConfig::default()).unwrap();
        assert!(close(r.litres_per_hour, 6.0, 1e-9), "{}", r.litres_per_hour);
        assert_eq!(r.samples, 51);
    }

    #[test]
    fn not_enough_data_is_unknown() {
        let cfg = PourRateConfig::default();
        assert_eq!(pour_rate::<u32>(&[], EpochMs(0), &cfg), None);
        assert_eq!(pour_rate(&[s(0, 10.0, 1)], EpochMs(0), &cfg), None);
        // Two samples 5 minutes apart: shorter than the 10-minute minimum span.
        assert_eq!(
            pour_rate(&[s(0, 10.0, 1), s(5, 9.0, 1)], EpochMs(5 * MIN), &cfg),
            None
        );
        // Same instant twice: no span, no division by zero.
        assert_eq!(
            pour_rate(&[s(0, 10.0, 1), s(0, 9.0, 1)], EpochMs(0), &cfg),
            None
        );
        // Everything older than the window.
        assert_eq!(
            pour_rate(
                &[s(0, 10.0, 1), s(30, 9.0, 1)],
                EpochMs(30 * MIN + 6 * H),
                &cfg
            ),
            None
        );
        // Samples from the future (device clock ahead) are not used.
        assert_eq!(
            pour_rate(&[s(0, 10.0, 1), s(30, 9.0, 1)], EpochMs(29 * MIN), &cfg),
            None
        );
        // Only maintenance samples.
        let mut m = vec![s(0, 10.0, 1), s(30, 9.0, 1)];
        for x in &mut m {
            x.in_maintenance = true;
        }
        assert_eq!(pour_rate(&m, EpochMs(30 * MIN), &cfg), None);
        // A keg change a minute ago leaves one sample of the new keg.
        assert_eq!(
            pour_rate(
                &[s(0, 10.0, 1), s(59, 9.0, 1), s(60, 50.0, 2)],
                EpochMs(60 * MIN),
                &cfg
            ),
            None
        );
    }

    #[test]
    fn config_overrides_are_partial() {
        let cfg: PourRateConfig = serde_json::from_str(r#"{"window_secs": 7200}"#).unwrap();
        assert_eq!(cfg.window(), Duration::from_hours(2));
        assert_eq!(cfg.min_span(), Duration::from_mins(10));
        assert!(close(cfg.noise_floor.0, 0.05, 0.0));
    }

    fn reading(at_s: i64, kg: f64, stable: bool) -> Reading {
        Reading {
            at: EpochMs(at_s * 1_000),
            weight: Kilograms(kg),
            stable,
        }
    }

    fn detector() -> PourDetector {
        PourDetector::new(
            DetectorConfig::default(),
            SpecificGravity::try_from(1.02).unwrap(),
        )
    }

    #[test]
    fn detects_a_pour_when_the_scale_settles() {
        let mut d = detector();
        assert_eq!(d.observe(reading(0, 50.0, true)), None);
        assert!(!d.pouring_now(EpochMs(0)));
        assert_eq!(d.observe(reading(2, 49.8, false)), None);
        assert!(d.pouring_now(EpochMs(3_000)));
        assert_eq!(d.observe(reading(4, 49.6, false)), None);
        let e = d.observe(reading(8, 49.49, true)).unwrap();
        assert_eq!(e.started, EpochMs(2_000));
        assert_eq!(e.ended, EpochMs(8_000));
        assert!(close(e.weight.0, 0.51, 1e-9));
        assert!(close(e.volume.0, 0.51 / 1.02, 1e-9));
        assert!(!d.pouring_now(EpochMs(9_000)));
        // The next pour is measured from the new baseline.
        d.observe(reading(20, 49.0, false));
        let e2 = d.observe(reading(25, 48.99, true)).unwrap();
        assert!(close(e2.weight.0, 0.5, 1e-9));
    }

    #[test]
    fn detector_ignores_noise_bumps_and_refills() {
        let mut d = detector();
        d.observe(reading(0, 50.0, true));
        // Wobble within the floor, settled or not.
        assert_eq!(d.observe(reading(1, 49.97, false)), None);
        assert!(!d.pouring_now(EpochMs(1_000)));
        assert_eq!(d.observe(reading(2, 50.03, true)), None);
        // A hand on the keg: heavier and unsettled, then settles back.
        assert_eq!(d.observe(reading(3, 55.0, false)), None);
        assert_eq!(d.observe(reading(4, 50.02, true)), None);
        // A new keg: much heavier, settles; no event, new baseline.
        assert_eq!(d.observe(reading(10, 70.0, true)), None);
        let e = d.observe(reading(70, 69.5, true)).unwrap();
        assert!(close(e.weight.0, 0.5, 1e-9));
        // Stable-to-stable drop between sparse readings: started = ended.
        assert_eq!(e.started, e.ended);
    }

    #[test]
    fn detector_rejects_keg_removal_and_endless_pours() {
        let mut d = detector();
        d.observe(reading(0, 70.0, true));
        // Keg lifted off: drops 65 kg and settles. Not a pour.
        d.observe(reading(5, 5.0, false));
        assert_eq!(d.observe(reading(10, 5.0, true)), None);
        // Unsettled for longer than a pour can last: dropped, no event.
        d.observe(reading(20, 4.0, false));
        assert!(d.pouring_now(EpochMs(20_000 + 600_000)));
        assert!(!d.pouring_now(EpochMs(20_000 + 600_001)));
        assert_eq!(d.observe(reading(700, 3.0, false)), None);
        assert_eq!(d.observe(reading(701, 3.0, true)), None);
        // Out-of-order and non-finite readings are ignored.
        assert_eq!(d.observe(reading(500, 1.0, true)), None);
        assert_eq!(d.observe(reading(702, f64::NAN, true)), None);
        let e = d.observe(reading(703, 2.5, true)).unwrap();
        assert!(close(e.weight.0, 0.5, 1e-9));
    }

    #[test]
    fn detector_survives_a_restart_mid_pour() {
        let mut d = detector();
        d.observe(reading(0, 50.0, true));
        d.observe(reading(1, 49.0, false));
        let json = serde_json::to_string(&d).unwrap();
        let mut resumed: PourDetector = serde_json::from_str(&json).unwrap();
        assert!(resumed.pouring_now(EpochMs(2_000)));
        let e = resumed.observe(reading(3, 49.0, true)).unwrap();
        assert_eq!(e.started, EpochMs(1_000));
        d.reset();
        assert_eq!(d.observe(reading(4, 48.0, true)), None);
    }

    #[test]
    fn pours_per_hour_counts_the_window() {
        let ev = |end_min: i64| PourEvent {
            started: EpochMs(end_min * MIN - 5_000),
            ended: EpochMs(end_min * MIN),
            weight: Kilograms(0.5),
            volume: Litres(0.5),
        };
        let events = [ev(10), ev(70), ev(100), ev(119), ev(120), ev(121)];
        let now = EpochMs(120 * MIN);
        assert!(close(
            pours_per_hour(&events, now, Duration::from_hours(1)),
            4.0,
            0.0
        ));
        assert!(close(
            pours_per_hour(&events, now, Duration::from_hours(2)),
            2.5,
            0.0
        ));
        assert!(close(
            pours_per_hour(&events, now, Duration::ZERO),
            0.0,
            0.0
        ));
    }

    #[test]
    fn volume_by_local_hour_of_day() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let at = |s: &str| EpochMs::from(s.parse::<jiff::Timestamp>().unwrap());
        let pours = [
            (at("2026-03-20T18:30:00Z"), Litres(0.5)), // 19:30 CET
            (at("2026-03-21T18:10:00Z"), Litres(1.5)), // 19:10 CET
            (at("2026-03-21T23:10:00Z"), Litres(1.0)), // 00:10 CET next day
            (at("2026-03-22T23:10:00Z"), Litres(9.0)), // outside the period
            (at("2026-03-21T12:00:00Z"), Litres(f64::NAN)),
        ];
        let start = at("2026-03-19T23:00:00Z"); // 2026-03-20 00:00 CET
        let end = at("2026-03-21T23:00:00Z") + Duration::from_hours(1); // 01:00 on the 22nd
        let p = volume_by_hour_of_day(&pours, start, end, &tz);
        assert_eq!(p.days, 3);
        assert!(close(p.totals[19], 2.0, 0.0));
        assert!(close(p.totals[0], 1.0, 0.0));
        assert!(close(p.totals.iter().sum::<f64>(), 3.0, 0.0));
        let avg = p.average_per_day();
        assert!(close(avg[19], 2.0 / 3.0, 1e-12));

        // Summer time in Berlin: 18:10 UTC is 20:10 CEST.
        let summer = [(at("2026-07-01T18:10:00Z"), Litres(1.0))];
        let p = volume_by_hour_of_day(
            &summer,
            at("2026-07-01T00:00:00Z"),
            at("2026-07-02T00:00:00Z"),
            &tz,
        );
        assert!(close(p.totals[20], 1.0, 0.0));
        assert_eq!(p.days, 2); // 02:00 CEST on the 1st to 01:59 on the 2nd
        let empty = volume_by_hour_of_day(&summer, EpochMs(5), EpochMs(5), &tz);
        assert_eq!(empty.days, 0);
        assert!(empty.average_per_day().iter().all(|v| close(*v, 0.0, 0.0)));
    }

    #[test]
    fn lifespan_of_a_keg() {
        let readings = [
            (EpochMs(0), Litres(58.0)),
            (EpochMs(H), Litres(50.0)),
            (EpochMs(2 * H), Litres(51.0)), // re-tare wobble up, not poured
            (EpochMs(30 * H), Litres(0.5)),
            (EpochMs(40 * H), Litres(58.0)), // next keg's reading after the kick
        ];
        let l = keg_lifespan(EpochMs(0), Some(EpochMs(31 * H)), &readings, Litres(0.05));
        assert!(l.kicked);
        assert_eq!(l.lifespan_secs, 31 * 3_600);
        assert!(close(l.total_poured.0, 8.0 + 50.5, 1e-9));

        let on_tap = keg_lifespan(EpochMs(0), None, &readings[..3], Litres(0.05));
        assert!(!on_tap.kicked);
        assert_eq!(on_tap.ended_at, EpochMs(2 * H));
        assert!(close(on_tap.total_poured.0, 8.0, 1e-9));
        let fresh = keg_lifespan(EpochMs(H), None, &[], Litres(0.05));
        assert_eq!((fresh.ended_at, fresh.lifespan_secs), (EpochMs(H), 0));
    }

    #[test]
    fn style_split_shares() {
        let split = style_split([
            ("IPA", Litres(30.0)),
            ("Stout", Litres(10.0)),
            ("IPA", Litres(10.0)),
            ("Lager", Litres(10.0)),
            ("Sour", Litres(-1.0)),
            ("Sour", Litres(f64::NAN)),
        ]);
        let names: Vec<&str> = split.iter().map(|s| s.style.as_str()).collect();
        assert_eq!(names, ["IPA", "Lager", "Stout"]);
        assert!(close(split[0].volume.0, 40.0, 0.0));
        assert!(close(split[0].share.0, 66.666_666_666_666_67, 1e-12));
        assert!(close(
            split.iter().map(|s| s.share.0).sum::<f64>(),
            100.0,
            1e-12
        ));
        assert!(style_split([]).is_empty());
    }

    fn arb_samples() -> impl Strategy<Value = Vec<PourSample<u8>>> {
        proptest::collection::vec(
            (
                0i64..(8 * H),
                -5.0f64..80.0,
                0u8..3,
                proptest::bool::weighted(0.1),
            ),
            0..120,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(at, volume, keg, in_maintenance)| PourSample {
                    at: EpochMs(at),
                    volume: Litres(volume),
                    keg,
                    in_maintenance,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn pour_rate_is_never_negative_or_infinite(
            samples in arb_samples(),
            now in 0i64..(9 * H),
            floor in 0.0f64..1.0,
        ) {
            let cfg = PourRateConfig { noise_floor: Litres(floor), ..PourRateConfig::default() };
            if let Some(r) = pour_rate(&samples, EpochMs(now), &cfg) {
                prop_assert!(r.litres_per_hour.is_finite() && r.litres_per_hour >= 0.0);
                prop_assert!(r.poured.0 >= 0.0 && r.volume_now.0 >= 0.0);
                prop_assert!(r.span_secs >= 600);
                match r.hours_remaining {
                    Some(h) => prop_assert!(h.is_finite() && h >= 0.0 && r.litres_per_hour > 0.0),
                    None => prop_assert!(r.litres_per_hour <= 0.0),
                }
            }
        }

        #[test]
        fn poured_never_exceeds_total_descent_bound(
            steps in proptest::collection::vec(-2.0f64..2.0, 1..100),
        ) {
            // Counted drops never exceed the sum of all downward steps.
            let mut v = 50.0;
            let mut series = vec![v];
            let mut down = 0.0;
            for d in steps {
                v += d;
                if d < 0.0 { down -= d; }
                series.push(v);
            }
            let poured = sum_of_drops(series, 0.05);
            prop_assert!(poured >= 0.0 && poured <= down + 1e-9);
        }

        #[test]
        fn detector_events_are_positive_and_bounded(
            readings in proptest::collection::vec((0i64..2_000, 0.0f64..80.0, proptest::bool::ANY), 0..100),
        ) {
            let mut d = detector();
            let mut readings = readings;
            readings.sort_by_key(|r| r.0);
            for (at, kg, stable) in readings {
                if let Some(e) = d.observe(reading(at, kg, stable)) {
                    prop_assert!(e.weight.0 > 0.05 && e.weight.0 <= 10.0);
                    prop_assert!(e.started <= e.ended);
                    prop_assert!(e.volume.0 > 0.0);
                }
            }
        }
    }
}
