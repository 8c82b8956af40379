//! Keg types, their reference weights, and how a gross weight on the scale becomes a level and a
//! volume left.
//!
//! The reference table is the seeds' (US sizes, pounds); it is converted once to SI here and
//! used as the default for a beer until a real `tare_full` measurement replaces it. Those
//! measurements are averaged per beer and keg type, which is what the default/set/calculated
//! badges report. This module must never trust a pair of weights it has not checked: a full
//! weight at or below the empty weight would divide by zero in every level computed from it.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::units::{
    EpochMs, Kilograms, Litres, Percent, SpecificGravity, UnitError, volume_from_net,
};

/// Why keg data is not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KegError {
    #[error(
        "unknown keg type {0:?}: expected half_barrel, quarter_barrel, sixth_barrel or slim_quarter"
    )]
    UnknownType(String),
    #[error(
        "keg weights must be finite, with 0 ≤ empty < full (got full {full} kg, empty {empty} kg)"
    )]
    BadWeights { full: f64, empty: f64 },
    #[error("a custom keg type needs a name that is not one of the reference types")]
    BadCustomName,
    #[error("a custom keg type's volume must be a positive number of litres (got {0})")]
    BadVolume(f64),
    #[error(transparent)]
    Unit(#[from] UnitError),
}

/// Full and empty gross weights of one keg type, checked: finite, `0 ≤ empty < full`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawWeights", into = "RawWeights")]
pub struct KegWeights {
    full: Kilograms,
    empty: Kilograms,
}

#[derive(Serialize, Deserialize)]
struct RawWeights {
    full: Kilograms,
    empty: Kilograms,
}

impl TryFrom<RawWeights> for KegWeights {
    type Error = KegError;
    fn try_from(raw: RawWeights) -> Result<Self, KegError> {
        Self::new(raw.full, raw.empty)
    }
}

impl From<KegWeights> for RawWeights {
    fn from(w: KegWeights) -> Self {
        Self {
            full: w.full,
            empty: w.empty,
        }
    }
}

impl KegWeights {
    pub fn new(full: Kilograms, empty: Kilograms) -> Result<Self, KegError> {
        let ok = full.0.is_finite() && empty.0.is_finite() && empty.0 >= 0.0 && full.0 > empty.0;
        if ok {
            Ok(Self { full, empty })
        } else {
            Err(KegError::BadWeights {
                full: full.0,
                empty: empty.0,
            })
        }
    }

    /// From the seeds' pounds.
    pub fn from_lbs(full_lbs: f64, empty_lbs: f64) -> Result<Self, KegError> {
        Self::new(
            Kilograms::from_lbs(full_lbs),
            Kilograms::from_lbs(empty_lbs),
        )
    }

    pub fn full(self) -> Kilograms {
        self.full
    }

    pub fn empty(self) -> Kilograms {
        self.empty
    }

    /// Mass of beer in a full keg (always positive).
    pub fn contents(self) -> Kilograms {
        self.full - self.empty
    }
}

/// The standard US keg sizes of the seeds, or a custom one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KegType {
    HalfBarrel,
    QuarterBarrel,
    SixthBarrel,
    SlimQuarter,
    Custom(CustomKegType),
}

/// A keg type the reference table does not know, e.g. a 30 L euro keg. Checked on construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawCustom", into = "RawCustom")]
pub struct CustomKegType {
    name: String,
    volume: Litres,
    weights: KegWeights,
}

#[derive(Serialize, Deserialize)]
struct RawCustom {
    name: String,
    volume: Litres,
    full: Kilograms,
    empty: Kilograms,
}

impl TryFrom<RawCustom> for CustomKegType {
    type Error = KegError;
    fn try_from(raw: RawCustom) -> Result<Self, KegError> {
        Self::new(raw.name, raw.volume, KegWeights::new(raw.full, raw.empty)?)
    }
}

impl From<CustomKegType> for RawCustom {
    fn from(c: CustomKegType) -> Self {
        Self {
            name: c.name,
            volume: c.volume,
            full: c.weights.full,
            empty: c.weights.empty,
        }
    }
}

impl CustomKegType {
    pub fn new(name: String, volume: Litres, weights: KegWeights) -> Result<Self, KegError> {
        let name_taken = KegType::REFERENCE.iter().any(|t| t.name() == name);
        if name.trim().is_empty() || name_taken {
            return Err(KegError::BadCustomName);
        }
        if !(volume.0.is_finite() && volume.0 > 0.0) {
            return Err(KegError::BadVolume(volume.0));
        }
        Ok(Self {
            name,
            volume,
            weights,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl KegType {
    /// The seeds' reference types, in table order.
    pub const REFERENCE: [Self; 4] = [
        Self::HalfBarrel,
        Self::QuarterBarrel,
        Self::SixthBarrel,
        Self::SlimQuarter,
    ];

    /// The snake_case name used in the API and storage (`half_barrel`), or a custom type's name.
    pub fn name(&self) -> &str {
        match self {
            Self::HalfBarrel => "half_barrel",
            Self::QuarterBarrel => "quarter_barrel",
            Self::SixthBarrel => "sixth_barrel",
            Self::SlimQuarter => "slim_quarter",
            Self::Custom(c) => &c.name,
        }
    }

    /// The seeds' reference table row `(gallons, full lbs, empty lbs)`, or the custom type.
    fn table_row(&self) -> Result<(f64, f64, f64), &CustomKegType> {
        match self {
            Self::HalfBarrel => Ok((15.5, 161.5, 29.0)),
            Self::QuarterBarrel => Ok((7.75, 87.0, 22.0)),
            Self::SixthBarrel => Ok((5.17, 61.0, 16.5)),
            Self::SlimQuarter => Ok((7.75, 87.0, 20.0)),
            Self::Custom(c) => Err(c),
        }
    }

    /// How much beer the keg holds when full.
    pub fn nominal_volume(&self) -> Litres {
        match self.table_row() {
            Ok((gallons, _, _)) => Litres::from_us_gallons(gallons),
            Err(custom) => custom.volume,
        }
    }

    /// Weights to use for a beer that has no measurement of this keg type yet.
    pub fn reference_weights(&self) -> KegWeights {
        match self.table_row() {
            // The table's rows satisfy `0 ≤ empty < full`; a test checks each with `new`.
            Ok((_, full, empty)) => KegWeights {
                full: Kilograms::from_lbs(full),
                empty: Kilograms::from_lbs(empty),
            },
            Err(custom) => custom.weights,
        }
    }
}

impl FromStr for KegType {
    type Err = KegError;

    /// Parses a reference type's name; custom types are not nameable from a string alone.
    fn from_str(s: &str) -> Result<Self, KegError> {
        Self::REFERENCE
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| KegError::UnknownType(s.to_owned()))
    }
}

impl fmt::Display for KegType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a beer's keg weights came from, shown as a badge next to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightSource {
    /// The static reference table: never measured.
    Default,
    /// One real `tare_full` measurement.
    Set,
    /// The running average of several measurements.
    Calculated,
}

/// A beer's weights for one keg type, with the measurement history that decides the badge
/// (seed: no `measured_at` → default; present → set; `measured_count > 1` → calculated).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BeerKegWeights {
    pub weights: KegWeights,
    pub measured_at: Option<EpochMs>,
    pub measured_count: u32,
}

impl BeerKegWeights {
    /// Reference weights, never measured.
    pub fn reference(kind: &KegType) -> Self {
        Self {
            weights: kind.reference_weights(),
            measured_at: None,
            measured_count: 0,
        }
    }

    pub fn source(&self) -> WeightSource {
        match (self.measured_at, self.measured_count) {
            (None, _) => WeightSource::Default,
            (Some(_), 0 | 1) => WeightSource::Set,
            (Some(_), _) => WeightSource::Calculated,
        }
    }

    /// Folds in a `tare_full` measurement taken at `at`. The empty weight is kept. The first
    /// measurement replaces the reference value outright (a default is not a measurement, so it
    /// must not be averaged in); later ones keep a running average of all measurements.
    pub fn record_full(self, measured_full: Kilograms, at: EpochMs) -> Result<Self, KegError> {
        let full = if self.measured_at.is_none() || self.measured_count == 0 {
            measured_full
        } else {
            let n = f64::from(self.measured_count);
            let old = self.weights.full;
            Kilograms(old.0 + (measured_full.0 - old.0) / (n + 1.0))
        };
        // Check the measurement itself too: a bad reading must not be averaged into a valid mean.
        KegWeights::new(measured_full, self.weights.empty)?;
        Ok(Self {
            weights: KegWeights::new(full, self.weights.empty)?,
            measured_at: Some(at),
            measured_count: self.measured_count.saturating_add(1),
        })
    }
}

/// Mass of beer on the scale: `gross − empty`, never below zero (a keg lifted off the scale or a
/// tare offset does not make negative beer). NaN counts as nothing on the scale.
pub fn net(gross: Kilograms, empty: Kilograms) -> Kilograms {
    let n = gross.0 - empty.0;
    if n > 0.0 {
        Kilograms(n)
    } else {
        Kilograms(0.0)
    }
}

/// How full the keg is, 0–100 %, by weight between the empty and full references.
pub fn level_pct(gross: Kilograms, weights: KegWeights) -> Percent {
    let pct = net(gross, weights.empty).0 / weights.contents().0 * 100.0;
    Percent(pct.clamp(0.0, 100.0))
}

/// Litres left in the keg at gravity `sg`. Not capped at the nominal volume: an over-full
/// reading is reported as measured, only the level percentage is clamped.
pub fn volume_left(gross: Kilograms, weights: KegWeights, sg: SpecificGravity) -> Litres {
    volume_from_net(net(gross, weights.empty), sg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::tests::close;
    use proptest::prelude::*;

    #[test]
    fn reference_table_matches_seed() {
        let cases = [
            (KegType::HalfBarrel, "half_barrel", 15.5, 161.5, 29.0),
            (KegType::QuarterBarrel, "quarter_barrel", 7.75, 87.0, 22.0),
            (KegType::SixthBarrel, "sixth_barrel", 5.17, 61.0, 16.5),
            (KegType::SlimQuarter, "slim_quarter", 7.75, 87.0, 20.0),
        ];
        for (kind, name, gal, full, empty) in cases {
            assert_eq!(kind.name(), name);
            assert_eq!(name.parse::<KegType>().unwrap(), kind);
            assert!(close(kind.nominal_volume().to_us_gallons(), gal, 1e-12));
            let w = kind.reference_weights();
            assert!(close(w.full().to_lbs(), full, 1e-12));
            assert!(close(w.empty().to_lbs(), empty, 1e-12));
            // The table's rows pass the same check as any other weights.
            assert_eq!(KegWeights::new(w.full(), w.empty()).unwrap(), w);
        }
        assert!(close(
            KegType::HalfBarrel.reference_weights().full().0,
            73.255_167_755,
            1e-12
        ));
    }

    #[test]
    fn keg_type_names_and_serde() {
        assert_eq!(
            "pony".parse::<KegType>(),
            Err(KegError::UnknownType("pony".into()))
        );
        assert!("Half_Barrel".parse::<KegType>().is_err());
        assert_eq!(
            serde_json::to_string(&KegType::SixthBarrel).unwrap(),
            "\"sixth_barrel\""
        );
        let euro: KegType = serde_json::from_str(
            r#"{"custom":{"name":"euro_30","volume":30.0,"full":40.0,"empty":10.0}}"#,
        )
        .unwrap();
        assert_eq!(euro.name(), "euro_30");
        assert!(close(euro.nominal_volume().0, 30.0, 0.0));
        assert!(close(euro.reference_weights().contents().0, 30.0, 0.0));
        assert_eq!(euro.to_string(), "euro_30");
        let back: KegType = serde_json::from_str(&serde_json::to_string(&euro).unwrap()).unwrap();
        assert_eq!(back, euro);
    }

    #[test]
    fn custom_types_are_checked() {
        let w = KegWeights::new(Kilograms(40.0), Kilograms(10.0)).unwrap();
        assert_eq!(
            CustomKegType::new("half_barrel".into(), Litres(30.0), w),
            Err(KegError::BadCustomName)
        );
        assert_eq!(
            CustomKegType::new("  ".into(), Litres(30.0), w),
            Err(KegError::BadCustomName)
        );
        assert_eq!(
            CustomKegType::new("euro".into(), Litres(0.0), w),
            Err(KegError::BadVolume(0.0))
        );
        assert!(
            serde_json::from_str::<KegType>(
                r#"{"custom":{"name":"x","volume":30.0,"full":10.0,"empty":10.0}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn weights_are_checked() {
        assert!(KegWeights::new(Kilograms(10.0), Kilograms(10.0)).is_err());
        assert!(KegWeights::new(Kilograms(10.0), Kilograms(-1.0)).is_err());
        assert!(KegWeights::new(Kilograms(f64::NAN), Kilograms(1.0)).is_err());
        assert!(KegWeights::new(Kilograms(f64::INFINITY), Kilograms(1.0)).is_err());
        assert!(serde_json::from_str::<KegWeights>(r#"{"full":5.0,"empty":9.0}"#).is_err());
        let w: KegWeights = serde_json::from_str(r#"{"full":50.0,"empty":13.0}"#).unwrap();
        assert!(close(w.contents().0, 37.0, 1e-15));
    }

    #[test]
    fn level_net_and_volume() {
        let w = KegWeights::new(Kilograms(60.0), Kilograms(10.0)).unwrap();
        assert!(close(level_pct(Kilograms(35.0), w).0, 50.0, 1e-12));
        assert!(close(level_pct(Kilograms(60.0), w).0, 100.0, 0.0));
        assert!(close(level_pct(Kilograms(70.0), w).0, 100.0, 0.0));
        assert!(close(level_pct(Kilograms(5.0), w).0, 0.0, 0.0));
        assert!(close(level_pct(Kilograms(f64::NAN), w).0, 0.0, 0.0));
        assert!(close(net(Kilograms(35.0), w.empty()).0, 25.0, 1e-12));
        assert!(close(net(Kilograms(2.0), w.empty()).0, 0.0, 0.0));
        let sg = SpecificGravity::try_from(1.01).unwrap();
        assert!(close(
            volume_left(Kilograms(35.0), w, sg).0,
            25.0 / 1.01,
            1e-12
        ));
        // A full half barrel of water-like beer: 132.5 lb of beer ≈ 60.1 L ≈ 15.9 gal.
        let hb = KegType::HalfBarrel.reference_weights();
        let full = volume_left(hb.full(), hb, SpecificGravity::WATER);
        assert!(close(full.0, 60.100_989_025, 1e-9));
    }

    #[test]
    fn tare_full_updates_badge_and_average() {
        let start = BeerKegWeights::reference(&KegType::QuarterBarrel);
        assert_eq!(start.source(), WeightSource::Default);
        let empty = start.weights.empty();

        // First measurement replaces the default outright.
        let one = start.record_full(Kilograms(40.0), EpochMs(1_000)).unwrap();
        assert_eq!(one.source(), WeightSource::Set);
        assert_eq!(one.measured_count, 1);
        assert_eq!(one.measured_at, Some(EpochMs(1_000)));
        assert!(close(one.weights.full().0, 40.0, 0.0));
        assert_eq!(one.weights.empty(), empty);

        // Then a running average of the measurements.
        let two = one.record_full(Kilograms(41.0), EpochMs(2_000)).unwrap();
        assert_eq!(two.source(), WeightSource::Calculated);
        assert!(close(two.weights.full().0, 40.5, 1e-12));
        let three = two.record_full(Kilograms(42.5), EpochMs(3_000)).unwrap();
        assert!(close(three.weights.full().0, 41.166_666_666_666_664, 1e-12));
        assert_eq!(three.measured_count, 3);
        assert_eq!(three.measured_at, Some(EpochMs(3_000)));
        assert_eq!(three.weights.empty(), empty);

        // A measurement at or below the empty weight is refused and changes nothing.
        assert!(matches!(
            three.record_full(empty, EpochMs(4_000)),
            Err(KegError::BadWeights { .. })
        ));
    }

    proptest! {
        #[test]
        fn level_always_within_bounds(
            gross in proptest::num::f64::ANY,
            empty in 0.0f64..100.0,
            extra in 0.001f64..200.0,
        ) {
            let w = KegWeights::new(Kilograms(empty + extra), Kilograms(empty)).unwrap();
            let pct = level_pct(Kilograms(gross), w).0;
            prop_assert!((0.0..=100.0).contains(&pct), "{pct}");
        }

        #[test]
        fn running_average_is_the_mean(measures in proptest::collection::vec(30.0f64..60.0, 1..20)) {
            let mut b = BeerKegWeights::reference(&KegType::SixthBarrel);
            for (i, m) in measures.iter().enumerate() {
                b = b.record_full(Kilograms(*m), EpochMs(i as i64)).unwrap();
            }
            let mean = measures.iter().sum::<f64>() / measures.len() as f64;
            prop_assert!(close(b.weights.full().0, mean, 1e-9));
            prop_assert_eq!(b.measured_count as usize, measures.len());
        }
    }
}
