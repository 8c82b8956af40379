//! Who each virtual scale is: its device id and tap, the keg type and beer on it, its load
//! cell's constants and the factory settings it boots with — all drawn from the fleet seed, so
//! the same `--seed` sets up the same bar.
//!
//! Pure data: nothing here runs or talks to anything.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scalesense_domain::keg::KegType;
use scalesense_firmware_core::DeviceConfig;
use scalesense_firmware_core::calibration::{Calibration, Tare, TareRecord};
use scalesense_firmware_core::settings::Settings;
use scalesense_proto::payload::VersionString;
use scalesense_proto::{DeviceId, IdError, LocationId, TapId};

use crate::world::cell::CellSpec;
use crate::world::keg::KegSpec;
use crate::world::random::{scale_seed, uniform};

/// The firmware version virtual scales report.
pub const FIRMWARE_VERSION: &str = concat!("sim-", env!("CARGO_PKG_VERSION"));
/// The cooler's set point, °C (38 °F), where the cells were calibrated.
pub const COOLER_SETPOINT_C: f64 = 3.0;
/// The reference weight used at the factory calibration, lb.
pub const FACTORY_WEIGHT_LBS: f64 = 50.0;
/// The most taps a location can number (`#TAP#999`).
pub const MAX_SCALES: u32 = 999;

/// A beer on tap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beer {
    pub name: &'static str,
    pub specific_gravity: f64,
}

/// The beers the simulator puts on; the gravities are seed 002's examples and typical values.
pub const BEERS: [Beer; 8] = [
    Beer {
        name: "Coors Light",
        specific_gravity: 1.007,
    },
    Beer {
        name: "Modelo Especial",
        specific_gravity: 1.010,
    },
    Beer {
        name: "Sierra Nevada Pale Ale",
        specific_gravity: 1.012,
    },
    Beer {
        name: "Lagunitas IPA",
        specific_gravity: 1.013,
    },
    Beer {
        name: "Guinness Draught",
        specific_gravity: 1.014,
    },
    Beer {
        name: "Blue Moon Belgian White",
        specific_gravity: 1.012,
    },
    Beer {
        name: "Stella Artois",
        specific_gravity: 1.010,
    },
    Beer {
        name: "Allagash White",
        specific_gravity: 1.011,
    },
];

/// Why a fleet cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("device number {number} does not make a device id: {source}")]
    DeviceId { number: u32, source: IdError },
    #[error("tap {number} at {location} does not make a tap id: {source}")]
    TapId {
        number: u32,
        location: LocationId,
        source: IdError,
    },
}

/// One virtual scale, as set up before it boots.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePlan {
    /// Position in the fleet, from 0.
    pub index: u32,
    pub device_id: DeviceId,
    pub tap_id: TapId,
    /// Seeds this scale's world.
    pub seed: u64,
    /// The keg on the scale at the start; the factory tare was taken with its weights.
    pub keg: KegSpec,
    pub beer: Beer,
    pub cell: CellSpec,
    /// Fill of the first keg, 0–1.
    pub initial_level: f64,
    /// How much this tap pours relative to an average one.
    pub popularity: f64,
}

/// `SCALE-0042` for 42.
pub fn device_id(number: u32) -> Result<DeviceId, PlanError> {
    DeviceId::try_from(format!("SCALE-{number:04}").as_str())
        .map_err(|source| PlanError::DeviceId { number, source })
}

impl ScalePlan {
    /// Scale `index` of a fleet seeded with `fleet_seed`: device `SCALE-{device_number}` on
    /// tap `index + 1` of `location`. Keg type, beer and cell depend on the seed and index
    /// only, not on the numbering.
    pub fn new(
        fleet_seed: u64,
        index: u32,
        device_number: u32,
        location: &LocationId,
    ) -> Result<Self, PlanError> {
        let tap_number = index + 1;
        let tap_id = u16::try_from(tap_number)
            .map_err(|_| IdError::TooLong {
                kind: "tap id",
                max: TapId::MAX_LEN,
            })
            .and_then(|n| TapId::new(location, n))
            .map_err(|source| PlanError::TapId {
                number: tap_number,
                location: location.clone(),
                source,
            })?;
        let seed = scale_seed(fleet_seed, index);
        // The plan draws from its own stream, so the world's stream (from `seed`) is untouched.
        let mut rng = StdRng::seed_from_u64(!seed);
        let kind = match rng.random::<f64>() {
            u if u < 0.35 => KegType::HalfBarrel,
            u if u < 0.60 => KegType::QuarterBarrel,
            u if u < 0.85 => KegType::SixthBarrel,
            _ => KegType::SlimQuarter,
        };
        let beer = BEERS[rng.random_range(0..BEERS.len())];
        let cell = CellSpec {
            zero_offset: rng.random_range(-150_000..=150_000),
            counts_per_lb: CellSpec::counts_per_lb_from_kg(uniform(&mut rng, 20_000.0, 25_000.0)),
            temp_coeff_per_c: uniform(&mut rng, 0.0002, 0.0006),
            reference_temp_c: COOLER_SETPOINT_C,
            noise_lbs: 0.01,
        };
        Ok(Self {
            index,
            device_id: device_id(device_number)?,
            tap_id,
            seed,
            keg: KegSpec::reference(kind),
            beer,
            cell,
            initial_level: uniform(&mut rng, 0.15, 0.95),
            popularity: uniform(&mut rng, 0.4, 1.6),
        })
    }

    /// Identity for the firmware.
    pub fn device_config(&self) -> DeviceConfig {
        DeviceConfig {
            device_id: self.device_id.clone(),
            // Cannot fail: the version is a short constant.
            firmware_version: VersionString::try_from(FIRMWARE_VERSION).unwrap_or_default(),
        }
    }

    /// What the scale has in flash when it first boots: calibrated at the factory, the
    /// temperature coefficient characterised, and the current keg tared empty and full, so
    /// `level_pct` is right from the first reading.
    pub fn initial_settings(&self) -> Settings {
        let cell = &self.cell;
        let record = |lbs: f64| TareRecord {
            raw: cell.ideal_raw(lbs),
            lbs,
        };
        Settings {
            calibration: Some(Calibration {
                zero_offset: cell.zero_offset,
                counts_per_lb: cell.counts_per_lb,
                known_weight_lbs: Some(FACTORY_WEIGHT_LBS),
                reference_temp_c: Some(cell.reference_temp_c),
            }),
            tare: Tare {
                empty: Some(record(self.keg.empty_lbs)),
                full: Some(record(self.keg.full_lbs)),
            },
            temp_coeff: cell.temp_coeff_per_c,
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalesense_proto::TareStatus;

    fn loc() -> LocationId {
        LocationId::try_from("loc-001").unwrap()
    }

    #[test]
    fn ids_follow_the_seeds_shapes() {
        let plan = ScalePlan::new(1, 2, 3, &loc()).unwrap();
        assert_eq!(plan.device_id.as_str(), "SCALE-0003");
        assert_eq!(plan.tap_id.as_str(), "loc-001#TAP#03");
        assert_eq!(device_id(12_345).unwrap().as_str(), "SCALE-12345");
        assert!(matches!(
            ScalePlan::new(1, 999, 1_000, &loc()),
            Err(PlanError::TapId { number: 1_000, .. })
        ));
    }

    #[test]
    fn a_fleet_mixes_keg_types_and_beers_deterministically() {
        let plans: Vec<ScalePlan> = (0..24)
            .map(|i| ScalePlan::new(1, i, i + 1, &loc()).unwrap())
            .collect();
        let again: Vec<ScalePlan> = (0..24)
            .map(|i| ScalePlan::new(1, i, i + 1, &loc()).unwrap())
            .collect();
        assert_eq!(plans, again);
        let kinds: std::collections::BTreeSet<&str> =
            plans.iter().map(|p| p.keg.kind.name()).collect();
        assert_eq!(
            kinds.len(),
            4,
            "all four keg types among 24 taps: {kinds:?}"
        );
        let beers: std::collections::BTreeSet<&str> = plans.iter().map(|p| p.beer.name).collect();
        assert!(beers.len() >= 5, "{beers:?}");
        let other_seed = ScalePlan::new(2, 0, 1, &loc()).unwrap();
        assert_ne!(other_seed.seed, plans[0].seed);
        for p in &plans {
            let per_kg = p.cell.counts_per_kg();
            assert!((20_000.0..25_000.0).contains(&per_kg), "{per_kg}");
            assert!((0.15..0.95).contains(&p.initial_level));
        }
    }

    #[test]
    fn factory_settings_give_a_level_from_the_first_reading() {
        let plan = ScalePlan::new(1, 0, 1, &loc()).unwrap();
        let settings = plan.initial_settings();
        let calibration = settings.calibration.unwrap();
        assert!(calibration.is_calibrated());
        assert_eq!(settings.tare.status(), TareStatus::Complete);
        let half = 0.5 * (plan.keg.empty_lbs + plan.keg.full_lbs);
        let level = settings.tare.level_pct(half, &calibration).unwrap();
        assert!((level - 50.0).abs() < 0.01, "{level}");
        assert!((settings.temp_coeff - plan.cell.temp_coeff_per_c).abs() < f64::EPSILON);
        assert_eq!(
            plan.device_config().firmware_version.as_str(),
            FIRMWARE_VERSION
        );
    }
}
