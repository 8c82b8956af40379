//! Battery voltage and charge estimate for the scale's single-cell LiPo (seed 000: 5000 mAh,
//! measured on GPIO4 through a 470 kΩ / 470 kΩ divider, so the pin sees half the cell).
//!
//! A LiPo's voltage is not linear in its charge: it drops fast near full, sits on a long flat
//! plateau around 3.7–3.9 V, then falls off a cliff. A piecewise-linear table of that curve
//! gives a usable percentage. This module only converts numbers; it never reads an ADC.

/// The divider halves the cell voltage; multiply the pin voltage by this.
pub const DIVIDER_RATIO: f64 = 2.0;

/// Resting LiPo discharge curve: (cell volts, percent), ascending. 3.0 V is empty (the
/// protection cut-off), 4.2 V is full.
const CURVE: [(f64, f64); 12] = [
    (3.00, 0.0),
    (3.45, 5.0),
    (3.68, 10.0),
    (3.74, 20.0),
    (3.77, 30.0),
    (3.80, 40.0),
    (3.84, 50.0),
    (3.87, 60.0),
    (3.95, 70.0),
    (4.02, 80.0),
    (4.08, 90.0),
    (4.20, 100.0),
];

/// A battery measurement as it goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Battery {
    pub volts: f64,
    pub percent: f64,
}

impl Battery {
    /// From the ADC pin voltage in millivolts (already converted from counts by the HAL's
    /// calibration).
    pub fn from_pin_millivolts(pin_mv: u32) -> Self {
        Self::from_cell_volts(f64::from(pin_mv) / 1_000.0 * DIVIDER_RATIO)
    }

    pub fn from_cell_volts(volts: f64) -> Self {
        Self {
            volts,
            percent: percent_for_volts(volts),
        }
    }
}

/// Interpolates the discharge curve; clamps to 0 below 3.0 V and 100 above 4.2 V.
pub fn percent_for_volts(volts: f64) -> f64 {
    let (first_v, first_pct) = CURVE[0];
    let (last_v, last_pct) = CURVE[CURVE.len() - 1];
    if volts.is_nan() || volts <= first_v {
        return first_pct;
    }
    if volts >= last_v {
        return last_pct;
    }
    for pair in CURVE.windows(2) {
        let ((v0, p0), (v1, p1)) = (pair[0], pair[1]);
        if volts <= v1 {
            return p0 + (volts - v0) / (v1 - v0) * (p1 - p0);
        }
    }
    last_pct
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn end_points_and_clamping() {
        assert!(close(percent_for_volts(3.0), 0.0));
        assert!(close(percent_for_volts(4.2), 100.0));
        assert!(close(percent_for_volts(2.5), 0.0));
        assert!(close(percent_for_volts(4.35), 100.0));
        assert!(close(percent_for_volts(f64::NAN), 0.0));
    }

    #[test]
    fn interpolates_between_table_points() {
        assert!(close(percent_for_volts(3.84), 50.0));
        // Halfway between 3.95 V (70 %) and 4.02 V (80 %).
        assert!(close(percent_for_volts(3.985), 75.0));
    }

    #[test]
    fn divider_doubles_the_pin_voltage() {
        let b = Battery::from_pin_millivolts(1_970);
        assert!(close(b.volts, 3.94));
        assert!(b.percent > 60.0 && b.percent < 70.0, "{}", b.percent);
    }

    #[test]
    fn curve_is_monotonic() {
        let mut last = -1.0;
        for mv in 2_900..=4_300 {
            let p = percent_for_volts(f64::from(mv) / 1_000.0);
            assert!(p >= last, "not monotonic at {mv} mV");
            last = p;
        }
    }
}
