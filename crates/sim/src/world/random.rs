//! Where the world's randomness comes from: one seeded generator per virtual scale, derived from
//! the fleet seed, and the few distributions the model draws from.
//!
//! Determinism is the point: nothing here may read the OS's entropy or the clock, and every
//! draw goes through a generator the caller owns, so a seed replays the same bar.

use rand::Rng;

/// The seed of scale `index` (0-based) in a fleet seeded with `fleet_seed`: SplitMix64's
/// finaliser over both, so neighbouring scales and neighbouring seeds get unrelated streams.
pub fn scale_seed(fleet_seed: u64, index: u32) -> u64 {
    let mut z = fleet_seed ^ (u64::from(index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A standard normal draw (Box–Muller; `rand_distr` would be one more dependency for this).
pub fn normal(rng: &mut impl Rng) -> f64 {
    // 1 − [0, 1) is (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
}

/// An exponential draw with the given mean (waiting time of a Poisson process).
pub fn exponential(rng: &mut impl Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// A uniform draw in `[lo, hi)`; `lo` when the range is empty.
pub fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        lo + (hi - lo) * rng.random::<f64>()
    } else {
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn scale_seeds_differ_by_index_and_fleet_seed() {
        let a = scale_seed(1, 0);
        assert_eq!(a, scale_seed(1, 0));
        assert_ne!(a, scale_seed(1, 1));
        assert_ne!(a, scale_seed(2, 0));
    }

    #[test]
    fn distributions_have_the_right_moments() {
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / f64::from(n);
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / f64::from(n);
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
        let exp_mean = (0..n).map(|_| exponential(&mut rng, 5.0)).sum::<f64>() / f64::from(n);
        assert!((exp_mean - 5.0).abs() < 0.2, "exponential mean {exp_mean}");
        for _ in 0..1_000 {
            let u = uniform(&mut rng, 2.0, 3.0);
            assert!((2.0..3.0).contains(&u));
        }
        assert!((uniform(&mut rng, 4.0, 4.0) - 4.0).abs() < f64::EPSILON);
    }
}
