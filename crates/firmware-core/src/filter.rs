//! Turning noisy load-cell samples into a weight worth reporting.
//!
//! Stages, in order: a sliding median over raw counts throws out single-sample spikes (a
//! knock on the keg, a radio burst on the wires); an exponential moving average smooths what
//! is left; a stability detector says whether the weight has stayed within a small band long
//! enough to trust (a pour in progress is not stable); and a temperature hook removes the
//! drift a load cell shows as the cooler cycles.
//!
//! Everything here is plain arithmetic on values passed in: no clock reads, no allocation.

/// Sliding median over the last `N` raw samples.
#[derive(Debug, Clone)]
pub struct Median<const N: usize> {
    window: [i32; N],
    len: usize,
    next: usize,
}

impl<const N: usize> Default for Median<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Median<N> {
    pub const fn new() -> Self {
        const { assert!(N > 0, "a median needs a window of at least one sample") };
        Self {
            window: [0; N],
            len: 0,
            next: 0,
        }
    }

    /// Adds a sample and returns the median of the samples held so far (the lower middle when
    /// the count is even, so the result is always a sample that was really seen).
    pub fn push(&mut self, sample: i32) -> i32 {
        self.window[self.next] = sample;
        self.next = (self.next + 1) % N;
        self.len = (self.len + 1).min(N);
        let mut sorted = self.window;
        let held = &mut sorted[..self.len];
        held.sort_unstable();
        held[(self.len - 1) / 2]
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
    }
}

/// Exponential moving average: `y += alpha × (x − y)`; the first sample passes through.
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    alpha: f64,
    value: Option<f64>,
}

impl Ema {
    /// `alpha` in (0, 1]; 1 means no smoothing. Values outside are clamped into that range.
    pub fn new(alpha: f64) -> Self {
        Self {
            alpha: alpha.clamp(f64::MIN_POSITIVE, 1.0),
            value: None,
        }
    }

    pub fn push(&mut self, x: f64) -> f64 {
        let y = match self.value {
            Some(y) => y + self.alpha * (x - y),
            None => x,
        };
        self.value = Some(y);
        y
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }

    pub fn reset(&mut self) {
        self.value = None;
    }
}

/// Says whether a value has stayed within `band` (max − min) for at least `dwell_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Stability {
    band: f64,
    dwell_ms: u64,
    window: Option<StableWindow>,
}

#[derive(Debug, Clone, Copy)]
struct StableWindow {
    since_ms: u64,
    min: f64,
    max: f64,
}

impl Stability {
    pub const fn new(band: f64, dwell_ms: u64) -> Self {
        Self {
            band,
            dwell_ms,
            window: None,
        }
    }

    /// Adds a value observed at `now_ms` and returns whether the value is now stable. When a
    /// value leaves the band, the window restarts at that value, so a pour resets the dwell.
    pub fn push(&mut self, now_ms: u64, value: f64) -> bool {
        let window = match self.window {
            Some(w) if w.max.max(value) - w.min.min(value) <= self.band => StableWindow {
                since_ms: w.since_ms,
                min: w.min.min(value),
                max: w.max.max(value),
            },
            _ => StableWindow {
                since_ms: now_ms,
                min: value,
                max: value,
            },
        };
        self.window = Some(window);
        self.is_stable(now_ms)
    }

    pub fn is_stable(&self, now_ms: u64) -> bool {
        self.window
            .is_some_and(|w| now_ms.saturating_sub(w.since_ms) >= self.dwell_ms)
    }

    pub fn reset(&mut self) {
        self.window = None;
    }
}

/// Temperature drift correction. `coeff` is the fractional change of the reading per °C
/// (`set_config temp_coeff`, e.g. `0.0005` = +0.05 %/°C), so a cell that reads
/// `true × (1 + coeff × (t − t_ref))` is corrected by dividing that factor out.
///
/// `t_ref` is the temperature at calibration. When either temperature is unknown, the
/// coefficient is zero, or the factor would not be positive, the weight passes through.
pub fn compensate_temperature(
    weight_lbs: f64,
    coeff_per_c: f64,
    temp_c: Option<f64>,
    reference_c: Option<f64>,
) -> f64 {
    match (temp_c, reference_c) {
        (Some(t), Some(t_ref)) if coeff_per_c != 0.0 => {
            let factor = 1.0 + coeff_per_c * (t - t_ref);
            if factor > 0.0 && factor.is_finite() {
                weight_lbs / factor
            } else {
                weight_lbs
            }
        }
        _ => weight_lbs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_rejects_a_single_spike() {
        let mut m = Median::<5>::new();
        for s in [100, 101, 99, 100] {
            m.push(s);
        }
        assert_eq!(m.push(50_000), 100);
        assert_eq!(m.push(100), 100);
    }

    #[test]
    fn median_of_partial_window_uses_lower_middle() {
        let mut m = Median::<5>::new();
        assert_eq!(m.push(10), 10);
        assert_eq!(m.push(30), 10);
        assert_eq!(m.push(20), 20);
        m.clear();
        assert_eq!(m.push(-7), -7);
    }

    #[test]
    fn median_window_slides() {
        let mut m = Median::<3>::new();
        for s in [1, 2, 3] {
            m.push(s);
        }
        // Window is now 10, 11, 3 after two pushes: 1 and 2 fell out.
        m.push(10);
        assert_eq!(m.push(11), 10);
    }

    #[test]
    fn ema_converges_and_first_sample_passes_through() {
        let mut e = Ema::new(0.5);
        assert!((e.push(10.0) - 10.0).abs() < f64::EPSILON);
        assert!((e.push(20.0) - 15.0).abs() < 1e-12);
        for _ in 0..60 {
            e.push(20.0);
        }
        assert!((e.value().unwrap() - 20.0).abs() < 1e-9);
        e.reset();
        assert_eq!(e.value(), None);
    }

    #[test]
    fn stability_needs_dwell_within_band() {
        let mut s = Stability::new(0.2, 3_000);
        assert!(!s.push(0, 50.0));
        assert!(!s.push(1_000, 50.1));
        assert!(!s.push(2_000, 49.95));
        assert!(s.push(3_000, 50.05));
        // A pour moves the weight out of the band: stability restarts.
        assert!(!s.push(4_000, 48.0));
        assert!(!s.push(6_000, 48.1));
        assert!(s.push(7_000, 48.0));
        s.reset();
        assert!(!s.is_stable(10_000));
    }

    #[test]
    fn stability_band_is_total_spread_not_step() {
        // Slow creep: each step is small but the spread grows past the band.
        let mut s = Stability::new(0.2, 2_000);
        s.push(0, 10.0);
        s.push(1_000, 10.15);
        assert!(
            !s.push(2_000, 10.3),
            "spread 0.3 > 0.2 must restart the window"
        );
    }

    #[test]
    fn temperature_compensation_removes_linear_drift() {
        // +0.1 %/°C, 5 °C warmer than at calibration: the cell reads 0.5 % high.
        let w = compensate_temperature(100.5, 0.001, Some(25.0), Some(20.0));
        assert!((w - 100.0).abs() < 1e-9, "{w}");
        let colder = compensate_temperature(99.5, 0.001, Some(15.0), Some(20.0));
        assert!((colder - 100.0).abs() < 1e-9, "{colder}");
        assert!((compensate_temperature(100.5, 0.001, None, Some(20.0)) - 100.5).abs() < 1e-12);
        assert!((compensate_temperature(100.5, 0.0, Some(5.0), Some(20.0)) - 100.5).abs() < 1e-12);
    }
}
