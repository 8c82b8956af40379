//! Quantities and instants as newtypes, so a kilogram is never added to a litre and a timestamp
//! is never mistaken for a duration.
//!
//! Internally everything is SI: kilograms, litres, epoch milliseconds. Pounds and US gallons
//! exist only at the edges (the wire contract, a location's display units), through the
//! conversions here, which use the exact legal definitions. This module must never round for
//! display: rounding belongs to whoever renders the value.

use core::fmt;
use core::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Kilograms per international avoirdupois pound (exact by definition).
pub const KG_PER_LB: f64 = 0.453_592_37;
/// Litres per US liquid gallon (exact by definition: 231 cubic inches).
pub const LITRES_PER_US_GALLON: f64 = 3.785_411_784;
/// The seeds' rounded gallons-per-litre factor, kept only so tests can show our exact
/// conversion agrees with the seed formula `gallons = (net_kg / sg) × 0.264172`.
pub const SEED_GALLONS_PER_LITRE: f64 = 0.264_172;

/// Why a value is not a valid quantity or instant.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "specific gravity {0} is outside {min}–{max}",
        min = SpecificGravity::MIN,
        max = SpecificGravity::MAX
    )]
    SpecificGravityOutOfRange(f64),
    #[error("{0} ms since the epoch is outside the supported calendar range")]
    InstantOutOfRange(i64),
}

/// A mass. May be negative (a raw net weight below the tare), never rounded.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Kilograms(pub f64);

impl Kilograms {
    pub fn from_lbs(lbs: f64) -> Self {
        Self(lbs * KG_PER_LB)
    }

    pub fn to_lbs(self) -> f64 {
        self.0 / KG_PER_LB
    }
}

impl Add for Kilograms {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}

impl Sub for Kilograms {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}

impl fmt::Display for Kilograms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} kg", self.0)
    }
}

/// A volume of beer.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Litres(pub f64);

impl Litres {
    pub fn from_us_gallons(gallons: f64) -> Self {
        Self(gallons * LITRES_PER_US_GALLON)
    }

    pub fn to_us_gallons(self) -> f64 {
        self.0 / LITRES_PER_US_GALLON
    }
}

impl Add for Litres {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}

impl Sub for Litres {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}

impl fmt::Display for Litres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} L", self.0)
    }
}

/// A percentage on the 0–100 scale (not 0–1). Whether it is clamped depends on what produced it.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Percent(pub f64);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %", self.0)
    }
}

/// A beer's density relative to water. Valid 0.9–1.2 (beers sit around 1.005–1.020), so a
/// value that exists can safely divide a net weight.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct SpecificGravity(f64);

impl SpecificGravity {
    pub const MIN: f64 = 0.9;
    pub const MAX: f64 = 1.2;
    /// Water, the seeds' default when a beer has no measured gravity.
    pub const WATER: Self = Self(1.0);

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for SpecificGravity {
    fn default() -> Self {
        Self::WATER
    }
}

impl TryFrom<f64> for SpecificGravity {
    type Error = UnitError;

    fn try_from(value: f64) -> Result<Self, UnitError> {
        // `contains` is false for NaN, so NaN is rejected too.
        if (Self::MIN..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(UnitError::SpecificGravityOutOfRange(value))
        }
    }
}

impl From<SpecificGravity> for f64 {
    fn from(sg: SpecificGravity) -> f64 {
        sg.0
    }
}

/// The volume of beer that weighs `net`: water is 1 kg per litre, so litres = kg / sg.
/// In gallons this is the seed formula `(net_kg / sg) × 0.264172`, with the exact factor.
pub fn volume_from_net(net: Kilograms, sg: SpecificGravity) -> Litres {
    Litres(net.0 / sg.0)
}

/// The mass of `volume` of beer at gravity `sg` (inverse of [`volume_from_net`]).
pub fn net_from_volume(volume: Litres, sg: SpecificGravity) -> Kilograms {
    Kilograms(volume.0 * sg.0)
}

/// Milliseconds since 1970-01-01T00:00:00Z: the one representation of an instant in this crate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct EpochMs(pub i64);

/// Milliseconds in `d`, saturating at `i64::MAX` (about 292 million years).
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl EpochMs {
    /// `self + d`, saturating instead of overflowing.
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_ms(d)))
    }

    /// `self - d`, saturating instead of overflowing.
    #[must_use]
    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_ms(d)))
    }

    /// Time from `earlier` to `self`; zero when `earlier` is not earlier (clock skew between a
    /// device and the server must never produce a negative age).
    pub fn saturating_since(self, earlier: Self) -> Duration {
        let ms = self.0.saturating_sub(earlier.0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Hours from `earlier` to `self`, negative when `earlier` is later.
    pub fn hours_since(self, earlier: Self) -> f64 {
        (self.0 as f64 - earlier.0 as f64) / 3_600_000.0
    }

    pub fn to_timestamp(self) -> Result<jiff::Timestamp, UnitError> {
        jiff::Timestamp::from_millisecond(self.0).map_err(|_| UnitError::InstantOutOfRange(self.0))
    }

    /// The instant of `ts`, truncated to the millisecond.
    pub fn from_timestamp(ts: jiff::Timestamp) -> Self {
        Self(ts.as_millisecond())
    }
}

impl Add<Duration> for EpochMs {
    type Output = Self;
    fn add(self, rhs: Duration) -> Self {
        self.plus(rhs)
    }
}

impl Sub<Duration> for EpochMs {
    type Output = Self;
    fn sub(self, rhs: Duration) -> Self {
        self.minus(rhs)
    }
}

impl From<jiff::Timestamp> for EpochMs {
    fn from(ts: jiff::Timestamp) -> Self {
        Self::from_timestamp(ts)
    }
}

impl fmt::Display for EpochMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_timestamp() {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "{} ms", self.0),
        }
    }
}

/// A location's display units. Internals stay SI; this only chooses how values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    #[default]
    Metric,
    Imperial,
}

impl Units {
    /// `volume` in this system's unit, with the unit's label: litres "L" or US gallons "gal".
    pub fn volume_display(self, volume: Litres) -> (f64, &'static str) {
        match self {
            Self::Metric => (volume.0, "L"),
            Self::Imperial => (volume.to_us_gallons(), "gal"),
        }
    }

    /// `weight` in this system's unit, with the unit's label: "kg" or "lb".
    pub fn weight_display(self, weight: Kilograms) -> (f64, &'static str) {
        match self {
            Self::Metric => (weight.0, "kg"),
            Self::Imperial => (weight.to_lbs(), "lb"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Relative-or-absolute closeness for float assertions.
    pub(crate) fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn exact_definitions() {
        assert!(close(Kilograms::from_lbs(1.0).0, 0.453_592_37, 1e-15));
        assert!(close(Kilograms::from_lbs(161.5).0, 73.255_167_755, 1e-12));
        assert!(close(
            Litres::from_us_gallons(15.5).0,
            58.673_882_652,
            1e-12
        ));
        assert!(close(Litres(3.785_411_784).to_us_gallons(), 1.0, 1e-15));
        assert!(close(Kilograms(1.0).to_lbs(), 2.204_622_621_848_776, 1e-12));
    }

    #[test]
    fn volume_matches_seed_formula() {
        // Seed: gallons = (net_kg / sg) × 0.264172. Guinness at 1.014, 40 kg net.
        let sg = SpecificGravity::try_from(1.014).unwrap();
        let net = Kilograms(40.0);
        let seed_gallons = (net.0 / sg.get()) * SEED_GALLONS_PER_LITRE;
        let ours = volume_from_net(net, sg);
        assert!(close(ours.0, 39.447_731_755, 1e-9));
        // The seed's factor is rounded to 6 significant digits; we agree to that precision.
        assert!(close(ours.to_us_gallons(), seed_gallons, 1e-6));
        assert!(close(net_from_volume(ours, sg).0, 40.0, 1e-12));
    }

    #[test]
    fn specific_gravity_bounds() {
        assert_eq!(SpecificGravity::default(), SpecificGravity::WATER);
        assert!(close(SpecificGravity::WATER.get(), 1.0, 0.0));
        assert!(SpecificGravity::try_from(0.9).is_ok());
        assert!(SpecificGravity::try_from(1.2).is_ok());
        assert_eq!(
            SpecificGravity::try_from(1.3),
            Err(UnitError::SpecificGravityOutOfRange(1.3))
        );
        assert!(SpecificGravity::try_from(0.89).is_err());
        assert!(SpecificGravity::try_from(f64::NAN).is_err());
        assert!(SpecificGravity::try_from(f64::INFINITY).is_err());
        let sg: SpecificGravity = serde_json::from_str("1.012").unwrap();
        assert!(close(sg.get(), 1.012, 1e-15));
        assert!(serde_json::from_str::<SpecificGravity>("2.5").is_err());
        assert_eq!(serde_json::to_string(&sg).unwrap(), "1.012");
    }

    #[test]
    fn epoch_ms_arithmetic_saturates() {
        let t = EpochMs(1_000);
        assert_eq!(t + Duration::from_secs(2), EpochMs(3_000));
        assert_eq!(t - Duration::from_secs(2), EpochMs(-1_000));
        assert_eq!(
            EpochMs(i64::MAX) + Duration::from_secs(1),
            EpochMs(i64::MAX)
        );
        assert_eq!(
            EpochMs(i64::MIN) - Duration::from_secs(1),
            EpochMs(i64::MIN)
        );
        assert_eq!(EpochMs(5_000).saturating_since(t), Duration::from_secs(4));
        assert_eq!(t.saturating_since(EpochMs(5_000)), Duration::ZERO);
        assert!(close(
            EpochMs(7_200_000).hours_since(EpochMs(0)),
            2.0,
            1e-15
        ));
        assert!(EpochMs(1) < EpochMs(2));
    }

    #[test]
    fn epoch_ms_timestamp_round_trip() {
        let t = EpochMs(1_773_835_200_123); // 2026-03-18T12:00:00.123Z
        let ts = t.to_timestamp().unwrap();
        assert_eq!(ts.to_string(), "2026-03-18T12:00:00.123Z");
        assert_eq!(EpochMs::from(ts), t);
        assert_eq!(t.to_string(), "2026-03-18T12:00:00.123Z");
        assert_eq!(
            EpochMs(i64::MAX).to_timestamp(),
            Err(UnitError::InstantOutOfRange(i64::MAX))
        );
        assert_eq!(serde_json::to_string(&t).unwrap(), "1773835200123");
    }

    #[test]
    fn display_units() {
        let (v, unit) = Units::Imperial.volume_display(Litres::from_us_gallons(7.75));
        assert!(close(v, 7.75, 1e-12));
        assert_eq!(unit, "gal");
        let (v, unit) = Units::Metric.volume_display(Litres(19.5));
        assert!(close(v, 19.5, 1e-15));
        assert_eq!(unit, "L");
        let (w, unit) = Units::Imperial.weight_display(Kilograms::from_lbs(87.0));
        assert!(close(w, 87.0, 1e-12));
        assert_eq!(unit, "lb");
        assert_eq!(Units::Metric.weight_display(Kilograms(3.0)).1, "kg");
        assert_eq!(
            serde_json::to_string(&Units::Imperial).unwrap(),
            "\"imperial\""
        );
        assert_eq!(Units::default(), Units::Metric);
    }

    proptest! {
        #[test]
        fn lbs_round_trip(lbs in -1.0e6f64..1.0e6) {
            prop_assert!(close(Kilograms::from_lbs(lbs).to_lbs(), lbs, 1e-12));
        }

        #[test]
        fn gallons_round_trip(gal in -1.0e6f64..1.0e6) {
            prop_assert!(close(Litres::from_us_gallons(gal).to_us_gallons(), gal, 1e-12));
        }

        #[test]
        fn volume_and_mass_round_trip(kg in 0.0f64..1.0e4, sg in 0.9f64..=1.2) {
            let sg = SpecificGravity::try_from(sg).unwrap();
            let back = net_from_volume(volume_from_net(Kilograms(kg), sg), sg);
            prop_assert!(close(back.0, kg, 1e-12));
        }
    }
}
