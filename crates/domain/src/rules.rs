//! Alert thresholds and the rules that turn measurements into a severity.
//!
//! Each rule returns `Option<Severity>`: `None` means the condition does not hold. Rules whose
//! input wobbles (keg level, hours remaining, battery) take the severity of the alert that is
//! open now and apply hysteresis to it: an alert raised at 20 % clears only above 20 % plus
//! `hysteresis_pct`, so a level hovering at the threshold does not fire and clear all evening.
//! Time-based rules (offline, stale) need none: a new message resets the age to zero, which is a
//! definite recovery. Calibration drift is measured only at calibration, so it cannot flap.
//! This module must never read a clock: "now" is an argument.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::Severity;
use crate::units::{EpochMs, Percent};

/// Why a set of thresholds is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error("threshold {field} must be a finite number ≥ 0")]
    NotANonNegativeNumber { field: &'static str },
    #[error("threshold {critical} must be at least as severe as {warning}")]
    CriticalBeforeWarning {
        warning: &'static str,
        critical: &'static str,
    },
}

/// Per-location alert thresholds. The defaults are seed 001's; stored overrides are partial
/// JSON (`{"battery_warning_pct": 25}`), every missing field taking its default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    pub low_keg_warning_pct: f64,
    pub low_keg_critical_pct: f64,
    pub low_keg_warning_hours: f64,
    pub low_keg_critical_hours: f64,
    pub offline_warning_secs: u64,
    pub offline_critical_secs: u64,
    pub battery_warning_pct: f64,
    pub battery_critical_pct: f64,
    /// Warn when the absolute calibration drift reaches this many percent.
    pub calibration_drift_warn: f64,
    /// Warn when a scale that is online has sent no reading for this long. Not in the seeds:
    /// 900 s is fifteen missed one-minute readings, well past a reboot or a Wi-Fi blip, and
    /// below the 30 min after which an offline scale is critical.
    pub stale_readings_secs: u64,
    /// How long a condition must hold before its alert fires (seed: 2 minutes).
    pub grace_period_secs: u64,
    /// Percentage points beyond a level or battery threshold needed to clear or de-escalate.
    pub hysteresis_pct: f64,
    /// Hours beyond an hours-remaining threshold needed to clear or de-escalate. Not in the
    /// seeds: hours remaining swings with the pour rate far more than the level does.
    pub hysteresis_hours: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            low_keg_warning_pct: 20.0,
            low_keg_critical_pct: 10.0,
            low_keg_warning_hours: 8.0,
            low_keg_critical_hours: 2.0,
            offline_warning_secs: 300,
            offline_critical_secs: 1_800,
            battery_warning_pct: 20.0,
            battery_critical_pct: 10.0,
            calibration_drift_warn: 2.0,
            stale_readings_secs: 900,
            grace_period_secs: 120,
            hysteresis_pct: 2.0,
            hysteresis_hours: 0.5,
        }
    }
}

impl Thresholds {
    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.grace_period_secs)
    }

    /// Checks an override before it is stored: numbers finite and ≥ 0, critical thresholds at
    /// least as severe as warnings.
    pub fn validate(&self) -> Result<(), ThresholdError> {
        let numbers = [
            ("low_keg_warning_pct", self.low_keg_warning_pct),
            ("low_keg_critical_pct", self.low_keg_critical_pct),
            ("low_keg_warning_hours", self.low_keg_warning_hours),
            ("low_keg_critical_hours", self.low_keg_critical_hours),
            ("battery_warning_pct", self.battery_warning_pct),
            ("battery_critical_pct", self.battery_critical_pct),
            ("calibration_drift_warn", self.calibration_drift_warn),
            ("hysteresis_pct", self.hysteresis_pct),
            ("hysteresis_hours", self.hysteresis_hours),
        ];
        if let Some((field, _)) = numbers.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            return Err(ThresholdError::NotANonNegativeNumber { field });
        }
        let ordered = [
            (
                "low_keg_warning_pct",
                "low_keg_critical_pct",
                self.low_keg_critical_pct <= self.low_keg_warning_pct,
            ),
            (
                "low_keg_warning_hours",
                "low_keg_critical_hours",
                self.low_keg_critical_hours <= self.low_keg_warning_hours,
            ),
            (
                "battery_warning_pct",
                "battery_critical_pct",
                self.battery_critical_pct <= self.battery_warning_pct,
            ),
            (
                "offline_warning_secs",
                "offline_critical_secs",
                self.offline_critical_secs >= self.offline_warning_secs,
            ),
        ];
        match ordered.iter().find(|(_, _, ok)| !ok) {
            Some(&(warning, critical, _)) => {
                Err(ThresholdError::CriticalBeforeWarning { warning, critical })
            }
            None => Ok(()),
        }
    }
}

/// Severity for a measurement where lower is worse, with hysteresis against the open alert's
/// severity `current`: a threshold the alert has already reached stays met until the value is
/// more than `hysteresis` above it.
fn lower_is_worse(
    value: f64,
    warning: f64,
    critical: f64,
    hysteresis: f64,
    current: Option<Severity>,
) -> Option<Severity> {
    let margin = |level: Severity| {
        if current >= Some(level) {
            hysteresis
        } else {
            0.0
        }
    };
    if value <= critical + margin(Severity::Critical) {
        Some(Severity::Critical)
    } else if value <= warning + margin(Severity::Warning) {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// Low keg: warning at ≤ 20 % or ≤ 8 h left, critical at ≤ 10 % or ≤ 2 h (defaults); the worse
/// of the two wins. Unknown hours (no pour rate) count as "not running out". A non-finite level
/// is no evidence either way, so the open alert's severity is kept.
pub fn low_keg(
    level: Percent,
    hours_remaining: Option<f64>,
    current: Option<Severity>,
    t: &Thresholds,
) -> Option<Severity> {
    if !level.0.is_finite() {
        return current;
    }
    let by_level = lower_is_worse(
        level.0,
        t.low_keg_warning_pct,
        t.low_keg_critical_pct,
        t.hysteresis_pct,
        current,
    );
    let by_hours = hours_remaining.filter(|h| h.is_finite()).and_then(|h| {
        lower_is_worse(
            h,
            t.low_keg_warning_hours,
            t.low_keg_critical_hours,
            t.hysteresis_hours,
            current,
        )
    });
    by_level.max(by_hours)
}

/// Scale offline: nothing heard for more than 300 s → warning, more than 1800 s → critical
/// (seed: "> 5 min", "> 30 min"). A `last_seen` in the future (clock skew) counts as just now.
pub fn scale_offline(last_seen: EpochMs, now: EpochMs, t: &Thresholds) -> Option<Severity> {
    let silent = now.saturating_since(last_seen);
    if silent > Duration::from_secs(t.offline_critical_secs) {
        Some(Severity::Critical)
    } else if silent > Duration::from_secs(t.offline_warning_secs) {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// Low battery: ≤ 20 % warning, ≤ 10 % critical (defaults), with `hysteresis_pct` to clear: a
/// battery's estimate moves with temperature and load. Non-finite keeps the open severity.
pub fn low_battery(
    battery: Percent,
    current: Option<Severity>,
    t: &Thresholds,
) -> Option<Severity> {
    if !battery.0.is_finite() {
        return current;
    }
    lower_is_worse(
        battery.0,
        t.battery_warning_pct,
        t.battery_critical_pct,
        t.hysteresis_pct,
        current,
    )
}

/// Calibration drift: |drift| ≥ 2 % (default) → warning. There is no critical level in the
/// seeds. Non-finite drift is no evidence of drift.
pub fn calibration_drift(drift: Percent, t: &Thresholds) -> Option<Severity> {
    (drift.0.is_finite() && drift.0.abs() >= t.calibration_drift_warn).then_some(Severity::Warning)
}

/// Stale readings: the scale is online but its last reading is more than `stale_readings_secs`
/// old → warning. No reading ever counts as stale only once the scale has been known for that
/// long, which is the caller's `last_reading` (e.g. the registration time).
pub fn stale_readings(last_reading: EpochMs, now: EpochMs, t: &Thresholds) -> Option<Severity> {
    (now.saturating_since(last_reading) > Duration::from_secs(t.stale_readings_secs))
        .then_some(Severity::Warning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Severity::{Critical, Warning};
    use proptest::prelude::*;

    const T: Thresholds = Thresholds {
        low_keg_warning_pct: 20.0,
        low_keg_critical_pct: 10.0,
        low_keg_warning_hours: 8.0,
        low_keg_critical_hours: 2.0,
        offline_warning_secs: 300,
        offline_critical_secs: 1_800,
        battery_warning_pct: 20.0,
        battery_critical_pct: 10.0,
        calibration_drift_warn: 2.0,
        stale_readings_secs: 900,
        grace_period_secs: 120,
        hysteresis_pct: 2.0,
        hysteresis_hours: 0.5,
    };

    #[test]
    fn defaults_are_the_seeds() {
        assert_eq!(Thresholds::default(), T);
        assert_eq!(T.grace_period(), Duration::from_mins(2));
        assert_eq!(T.validate(), Ok(()));
    }

    #[test]
    fn overrides_are_partial_json() {
        let t: Thresholds =
            serde_json::from_str(r#"{"battery_warning_pct": 25, "grace_period_secs": 60}"#)
                .unwrap();
        assert!((t.battery_warning_pct - 25.0).abs() < 1e-12);
        assert_eq!(t.grace_period_secs, 60);
        assert_eq!(t.offline_critical_secs, 1_800);
        assert!((t.low_keg_warning_pct - 20.0).abs() < 1e-12);
        let empty: Thresholds = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, T);
    }

    #[test]
    fn bad_overrides_are_refused() {
        let t = Thresholds {
            low_keg_critical_pct: 30.0,
            ..T
        };
        assert_eq!(
            t.validate(),
            Err(ThresholdError::CriticalBeforeWarning {
                warning: "low_keg_warning_pct",
                critical: "low_keg_critical_pct"
            })
        );
        let t = Thresholds {
            offline_critical_secs: 60,
            ..T
        };
        assert!(matches!(
            t.validate(),
            Err(ThresholdError::CriticalBeforeWarning { .. })
        ));
        let t = Thresholds {
            hysteresis_pct: -1.0,
            ..T
        };
        assert_eq!(
            t.validate(),
            Err(ThresholdError::NotANonNegativeNumber {
                field: "hysteresis_pct"
            })
        );
        let t = Thresholds {
            battery_warning_pct: f64::NAN,
            ..T
        };
        assert!(t.validate().is_err());
    }

    #[test]
    fn low_keg_by_level() {
        assert_eq!(low_keg(Percent(50.0), None, None, &T), None);
        assert_eq!(low_keg(Percent(20.1), None, None, &T), None);
        assert_eq!(low_keg(Percent(20.0), None, None, &T), Some(Warning));
        assert_eq!(low_keg(Percent(10.0), None, None, &T), Some(Critical));
        assert_eq!(low_keg(Percent(0.0), None, None, &T), Some(Critical));
    }

    #[test]
    fn low_keg_by_hours_remaining() {
        assert_eq!(low_keg(Percent(60.0), Some(9.0), None, &T), None);
        assert_eq!(low_keg(Percent(60.0), Some(8.0), None, &T), Some(Warning));
        assert_eq!(low_keg(Percent(60.0), Some(1.5), None, &T), Some(Critical));
        // The worse of level and hours wins.
        assert_eq!(low_keg(Percent(15.0), Some(1.0), None, &T), Some(Critical));
        assert_eq!(low_keg(Percent(5.0), Some(20.0), None, &T), Some(Critical));
        assert_eq!(low_keg(Percent(60.0), Some(f64::NAN), None, &T), None);
    }

    #[test]
    fn low_keg_hysteresis() {
        // Open warning at 20 %: 21.9 % still holds, 22.1 % clears.
        assert_eq!(
            low_keg(Percent(21.9), None, Some(Warning), &T),
            Some(Warning)
        );
        assert_eq!(low_keg(Percent(22.1), None, Some(Warning), &T), None);
        // Open critical: de-escalates only above 12 %.
        assert_eq!(
            low_keg(Percent(11.5), None, Some(Critical), &T),
            Some(Critical)
        );
        assert_eq!(
            low_keg(Percent(12.5), None, Some(Critical), &T),
            Some(Warning)
        );
        // An open warning does not lower the bar for critical.
        assert_eq!(
            low_keg(Percent(11.0), None, Some(Warning), &T),
            Some(Warning)
        );
        // Hours: open warning at 8 h holds to 8.5 h.
        assert_eq!(
            low_keg(Percent(60.0), Some(8.4), Some(Warning), &T),
            Some(Warning)
        );
        assert_eq!(low_keg(Percent(60.0), Some(8.6), Some(Warning), &T), None);
        // Unknown level keeps whatever is open.
        assert_eq!(
            low_keg(Percent(f64::NAN), None, Some(Critical), &T),
            Some(Critical)
        );
        assert_eq!(low_keg(Percent(f64::NAN), None, None, &T), None);
    }

    #[test]
    fn offline_and_stale() {
        let now = EpochMs(10_000_000);
        let ago = |s: u64| now.minus(Duration::from_secs(s));
        assert_eq!(scale_offline(ago(300), now, &T), None);
        assert_eq!(scale_offline(ago(301), now, &T), Some(Warning));
        assert_eq!(scale_offline(ago(1_800), now, &T), Some(Warning));
        assert_eq!(scale_offline(ago(1_801), now, &T), Some(Critical));
        assert_eq!(
            scale_offline(now.plus(Duration::from_mins(1)), now, &T),
            None
        );
        assert_eq!(stale_readings(ago(900), now, &T), None);
        assert_eq!(stale_readings(ago(901), now, &T), Some(Warning));
        assert_eq!(stale_readings(ago(99_999), now, &T), Some(Warning));
    }

    #[test]
    fn battery_and_drift() {
        assert_eq!(low_battery(Percent(21.0), None, &T), None);
        assert_eq!(low_battery(Percent(20.0), None, &T), Some(Warning));
        assert_eq!(low_battery(Percent(9.0), None, &T), Some(Critical));
        assert_eq!(low_battery(Percent(21.0), Some(Warning), &T), Some(Warning));
        assert_eq!(low_battery(Percent(22.5), Some(Warning), &T), None);
        assert_eq!(
            low_battery(Percent(f64::INFINITY), Some(Warning), &T),
            Some(Warning)
        );
        assert_eq!(calibration_drift(Percent(1.9), &T), None);
        assert_eq!(calibration_drift(Percent(2.0), &T), Some(Warning));
        assert_eq!(calibration_drift(Percent(-3.5), &T), Some(Warning));
        assert_eq!(calibration_drift(Percent(f64::NAN), &T), None);
    }

    proptest! {
        #[test]
        fn hysteresis_only_ever_holds_longer(level in -10.0f64..110.0, hours in proptest::option::of(0.0f64..48.0)) {
            // With an alert open, the verdict is never milder than with none.
            let fresh = low_keg(Percent(level), hours, None, &T);
            for current in [Some(Warning), Some(Critical)] {
                let held = low_keg(Percent(level), hours, current, &T);
                prop_assert!(held >= fresh, "{held:?} < {fresh:?}");
            }
            // Above every threshold plus hysteresis, everything clears.
            if level > 22.0 && hours.is_none_or(|h| h > 8.5) {
                prop_assert_eq!(low_keg(Percent(level), hours, Some(Critical), &T), None);
            }
        }
    }
}
