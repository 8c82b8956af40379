//! The keg on the platform: how much beer is left, pours drawing it down, and the wobble a
//! pour or a keg change leaves behind.
//!
//! Quantities are pounds because the device contract and the tare records are; volumes come in
//! as litres and are turned into mass with the beer's specific gravity. This module only does
//! physics on numbers it is given: it draws no random numbers and knows no clock.

use scalesense_domain::keg::KegType;

/// A bartender's faucet runs about two US fluid ounces a second.
pub const FLOW_L_PER_S: f64 = 0.06;
/// Spread (standard deviation, lb) of the load while beer is running: the handle is pulled,
/// the line surges, the keg rocks slightly.
pub const POUR_WOBBLE_LBS: f64 = 0.12;
/// The kick the keg gets when the handle snaps back at the end of a pour, lb.
pub const SETTLE_WOBBLE_LBS: f64 = 0.3;
/// A keg being set down on the platform, lb.
pub const PLACE_WOBBLE_LBS: f64 = 2.0;
/// Time constant of the settling after a disturbance, seconds.
pub const SETTLE_TAU_S: f64 = 1.2;

/// One keg as a physical object.
#[derive(Debug, Clone, PartialEq)]
pub struct KegSpec {
    pub kind: KegType,
    /// Gross weight of the empty keg, lb.
    pub empty_lbs: f64,
    /// Gross weight when full, lb.
    pub full_lbs: f64,
}

impl KegSpec {
    /// A keg weighing exactly the reference table's weights for its type (seed 002).
    pub fn reference(kind: KegType) -> Self {
        let weights = kind.reference_weights();
        Self {
            empty_lbs: weights.empty().to_lbs(),
            full_lbs: weights.full().to_lbs(),
            kind,
        }
    }

    /// Beer in the full keg, lb.
    pub fn contents_lbs(&self) -> f64 {
        self.full_lbs - self.empty_lbs
    }
}

/// What bartenders pour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PourSize {
    /// A US pint, 16 fl oz.
    Pint,
    /// A half pint (UK-style 10 fl oz glass).
    Half,
    /// A 64 fl oz pitcher.
    Pitcher,
}

impl PourSize {
    pub const fn litres(self) -> f64 {
        match self {
            Self::Pint => 0.473,
            Self::Half => 0.284,
            Self::Pitcher => 1.9,
        }
    }

    /// The size of a pour, from a uniform `u` in `[0, 1)`: mostly pints, some halves, the
    /// occasional pitcher.
    pub fn from_uniform(u: f64) -> Self {
        if u < 0.70 {
            Self::Pint
        } else if u < 0.93 {
            Self::Half
        } else {
            Self::Pitcher
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ActivePour {
    remaining_lbs: f64,
    lbs_per_s: f64,
}

/// What one step of the keg produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KegStep {
    /// Load on the platform (keg and beer, plus the wobble), lb.
    pub load_lbs: f64,
    /// Beer that left the keg during the step, lb.
    pub poured_lbs: f64,
    /// A pour ended during the step.
    pub pour_finished: bool,
    /// The keg ran dry during the step.
    pub kicked: bool,
}

/// The keg on the platform (or, between a removal and a placement, none).
#[derive(Debug, Clone, PartialEq)]
pub struct KegPhysics {
    spec: KegSpec,
    beer_lbs: f64,
    on_platform: bool,
    pour: Option<ActivePour>,
    /// Current spread of the disturbance, lb; decays while nothing moves.
    wobble_lbs: f64,
}

impl KegPhysics {
    /// A keg of `spec` on the platform, `level` (0–1) full, at rest.
    pub fn new(spec: KegSpec, level: f64) -> Self {
        let beer_lbs = spec.contents_lbs() * level.clamp(0.0, 1.0);
        Self {
            spec,
            beer_lbs,
            on_platform: true,
            pour: None,
            wobble_lbs: 0.0,
        }
    }

    pub fn spec(&self) -> &KegSpec {
        &self.spec
    }

    /// Beer left, lb.
    pub fn beer_lbs(&self) -> f64 {
        self.beer_lbs
    }

    /// Beer left as a fraction of the full keg's contents (0–1).
    pub fn level(&self) -> f64 {
        self.beer_lbs / self.spec.contents_lbs()
    }

    pub fn is_pouring(&self) -> bool {
        self.pour.is_some()
    }

    pub fn is_kicked(&self) -> bool {
        self.beer_lbs <= 0.0
    }

    pub fn on_platform(&self) -> bool {
        self.on_platform
    }

    /// Starts drawing `lbs` of beer at `lbs_per_s`. Refused (returns `false`) while a pour
    /// runs, when the keg is dry or off the platform.
    pub fn start_pour(&mut self, lbs: f64, lbs_per_s: f64) -> bool {
        if self.pour.is_some() || self.is_kicked() || !self.on_platform || lbs <= 0.0 {
            return false;
        }
        self.pour = Some(ActivePour {
            remaining_lbs: lbs,
            lbs_per_s: lbs_per_s.max(f64::MIN_POSITIVE),
        });
        true
    }

    /// Staff lift the keg off the platform.
    pub fn remove(&mut self) {
        self.on_platform = false;
        self.pour = None;
        self.wobble_lbs = PLACE_WOBBLE_LBS;
    }

    /// Staff set a full keg of `spec` on the platform.
    pub fn place(&mut self, spec: KegSpec) {
        self.beer_lbs = spec.contents_lbs();
        self.spec = spec;
        self.on_platform = true;
        self.pour = None;
        self.wobble_lbs = PLACE_WOBBLE_LBS;
    }

    /// Advances `dt_ms`. `jitter` is a standard normal draw that scales the wobble, so the
    /// caller's generator decides the noise and this stays deterministic.
    pub fn step(&mut self, dt_ms: u64, jitter: f64) -> KegStep {
        let dt_s = dt_ms as f64 / 1_000.0;
        let mut out = KegStep {
            load_lbs: 0.0,
            poured_lbs: 0.0,
            pour_finished: false,
            kicked: false,
        };
        if let Some(pour) = &mut self.pour {
            let take = (pour.lbs_per_s * dt_s)
                .min(pour.remaining_lbs)
                .min(self.beer_lbs);
            self.beer_lbs -= take;
            pour.remaining_lbs -= take;
            out.poured_lbs = take;
            self.wobble_lbs = self.wobble_lbs.max(POUR_WOBBLE_LBS);
            if self.beer_lbs <= 0.0 {
                self.beer_lbs = 0.0;
                out.kicked = true;
            }
            if pour.remaining_lbs <= 0.0 || out.kicked {
                self.pour = None;
                out.pour_finished = true;
                self.wobble_lbs = SETTLE_WOBBLE_LBS;
            }
        } else {
            self.wobble_lbs *= (-dt_s / SETTLE_TAU_S).exp();
        }
        let wobble = self.wobble_lbs * jitter;
        out.load_lbs = if self.on_platform {
            self.spec.empty_lbs + self.beer_lbs + wobble
        } else {
            // Someone's hand brushing the empty platform.
            wobble * 0.1
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarter() -> KegSpec {
        KegSpec::reference(KegType::QuarterBarrel)
    }

    #[test]
    fn reference_specs_match_seed_002() {
        let half = KegSpec::reference(KegType::HalfBarrel);
        assert!((half.full_lbs - 161.5).abs() < 1e-9);
        assert!((half.empty_lbs - 29.0).abs() < 1e-9);
        let slim = KegSpec::reference(KegType::SlimQuarter);
        assert!((slim.contents_lbs() - 67.0).abs() < 1e-9);
    }

    #[test]
    fn pour_sizes_are_real_glasses() {
        assert!((PourSize::Pint.litres() - 0.473).abs() < 1e-12);
        assert!((PourSize::Half.litres() - 0.284).abs() < 1e-12);
        assert!((PourSize::Pitcher.litres() - 1.9).abs() < 1e-12);
        assert_eq!(PourSize::from_uniform(0.0), PourSize::Pint);
        assert_eq!(PourSize::from_uniform(0.8), PourSize::Half);
        assert_eq!(PourSize::from_uniform(0.99), PourSize::Pitcher);
    }

    #[test]
    fn a_pour_draws_down_the_keg_at_the_flow_rate_then_settles() {
        let mut keg = KegPhysics::new(quarter(), 0.5);
        let before = keg.beer_lbs();
        assert!(keg.start_pour(1.0, 0.25));
        assert!(!keg.start_pour(1.0, 0.25), "one pour at a time");
        let first = keg.step(500, 0.0);
        assert!((first.poured_lbs - 0.125).abs() < 1e-9);
        let mut finished_after = 0;
        for i in 1..20 {
            if keg.step(500, 0.0).pour_finished {
                finished_after = i;
                break;
            }
        }
        assert_eq!(finished_after, 7, "1 lb at 0.25 lb/s takes 4 s");
        assert!((before - keg.beer_lbs() - 1.0).abs() < 1e-9);
        // The wobble decays once nothing runs: after 10 s it is gone.
        for _ in 0..20 {
            keg.step(500, 1.0);
        }
        let settled = keg.step(500, 1.0);
        assert!(
            (settled.load_lbs - (22.0 + keg.beer_lbs())).abs() < 0.01,
            "{settled:?}"
        );
    }

    #[test]
    fn a_pour_larger_than_the_rest_kicks_the_keg() {
        let mut keg = KegPhysics::new(quarter(), 0.005);
        assert!(keg.start_pour(2.0, 1.0));
        let step = keg.step(500, 0.0);
        assert!(step.kicked && step.pour_finished);
        assert!(keg.is_kicked());
        assert!(
            !keg.start_pour(1.0, 1.0),
            "nothing to pour from a kicked keg"
        );
        assert!((step.load_lbs - 22.0).abs() < 1e-9);
    }

    #[test]
    fn removing_and_placing_swaps_the_keg() {
        let mut keg = KegPhysics::new(quarter(), 0.0);
        keg.remove();
        assert!(!keg.on_platform());
        assert!(keg.step(500, 0.0).load_lbs.abs() < 1e-9);
        keg.place(quarter());
        assert!((keg.level() - 1.0).abs() < 1e-12);
        for _ in 0..40 {
            keg.step(500, 1.0);
        }
        assert!((keg.step(500, 0.0).load_lbs - 87.0).abs() < 1e-9);
    }
}
