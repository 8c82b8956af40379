//! Float helpers that `core` lacks without `std`'s libm (`f64::round` is std-only).

/// Rounds half away from zero, like `f64::round`.
pub(crate) fn round(x: f64) -> f64 {
    // From 2^52 on every f64 is an integer; NaN and infinities pass through.
    if !x.is_finite() || x.abs() >= 4_503_599_627_370_496.0 {
        return x;
    }
    let truncated = (x as i64) as f64;
    // Exact: `x` and its truncation are within 1 of each other.
    let fraction = x - truncated;
    if fraction >= 0.5 {
        truncated + 1.0
    } else if fraction <= -0.5 {
        truncated - 1.0
    } else {
        truncated
    }
}

#[cfg(test)]
mod tests {
    use super::round;

    #[test]
    fn rounds_like_std() {
        for x in [
            0.0,
            0.4,
            0.5,
            0.6,
            1.5,
            2.5,
            -0.4,
            -0.5,
            -0.6,
            -2.5,
            87.3 * 100.0,
            1e17,
            -1e17,
        ] {
            assert_eq!(round(x) as i64, x.round() as i64, "{x}");
        }
        assert!(round(f64::NAN).is_nan());
        assert!(round(f64::INFINITY).is_infinite());
    }
}
