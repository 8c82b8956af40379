//! The walk-in cooler's air temperature at the load cell: the compressor cycles it about a
//! degree either side of the set point, and during opening hours the door lets warm air in.
//!
//! The temperature feeds the virtual cell's span drift and the firmware's compensation; this
//! module never decides anything else.

use core::f64::consts::TAU;

use rand::Rng;

use super::random::{normal, uniform};

/// Amplitude of the compressor cycle, °C.
pub const CYCLE_AMPLITUDE_C: f64 = 1.0;
/// Warming from one door opening, °C.
const DOOR_BUMP_C: f64 = 0.3;
/// Door openings per hour while the bar is open.
const DOOR_OPENINGS_PER_HOUR: f64 = 4.0;
/// How fast a door bump fades, seconds.
const DOOR_TAU_S: f64 = 180.0;

/// The cooler.
#[derive(Debug, Clone, PartialEq)]
pub struct Cooler {
    setpoint_c: f64,
    period_ms: f64,
    phase: f64,
    door_c: f64,
}

impl Cooler {
    /// A cooler at `setpoint_c` with a seeded cycle length (25–45 min) and phase.
    pub fn new(setpoint_c: f64, rng: &mut impl Rng) -> Self {
        Self {
            setpoint_c,
            period_ms: uniform(rng, 25.0, 45.0) * 60_000.0,
            phase: uniform(rng, 0.0, TAU),
            door_c: 0.0,
        }
    }

    pub fn setpoint_c(&self) -> f64 {
        self.setpoint_c
    }

    /// The temperature at `at_ms` (epoch), after `dt_ms`; `open` says whether staff walk in.
    pub fn step(&mut self, at_ms: u64, dt_ms: u64, open: bool, rng: &mut impl Rng) -> f64 {
        let dt_s = dt_ms as f64 / 1_000.0;
        self.door_c *= (-dt_s / DOOR_TAU_S).exp();
        if open && rng.random::<f64>() < DOOR_OPENINGS_PER_HOUR * dt_s / 3_600.0 {
            self.door_c += DOOR_BUMP_C;
        }
        // `at_ms` modulo the period keeps the angle small and exact over years of epoch time.
        let angle = (at_ms as f64 % self.period_ms) / self.period_ms * TAU + self.phase;
        let cycle = CYCLE_AMPLITUDE_C * angle.sin();
        self.setpoint_c + cycle + self.door_c.min(0.5) + 0.01 * normal(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn cycles_about_a_degree_around_the_setpoint() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut cooler = Cooler::new(3.0, &mut rng);
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        let start = 1_773_835_200_000u64;
        for i in 0..(4 * 3_600 * 2) {
            let t = cooler.step(start + i * 500, 500, true, &mut rng);
            lo = lo.min(t);
            hi = hi.max(t);
        }
        assert!(lo > 1.8 && lo < 2.2, "coldest {lo}");
        assert!(hi > 3.8 && hi < 4.6, "warmest {hi}");
    }
}
