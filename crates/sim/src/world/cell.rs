//! The virtual load cell and its HX711: pounds on the platform in, raw 24-bit counts out, with
//! the imperfections the firmware has to cope with — a zero offset, a scale factor, a
//! temperature-dependent span, electrical noise and the odd spike.
//!
//! It turns numbers into numbers; the noise comes from draws the caller passes in.

/// The HX711's output range (24-bit two's complement).
pub const RAW_MIN: i32 = -8_388_608;
pub const RAW_MAX: i32 = 8_388_607;
/// Pounds per kilogram, to state scale factors per kilogram as datasheets do.
const LBS_PER_KG: f64 = 2.204_622_621_8;

/// One load cell as built and characterised at the factory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellSpec {
    /// Raw counts with nothing on the platform.
    pub zero_offset: i32,
    /// Raw counts per pound at the reference temperature.
    pub counts_per_lb: f64,
    /// Fractional change of the span per °C (the firmware's `temp_coeff`).
    pub temp_coeff_per_c: f64,
    /// Temperature at calibration, °C.
    pub reference_temp_c: f64,
    /// Electrical and vibration noise, lb (standard deviation).
    pub noise_lbs: f64,
}

impl CellSpec {
    /// Counts per kilogram, the way a datasheet states the scale factor.
    pub fn counts_per_kg(&self) -> f64 {
        self.counts_per_lb * LBS_PER_KG
    }

    /// Counts per pound from a per-kilogram scale factor.
    pub fn counts_per_lb_from_kg(counts_per_kg: f64) -> f64 {
        counts_per_kg / LBS_PER_KG
    }

    /// What an ideal conversion of `load_lbs` reads at the reference temperature: what the
    /// factory's tare records hold.
    pub fn ideal_raw(&self, load_lbs: f64) -> i32 {
        to_raw(f64::from(self.zero_offset) + load_lbs * self.counts_per_lb)
    }

    /// One conversion: `load_lbs` at `temp_c`, plus `noise` (a standard normal draw) times the
    /// cell's noise, plus `spike_counts` (usually 0: a knock or a radio burst on the wires).
    pub fn read(&self, load_lbs: f64, temp_c: f64, noise: f64, spike_counts: i32) -> i32 {
        let span = 1.0 + self.temp_coeff_per_c * (temp_c - self.reference_temp_c);
        let counts = f64::from(self.zero_offset)
            + (load_lbs * span + noise * self.noise_lbs) * self.counts_per_lb
            + f64::from(spike_counts);
        to_raw(counts)
    }
}

fn to_raw(counts: f64) -> i32 {
    counts.round().clamp(f64::from(RAW_MIN), f64::from(RAW_MAX)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> CellSpec {
        CellSpec {
            zero_offset: 50_000,
            counts_per_lb: CellSpec::counts_per_lb_from_kg(22_000.0),
            temp_coeff_per_c: 0.0005,
            reference_temp_c: 3.0,
            noise_lbs: 0.01,
        }
    }

    #[test]
    fn scale_factor_is_plausible_for_an_hx711_platform() {
        let c = cell();
        assert!((c.counts_per_kg() - 22_000.0).abs() < 1e-6);
        assert!(
            (c.counts_per_lb - 9_979.0).abs() < 1.0,
            "{}",
            c.counts_per_lb
        );
        assert_eq!(c.ideal_raw(0.0), 50_000);
        // A full half barrel stays far inside the 24-bit range.
        assert!(c.ideal_raw(161.5) < RAW_MAX / 2);
    }

    #[test]
    fn warmth_stretches_the_span_and_noise_adds_counts() {
        let c = cell();
        let at_ref = c.read(100.0, 3.0, 0.0, 0);
        assert_eq!(at_ref, c.ideal_raw(100.0));
        let warmer = c.read(100.0, 4.0, 0.0, 0);
        let expected = 100.0 * 0.0005 * c.counts_per_lb;
        assert!((f64::from(warmer - at_ref) - expected).abs() <= 1.0);
        let noisy = c.read(100.0, 3.0, 1.0, 0);
        assert!((f64::from(noisy - at_ref) - 0.01 * c.counts_per_lb).abs() <= 1.0);
        assert_eq!(c.read(100.0, 3.0, 0.0, 30_000), at_ref + 30_000);
        assert_eq!(
            c.read(10_000.0, 3.0, 0.0, 0),
            RAW_MAX,
            "clamped like the ADC"
        );
    }
}
