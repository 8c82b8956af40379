//! When the bar pours: opening hours and the evening peak, in minutes of the local day.
//!
//! Plain arithmetic on a minute-of-day; turning an instant into local time is the caller's
//! job (it knows the time zone), so this never looks at a clock or a time zone.

/// Minutes in a day.
pub const MINUTES_PER_DAY: u32 = 24 * 60;

/// The bar's day. A window whose end is before its start runs past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningHours {
    /// Minute of the local day the bar opens.
    pub opens: u32,
    /// Minute of the local day it closes (exclusive).
    pub closes: u32,
    /// The evening peak, inside opening hours: pours come faster then.
    pub peak_starts: u32,
    pub peak_ends: u32,
}

impl Default for OpeningHours {
    /// 16:00–02:00, busiest 19:00–23:00.
    fn default() -> Self {
        Self {
            opens: 16 * 60,
            closes: 2 * 60,
            peak_starts: 19 * 60,
            peak_ends: 23 * 60,
        }
    }
}

impl OpeningHours {
    pub fn is_open(&self, minute_of_day: u32) -> bool {
        in_window(self.opens, self.closes, minute_of_day)
    }

    pub fn is_peak(&self, minute_of_day: u32) -> bool {
        self.is_open(minute_of_day) && in_window(self.peak_starts, self.peak_ends, minute_of_day)
    }

    /// Minutes from `minute_of_day` until the bar next opens; 0 while it is open.
    pub fn minutes_until_open(&self, minute_of_day: u32) -> u32 {
        if self.is_open(minute_of_day) {
            0
        } else {
            (self.opens + MINUTES_PER_DAY - minute_of_day % MINUTES_PER_DAY) % MINUTES_PER_DAY
        }
    }
}

/// Whether `m` lies in `[start, end)`, wrapping past midnight when `end < start`. An empty
/// window (`start == end`) contains nothing.
fn in_window(start: u32, end: u32, m: u32) -> bool {
    let m = m % MINUTES_PER_DAY;
    if start <= end {
        start <= m && m < end
    } else {
        m >= start || m < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn at(h: u32, m: u32) -> u32 {
        h * 60 + m
    }

    #[test]
    fn default_hours_run_past_midnight() {
        let hours = OpeningHours::default();
        assert!(!hours.is_open(at(15, 59)));
        assert!(hours.is_open(at(16, 0)));
        assert!(hours.is_open(at(23, 59)));
        assert!(hours.is_open(at(0, 30)));
        assert!(hours.is_open(at(1, 59)));
        assert!(!hours.is_open(at(2, 0)));
        assert!(!hours.is_open(at(10, 0)));
    }

    #[test]
    fn peak_is_the_evening() {
        let hours = OpeningHours::default();
        assert!(!hours.is_peak(at(18, 59)));
        assert!(hours.is_peak(at(19, 0)));
        assert!(hours.is_peak(at(22, 59)));
        assert!(!hours.is_peak(at(23, 0)));
        assert!(!hours.is_peak(at(12, 0)));
    }

    #[test]
    fn minutes_until_opening() {
        let hours = OpeningHours::default();
        assert_eq!(hours.minutes_until_open(at(17, 0)), 0);
        assert_eq!(hours.minutes_until_open(at(2, 0)), 14 * 60);
        assert_eq!(hours.minutes_until_open(at(15, 30)), 30);
    }
}
