//! Raw counts → pounds, and pounds → keg level.
//!
//! A [`Calibration`] maps raw HX711 counts to pounds: `(raw − zero_offset) / counts_per_lb`.
//! The zero offset is the empty platform's reading; the factor comes from a known weight
//! (`calibrate`). Tare records (`tare_empty`, `tare_full`) remember what the scale read with an
//! empty and a full keg on it, so the scale computes `level_pct` itself (seed 002):
//! `(w − empty) / (full − empty)`, clamped to 0–100.
//!
//! Tare records keep the raw counts as the source of truth and re-derive pounds through the
//! current calibration, so recalibrating does not silently shift the level. This module does
//! arithmetic only: it never decides *when* to tare or calibrate.

use scalesense_proto::payload::TareStatus;
use serde::{Deserialize, Serialize};

/// Counts per pound assumed before the first calibration with a known weight: a 200 kg
/// full-bridge platform on an HX711 at gain 128 and 3.3 V excitation reads about this much.
/// Readings taken with it are rough; the server sees `scale_factor` in telemetry.
pub const NOMINAL_COUNTS_PER_LB: f64 = 5_000.0;

/// Smallest difference between a full and an empty tare that still gives a meaningful level.
pub const MIN_TARE_SPAN_LBS: f64 = 1.0;

/// The counts → pounds mapping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Raw counts with nothing on the platform.
    pub zero_offset: i32,
    /// Raw counts per pound (the seeds' `scale_factor`).
    pub counts_per_lb: f64,
    /// The known weight of the last calibration; `None` while the factor is still nominal.
    pub known_weight_lbs: Option<f64>,
    /// Temperature during the last calibration, the reference for drift compensation.
    pub reference_temp_c: Option<f64>,
}

/// Why a calibration was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    #[error("known weight must be a positive number of pounds")]
    BadKnownWeight,
    #[error("the known weight reads no heavier than the empty platform; check the zero")]
    NoLoad,
}

/// A new calibration and how far its factor moved from the previous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationOutcome {
    pub calibration: Calibration,
    /// `None` when the previous factor was only nominal (nothing to drift from).
    pub drift_pct: Option<f64>,
}

impl Calibration {
    /// A calibration with a measured zero and the nominal factor.
    pub const fn nominal(zero_offset: i32) -> Self {
        Self {
            zero_offset,
            counts_per_lb: NOMINAL_COUNTS_PER_LB,
            known_weight_lbs: None,
            reference_temp_c: None,
        }
    }

    pub fn is_calibrated(&self) -> bool {
        self.known_weight_lbs.is_some()
    }

    pub fn to_lbs(&self, raw: f64) -> f64 {
        (raw - f64::from(self.zero_offset)) / self.counts_per_lb
    }

    /// The scale factor from `raw` counts read with `known_weight_lbs` on the platform,
    /// keeping the zero offset.
    pub fn calibrate(
        &self,
        raw: f64,
        known_weight_lbs: f64,
        temp_c: Option<f64>,
    ) -> Result<CalibrationOutcome, CalibrationError> {
        if !known_weight_lbs.is_finite() || known_weight_lbs <= 0.0 {
            return Err(CalibrationError::BadKnownWeight);
        }
        let counts = raw - f64::from(self.zero_offset);
        // Fewer than one count per pound cannot be a loaded cell.
        if !counts.is_finite() || counts < known_weight_lbs {
            return Err(CalibrationError::NoLoad);
        }
        let counts_per_lb = counts / known_weight_lbs;
        let drift_pct = self
            .is_calibrated()
            .then(|| drift_pct(self.counts_per_lb, counts_per_lb));
        Ok(CalibrationOutcome {
            calibration: Self {
                zero_offset: self.zero_offset,
                counts_per_lb,
                known_weight_lbs: Some(known_weight_lbs),
                reference_temp_c: temp_c,
            },
            drift_pct,
        })
    }
}

/// Change of a scale factor in percent of the previous one.
pub fn drift_pct(previous: f64, current: f64) -> f64 {
    (current - previous) / previous * 100.0
}

/// What the scale read when a tare was taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TareRecord {
    /// Filtered raw counts: the source of truth.
    pub raw: i32,
    /// Pounds at the time of the tare, as reported to the server.
    pub lbs: f64,
}

/// The empty and full keg records the level is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Tare {
    pub empty: Option<TareRecord>,
    pub full: Option<TareRecord>,
}

impl Tare {
    pub fn status(&self) -> TareStatus {
        match (self.empty, self.full) {
            (None, None) => TareStatus::None,
            (Some(_), None) => TareStatus::EmptySet,
            (None, Some(_)) => TareStatus::FullSet,
            (Some(_), Some(_)) => TareStatus::Complete,
        }
    }

    /// The level of `weight_lbs` between the tare records, through the current calibration.
    /// `None` until both records exist and are at least [`MIN_TARE_SPAN_LBS`] apart.
    pub fn level_pct(&self, weight_lbs: f64, calibration: &Calibration) -> Option<f64> {
        let empty = calibration.to_lbs(f64::from(self.empty?.raw));
        let full = calibration.to_lbs(f64::from(self.full?.raw));
        level_pct(weight_lbs, empty, full)
    }
}

/// `(w − empty) / (full − empty) × 100`, clamped to 0–100; `None` when the span is too small
/// or a value is not finite.
pub fn level_pct(weight_lbs: f64, empty_lbs: f64, full_lbs: f64) -> Option<f64> {
    let span = full_lbs - empty_lbs;
    if !span.is_finite() || !weight_lbs.is_finite() || span < MIN_TARE_SPAN_LBS {
        return None;
    }
    Some(((weight_lbs - empty_lbs) / span * 100.0).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn converts_counts_to_pounds() {
        let cal = Calibration {
            zero_offset: 8_000,
            counts_per_lb: 4_000.0,
            known_weight_lbs: Some(20.0),
            reference_temp_c: None,
        };
        assert!(close(cal.to_lbs(8_000.0), 0.0));
        assert!(close(cal.to_lbs(408_000.0), 100.0));
        assert!(close(cal.to_lbs(4_000.0), -1.0));
    }

    #[test]
    fn first_calibration_has_no_drift() {
        let cal = Calibration::nominal(10_000);
        let out = cal
            .calibrate(10_000.0 + 20.0 * 4_321.0, 20.0, Some(4.0))
            .unwrap();
        assert!(close(out.calibration.counts_per_lb, 4_321.0));
        assert_eq!(out.calibration.zero_offset, 10_000);
        assert_eq!(out.calibration.known_weight_lbs, Some(20.0));
        assert_eq!(out.calibration.reference_temp_c, Some(4.0));
        assert_eq!(out.drift_pct, None);
    }

    #[test]
    fn recalibration_reports_drift_against_previous_factor() {
        let first = Calibration::nominal(0)
            .calibrate(40_000.0, 10.0, None)
            .unwrap()
            .calibration;
        let second = first.calibrate(41_000.0, 10.0, None).unwrap();
        assert!(close(second.drift_pct.unwrap(), 2.5));
        assert!(close(drift_pct(4_000.0, 3_900.0), -2.5));
    }

    #[test]
    fn calibration_rejects_bad_weight_and_no_load() {
        let cal = Calibration::nominal(5_000);
        assert_eq!(
            cal.calibrate(100_000.0, 0.0, None),
            Err(CalibrationError::BadKnownWeight)
        );
        assert_eq!(
            cal.calibrate(100_000.0, f64::NAN, None),
            Err(CalibrationError::BadKnownWeight)
        );
        assert_eq!(
            cal.calibrate(5_000.0, 20.0, None),
            Err(CalibrationError::NoLoad)
        );
    }

    #[test]
    fn level_follows_seed_formula_and_clamps() {
        // Quarter barrel: 22 lb empty, 87 lb full.
        assert!(close(level_pct(54.5, 22.0, 87.0).unwrap(), 50.0));
        assert!(close(level_pct(90.0, 22.0, 87.0).unwrap(), 100.0));
        assert!(close(level_pct(10.0, 22.0, 87.0).unwrap(), 0.0));
        assert_eq!(level_pct(50.0, 30.0, 30.5), None);
        assert_eq!(level_pct(f64::NAN, 22.0, 87.0), None);
    }

    #[test]
    fn tare_status_and_level_through_calibration() {
        let cal = Calibration {
            zero_offset: 1_000,
            counts_per_lb: 100.0,
            known_weight_lbs: Some(10.0),
            reference_temp_c: None,
        };
        let mut tare = Tare::default();
        assert_eq!(tare.status(), TareStatus::None);
        assert_eq!(tare.level_pct(50.0, &cal), None);
        tare.empty = Some(TareRecord {
            raw: 1_000 + 2_200,
            lbs: 22.0,
        });
        assert_eq!(tare.status(), TareStatus::EmptySet);
        assert_eq!(tare.level_pct(50.0, &cal), None);
        tare.full = Some(TareRecord {
            raw: 1_000 + 8_700,
            lbs: 87.0,
        });
        assert_eq!(tare.status(), TareStatus::Complete);
        assert!(close(tare.level_pct(54.5, &cal).unwrap(), 50.0));
        tare.empty = None;
        assert_eq!(tare.status(), TareStatus::FullSet);
    }

    #[test]
    fn recalibration_keeps_level_of_the_same_load() {
        // Same raw load, new factor: weight changes, level does not.
        let cal_a = Calibration {
            zero_offset: 0,
            counts_per_lb: 100.0,
            known_weight_lbs: Some(10.0),
            reference_temp_c: None,
        };
        let cal_b = Calibration {
            counts_per_lb: 110.0,
            ..cal_a
        };
        let tare = Tare {
            empty: Some(TareRecord {
                raw: 2_000,
                lbs: 20.0,
            }),
            full: Some(TareRecord {
                raw: 10_000,
                lbs: 100.0,
            }),
        };
        let raw_now = 6_000.0;
        let a = tare.level_pct(cal_a.to_lbs(raw_now), &cal_a).unwrap();
        let b = tare.level_pct(cal_b.to_lbs(raw_now), &cal_b).unwrap();
        assert!(close(a, 50.0) && close(b, 50.0));
    }
}
