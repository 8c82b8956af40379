//! Wi-Fi as the scale sees it: a signal strength that wanders around a seeded level (a
//! walk-in cooler is a poor place for a radio), and short outages at seeded times during which
//! the scale cannot reach the broker.
//!
//! It only says whether the link is up; dropping and restoring the MQTT connection is the
//! runner's job.

use rand::Rng;

use super::random::{exponential, normal, uniform};

/// Outage timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutageProfile {
    /// Mean time between outages, hours.
    pub mean_hours_between: f64,
    /// Shortest and longest outage, minutes.
    pub minutes: (f64, f64),
}

impl Default for OutageProfile {
    /// About one outage a day per scale, lasting one to six minutes.
    fn default() -> Self {
        Self {
            mean_hours_between: 20.0,
            minutes: (1.0, 6.0),
        }
    }
}

/// The radio.
#[derive(Debug, Clone, PartialEq)]
pub struct Radio {
    profile: OutageProfile,
    base_dbm: f64,
    dbm: f64,
    next_outage_ms: u64,
    outage_until_ms: Option<u64>,
}

impl Radio {
    pub fn new(profile: OutageProfile, start_ms: u64, rng: &mut impl Rng) -> Self {
        let base_dbm = uniform(rng, -78.0, -52.0);
        let mut radio = Self {
            profile,
            base_dbm,
            dbm: base_dbm,
            next_outage_ms: 0,
            outage_until_ms: None,
        };
        radio.next_outage_ms = radio.gap_from(start_ms, rng);
        radio
    }

    pub fn link_up(&self) -> bool {
        self.outage_until_ms.is_none()
    }

    /// The signal strength, dBm.
    pub fn rssi(&self) -> i16 {
        self.dbm.round().clamp(-95.0, -30.0) as i16
    }

    /// Advances to `at_ms`; returns the new link state when it changed.
    pub fn step(&mut self, at_ms: u64, rng: &mut impl Rng) -> Option<bool> {
        // A mean-reverting walk: people and kegs moving about the cooler.
        self.dbm += 0.02 * (self.base_dbm - self.dbm) + 0.3 * normal(rng);
        match self.outage_until_ms {
            Some(until) if at_ms >= until => {
                self.outage_until_ms = None;
                self.next_outage_ms = self.gap_from(at_ms, rng);
                Some(true)
            }
            None if at_ms >= self.next_outage_ms => {
                let (lo, hi) = self.profile.minutes;
                let minutes = uniform(rng, lo, hi);
                self.outage_until_ms = Some(at_ms + (minutes * 60_000.0) as u64);
                Some(false)
            }
            _ => None,
        }
    }

    fn gap_from(&self, at_ms: u64, rng: &mut impl Rng) -> u64 {
        let hours = exponential(rng, self.profile.mean_hours_between);
        at_ms + (hours * 3_600_000.0).max(60_000.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn outages_come_and_go_at_the_profiled_rate() {
        let mut rng = StdRng::seed_from_u64(5);
        let profile = OutageProfile {
            mean_hours_between: 2.0,
            minutes: (1.0, 6.0),
        };
        let start = 1_773_835_200_000u64;
        let mut radio = Radio::new(profile, start, &mut rng);
        let (mut downs, mut ups, mut down_since) = (0, 0, None);
        for i in 1..=(100 * 3_600 * 2) {
            let t = start + i * 500;
            match radio.step(t, &mut rng) {
                Some(false) => {
                    downs += 1;
                    down_since = Some(t);
                }
                Some(true) => {
                    ups += 1;
                    let lasted = t - down_since.take().unwrap();
                    assert!(
                        (60_000..=360_500).contains(&lasted),
                        "outage of {lasted} ms"
                    );
                }
                None => {}
            }
            assert!((-95..=-30).contains(&radio.rssi()));
        }
        assert!((35..=70).contains(&downs), "{downs} outages in 100 h");
        assert!(ups + 1 >= downs && ups <= downs);
    }
}
