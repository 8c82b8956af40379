//! The scale's LiPo (seed 000: 5000 mAh): it drains over days, and when it runs low staff
//! recharge it on their own schedule (it comes back full).
//!
//! Voltages follow the same discharge curve the firmware uses to estimate the charge, so the
//! percentage a scale reports tracks the simulated state of charge. Never below 3.0 V or above
//! 4.2 V: the protection circuit and the charger see to that on a real cell.

use rand::Rng;
use scalesense_firmware_core::battery::percent_for_volts;

use super::random::uniform;

/// Cell capacity, mAh.
pub const CAPACITY_MAH: f64 = 5_000.0;
/// Lowest and highest cell voltage, mV.
pub const MIN_MV: u32 = 3_000;
pub const MAX_MV: u32 = 4_200;

/// The battery.
#[derive(Debug, Clone, PartialEq)]
pub struct BatteryModel {
    /// State of charge, 0–1.
    soc: f64,
    /// Average draw, mA (modem sleep with Wi-Fi between readings).
    draw_ma: f64,
    /// Staff notice a low battery below this charge…
    recharge_below: f64,
    /// …and recharge it at this time (epoch ms) once noticed.
    recharge_at: Option<u64>,
}

impl BatteryModel {
    /// A battery at a seeded charge (35–100 %), draw (25–45 mA) and low threshold (15–30 %).
    pub fn new(rng: &mut impl Rng) -> Self {
        Self {
            soc: uniform(rng, 0.35, 1.0),
            draw_ma: uniform(rng, 25.0, 45.0),
            recharge_below: uniform(rng, 0.15, 0.30),
            recharge_at: None,
        }
    }

    /// State of charge, 0–1.
    pub fn soc(&self) -> f64 {
        self.soc
    }

    /// Advances `dt_ms` to `at_ms`; `true` when the battery was recharged during the step.
    pub fn step(&mut self, at_ms: u64, dt_ms: u64, rng: &mut impl Rng) -> bool {
        let hours = dt_ms as f64 / 3_600_000.0;
        self.soc = (self.soc - self.draw_ma * hours / CAPACITY_MAH).max(0.0);
        match self.recharge_at {
            Some(at) if at_ms >= at => {
                self.soc = 1.0;
                self.recharge_at = None;
                return true;
            }
            None if self.soc < self.recharge_below => {
                // Someone notices within 1–8 hours; even at the highest draw that costs at
                // most 7 % of the charge, so the cell never nears its cut-off.
                let delay_h = uniform(rng, 1.0, 8.0);
                self.recharge_at = Some(at_ms + (delay_h * 3_600_000.0) as u64);
            }
            _ => {}
        }
        false
    }

    /// The cell voltage, mV.
    pub fn cell_millivolts(&self) -> u32 {
        (volts_for_percent(self.soc * 100.0) * 1_000.0)
            .round()
            .clamp(f64::from(MIN_MV), f64::from(MAX_MV)) as u32
    }
}

/// The voltage at which the firmware's discharge curve reads `percent` (the inverse of
/// [`percent_for_volts`], by bisection: the curve is monotonic).
pub fn volts_for_percent(percent: f64) -> f64 {
    let (mut lo, mut hi) = (f64::from(MIN_MV) / 1_000.0, f64::from(MAX_MV) / 1_000.0);
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if percent_for_volts(mid) < percent {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn voltage_inverts_the_firmware_curve() {
        for pct in [0.0, 5.0, 37.5, 50.0, 80.0, 100.0] {
            let v = volts_for_percent(pct);
            assert!((percent_for_volts(v) - pct).abs() < 0.01, "{pct} % → {v} V");
        }
        assert!((volts_for_percent(50.0) - 3.84).abs() < 1e-6);
    }

    #[test]
    fn drains_over_days_and_is_recharged_when_low() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut battery = BatteryModel::new(&mut rng);
        let start_soc = battery.soc();
        let minute = 60_000;
        let mut t = 1_773_835_200_000u64;
        let mut recharges = 0;
        let mut lowest = f64::MAX;
        // A month, a minute at a time.
        for _ in 0..(30 * 24 * 60) {
            t += minute;
            if battery.step(t, minute, &mut rng) {
                recharges += 1;
                assert!((battery.soc() - 1.0).abs() < f64::EPSILON);
            }
            lowest = lowest.min(battery.soc());
            let mv = battery.cell_millivolts();
            assert!((MIN_MV..=MAX_MV).contains(&mv), "{mv} mV");
        }
        assert!(recharges >= 3, "{recharges} recharges in a month");
        assert!(lowest > 0.05, "lowest charge {lowest}");
        // One day drains between 12 % and 22 % (25–45 mA of 5000 mAh).
        let mut fresh = BatteryModel::new(&mut StdRng::seed_from_u64(11));
        let before = fresh.soc();
        fresh.step(t, 24 * 3_600_000, &mut rng);
        let used = before - fresh.soc();
        assert!((0.11..0.22).contains(&used), "used {used} in a day");
        assert!(start_soc >= 0.35);
    }
}
