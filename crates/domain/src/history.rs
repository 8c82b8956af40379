//! History charts: which range a client may ask for, how wide each bin is, and how raw points are
//! averaged into bins.
//!
//! Bins are aligned to multiples of their width since the Unix epoch, so the same bin has the
//! same start whoever asks and whenever (stored rollups and live queries agree). This module
//! must never invent data: a bin with no points is omitted, not filled with zero.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{EpochMs, duration_ms};

const MINUTE: Duration = Duration::from_mins(1);
const HOUR: Duration = Duration::from_hours(1);
const DAY: Duration = Duration::from_hours(24);

/// Shortest range a history query may cover: one 5-minute bin.
pub const MIN_RANGE: Duration = Duration::from_mins(5);
/// Longest range: one year, the readings' long-term retention (`1y` = 365 days).
pub const MAX_RANGE: Duration = Duration::from_hours(365 * 24);

/// Why a `?range=` value is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range must not be empty; use e.g. 2h, 24h, 7d, 30d, 1y")]
    Empty,
    #[error("range {0:?} must be a whole positive number followed by m, h, d, w or y (e.g. 7d)")]
    BadFormat(String),
    #[error("range {0:?} is shorter than the minimum of 5 minutes")]
    TooShort(String),
    #[error("range {0:?} is longer than the maximum of 1 year")]
    TooLong(String),
}

/// Parses a history range: a whole number and a unit, `m` minutes, `h` hours, `d` days,
/// `w` weeks, `y` years of 365 days. Accepts 5 minutes to 1 year; anything else is an error so
/// a typo never silently becomes a huge query.
pub fn parse_range(s: &str) -> Result<Duration, RangeError> {
    if s.is_empty() {
        return Err(RangeError::Empty);
    }
    let bad = || RangeError::BadFormat(s.to_owned());
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() || digits.len() > 6 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit = match unit {
        "m" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        "w" => DAY * 7,
        "y" => DAY * 365,
        _ => return Err(bad()),
    };
    // Six digits of years still fit: 999_999 × 365 days is about 3.2e13 s.
    let range = unit.saturating_mul(u32::try_from(n).map_err(|_| bad())?);
    if range < MIN_RANGE {
        Err(RangeError::TooShort(s.to_owned()))
    } else if range > MAX_RANGE {
        Err(RangeError::TooLong(s.to_owned()))
    } else {
        Ok(range)
    }
}

/// The chart bin width for a range (seed): ≤ 2 h → 5 min, ≤ 24 h → 15 min, ≤ 7 d → 1 h,
/// longer → 6 h.
pub fn bin_for_range(range: Duration) -> Duration {
    if range <= HOUR * 2 {
        MINUTE * 5
    } else if range <= DAY {
        MINUTE * 15
    } else if range <= DAY * 7 {
        HOUR
    } else {
        HOUR * 6
    }
}

/// One chart point: the points whose time falls in `[start, start + width)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub start: EpochMs,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub count: u64,
}

/// Start of the bin of width `width_ms` (> 0) that holds `t`, aligned to the epoch.
fn bin_start(t: i64, width_ms: i64) -> i64 {
    t - t.rem_euclid(width_ms)
}

/// Averages `points` into bins of width `bin` over the half-open window `[start, end)`.
/// Points outside the window and non-finite values are skipped; points need not be sorted.
/// Bins come back in time order, empty bins omitted. A zero `bin` is treated as 1 ms.
pub fn bin_series(
    points: &[(EpochMs, f64)],
    start: EpochMs,
    end: EpochMs,
    bin: Duration,
) -> Vec<Bin> {
    let width = duration_ms(bin).max(1);
    // Sums are accumulated per bin and divided once, so the count-weighted mean of the bins is
    // the mean of the points (up to float rounding).
    let mut acc: BTreeMap<i64, (f64, f64, f64, u64)> = BTreeMap::new();
    for &(t, v) in points {
        if t < start || t >= end || !v.is_finite() {
            continue;
        }
        let e =
            acc.entry(bin_start(t.0, width))
                .or_insert((0.0, f64::INFINITY, f64::NEG_INFINITY, 0));
        e.0 += v;
        e.1 = e.1.min(v);
        e.2 = e.2.max(v);
        e.3 += 1;
    }
    acc.into_iter()
        .map(|(s, (sum, min, max, count))| Bin {
            start: EpochMs(s),
            avg: sum / count as f64,
            min,
            max,
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::tests::close;
    use proptest::prelude::*;

    #[test]
    fn bin_widths_follow_the_seed() {
        let m = |n: u64| Duration::from_mins(n);
        assert_eq!(bin_for_range(m(30)), m(5));
        assert_eq!(bin_for_range(HOUR * 2), m(5));
        assert_eq!(bin_for_range(HOUR * 2 + Duration::from_millis(1)), m(15));
        assert_eq!(bin_for_range(DAY), m(15));
        assert_eq!(bin_for_range(DAY + Duration::from_secs(1)), HOUR);
        assert_eq!(bin_for_range(DAY * 7), HOUR);
        assert_eq!(bin_for_range(DAY * 30), HOUR * 6);
        assert_eq!(bin_for_range(DAY * 365), HOUR * 6);
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("2h"), Ok(HOUR * 2));
        assert_eq!(parse_range("24h"), Ok(DAY));
        assert_eq!(parse_range("7d"), Ok(DAY * 7));
        assert_eq!(parse_range("30d"), Ok(DAY * 30));
        assert_eq!(parse_range("90d"), Ok(DAY * 90));
        assert_eq!(parse_range("1y"), Ok(DAY * 365));
        assert_eq!(parse_range("2w"), Ok(DAY * 14));
        assert_eq!(parse_range("5m"), Ok(MIN_RANGE));
    }

    #[test]
    fn bad_ranges_say_why() {
        assert_eq!(parse_range(""), Err(RangeError::Empty));
        for bad in [
            "h", "7", "7 d", "-7d", "7D", "1.5h", "7dd", "d7", "+7d", "1234567d", "٣d",
        ] {
            assert_eq!(
                parse_range(bad),
                Err(RangeError::BadFormat(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(parse_range("4m"), Err(RangeError::TooShort("4m".into())));
        assert_eq!(parse_range("0h"), Err(RangeError::TooShort("0h".into())));
        assert_eq!(parse_range("366d"), Err(RangeError::TooLong("366d".into())));
        assert_eq!(parse_range("2y"), Err(RangeError::TooLong("2y".into())));
        assert_eq!(
            parse_range("999999y"),
            Err(RangeError::TooLong("999999y".into()))
        );
    }

    #[test]
    fn bins_are_aligned_averaged_and_sparse() {
        let five = Duration::from_mins(5);
        let pts = [
            (EpochMs(299_999), 10.0),  // bin 0
            (EpochMs(300_000), 20.0),  // bin 300_000
            (EpochMs(599_999), 40.0),  // bin 300_000
            (EpochMs(1_200_000), 7.0), // bin 1_200_000 (900_000 is empty, omitted)
            (EpochMs(1_300_000), f64::NAN),
            (EpochMs(-1), 99.0), // before the window
        ];
        let bins = bin_series(&pts, EpochMs(0), EpochMs(1_500_000), five);
        assert_eq!(bins.len(), 3);
        assert_eq!(bins[0].start, EpochMs(0));
        assert_eq!(bins[0].count, 1);
        assert_eq!(bins[1].start, EpochMs(300_000));
        assert!(close(bins[1].avg, 30.0, 1e-15));
        assert!(close(bins[1].min, 20.0, 0.0));
        assert!(close(bins[1].max, 40.0, 0.0));
        assert_eq!(bins[1].count, 2);
        assert_eq!(bins[2].start, EpochMs(1_200_000));
        // The end of the window is exclusive.
        assert!(bin_series(&pts, EpochMs(0), EpochMs(299_999), five).is_empty());
        // Negative instants align to the bin below, not towards zero.
        let neg = bin_series(&[(EpochMs(-1), 1.0)], EpochMs(-600_000), EpochMs(0), five);
        assert_eq!(neg[0].start, EpochMs(-300_000));
        // Unsorted input gives sorted bins; a zero width does not divide by zero.
        let unsorted = [(EpochMs(5), 1.0), (EpochMs(1), 3.0)];
        let fine = bin_series(&unsorted, EpochMs(0), EpochMs(10), Duration::ZERO);
        assert_eq!(
            fine.iter().map(|b| b.start).collect::<Vec<_>>(),
            [EpochMs(1), EpochMs(5)]
        );
    }

    proptest! {
        #[test]
        fn binning_preserves_the_weighted_mean(
            pts in proptest::collection::vec((0i64..10_000_000, -1000.0f64..1000.0), 1..200),
            bin_secs in 1u64..100_000,
        ) {
            let points: Vec<(EpochMs, f64)> = pts.iter().map(|&(t, v)| (EpochMs(t), v)).collect();
            let bins = bin_series(&points, EpochMs(0), EpochMs(10_000_000), Duration::from_secs(bin_secs));
            let n: u64 = bins.iter().map(|b| b.count).sum();
            prop_assert_eq!(n as usize, points.len());
            let weighted = bins.iter().map(|b| b.avg * b.count as f64).sum::<f64>() / n as f64;
            let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
            prop_assert!(close(weighted, mean, 1e-9), "{weighted} vs {mean}");
            for w in bins.windows(2) {
                prop_assert!(w[0].start < w[1].start);
            }
            for b in &bins {
                prop_assert_eq!(b.start.0 % (bin_secs as i64 * 1000), 0);
                prop_assert!(b.min <= b.avg + 1e-9 && b.avg <= b.max + 1e-9);
            }
        }

        #[test]
        fn parse_range_never_panics(s in "\\PC{0,12}") {
            if let Ok(d) = parse_range(&s) {
                prop_assert!((MIN_RANGE..=MAX_RANGE).contains(&d));
            }
        }
    }
}
