//! Quiet hours: a location's operating hours, outside which e-mail, push and webhook alerts are
//! held and sent as a digest at the next opening (seed 001). WebSocket alerts are never held:
//! whoever has the dashboard open is at work.
//!
//! Operating hours are wall-clock times in the location's time zone and may cross midnight
//! (open 16:00, close 02:00). On the days clocks change, "quiet" is decided by the wall clock:
//! a bar closing at 02:00 is open an hour longer by the sun when clocks fall back, and an opening
//! time skipped by a spring-forward gap opens at the end of the gap. This module must never hold
//! anything outside quiet hours, and must never read a clock.

use core::cmp::Ordering;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};

/// How a notification reaches people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    #[serde(rename = "websocket")]
    WebSocket,
    Email,
    Push,
    Webhook,
}

impl Channel {
    pub const ALL: [Self; 4] = [Self::WebSocket, Self::Email, Self::Push, Self::Webhook];

    /// Whether quiet hours hold this channel back. Only the live dashboard is never held.
    pub fn held_in_quiet_hours(self) -> bool {
        !matches!(self, Self::WebSocket)
    }
}

/// A location's operating hours `[open, close)` in its own time zone. `close` at or before `open`
/// means the hours run past midnight; `open == close` means open around the clock (never quiet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub open: Time,
    pub close: Time,
}

/// Transitions are looked for this far ahead; real zones change at most twice a year, and an
/// opening is at most a day away, so eight days leaves margin for any gap or fold.
const SEARCH_DAYS: usize = 8;

impl QuietHours {
    /// Whether `at` is outside operating hours by the location's wall clock.
    pub fn is_quiet(&self, at: Timestamp, tz: &TimeZone) -> bool {
        let t = tz.to_datetime(at).time();
        let open = match self.open.cmp(&self.close) {
            Ordering::Less => self.open <= t && t < self.close,
            Ordering::Greater => t >= self.open || t < self.close,
            Ordering::Equal => true,
        };
        !open
    }

    /// Whether a notification on `channel` at `at` must wait.
    pub fn should_hold(&self, channel: Channel, at: Timestamp, tz: &TimeZone) -> bool {
        channel.held_in_quiet_hours() && self.is_quiet(at, tz)
    }

    /// When a notification raised at `at` on `channel` goes out: at once, or at the next opening.
    pub fn deliver_at(&self, channel: Channel, at: Timestamp, tz: &TimeZone) -> Timestamp {
        if self.should_hold(channel, at, tz) {
            self.next_open_after(at, tz)
        } else {
            at
        }
    }

    /// The first instant at or after `at` that is inside operating hours: `at` itself when open,
    /// otherwise the next opening (when the overnight digest is due).
    ///
    /// Quiet becomes open either when the wall clock passes `open`, or when the clock jumps into
    /// operating hours at a time-zone transition. So the answer is the earliest open instant
    /// among the openings (both of them on a day whose opening time is repeated) and the
    /// transitions ahead of `at`.
    pub fn next_open_after(&self, at: Timestamp, tz: &TimeZone) -> Timestamp {
        if !self.is_quiet(at, tz) {
            return at;
        }
        let mut dates = Vec::with_capacity(SEARCH_DAYS);
        let mut date = Some(tz.to_datetime(at).date());
        while let Some(d) = date.filter(|_| dates.len() < SEARCH_DAYS) {
            dates.push(d);
            date = d.tomorrow().ok();
        }
        let horizon = at
            .checked_add(jiff::SignedDuration::from_hours(24 * SEARCH_DAYS as i64))
            .unwrap_or(Timestamp::MAX);
        let transitions = tz
            .following(at)
            .map(|t| t.timestamp())
            .take_while(|t| *t <= horizon);
        dates
            .into_iter()
            .flat_map(|d| self.openings_on(d, tz))
            .chain(transitions)
            .filter(|c| *c > at && !self.is_quiet(*c, tz))
            .min()
            // Unreachable with real zones (a day always has an opening or a jump into one);
            // sending now is the safe failure, never holding a notification for ever.
            .unwrap_or(at)
    }

    /// The instants the wall clock shows `open` on `date`: one, two in a fold, none in a gap
    /// (the transition that skips it is a candidate of its own).
    fn openings_on(&self, date: Date, tz: &TimeZone) -> Vec<Timestamp> {
        let dt = date.to_datetime(self.open);
        let offsets = match tz.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => vec![offset],
            AmbiguousOffset::Fold { before, after } => vec![before, after],
            AmbiguousOffset::Gap { .. } => Vec::new(),
        };
        offsets
            .into_iter()
            .filter_map(|o| o.to_timestamp(dt).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::time;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hours(open: (i8, i8), close: (i8, i8)) -> QuietHours {
        QuietHours {
            open: time(open.0, open.1, 0, 0),
            close: time(close.0, close.1, 0, 0),
        }
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn new_york() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    #[test]
    fn window_across_midnight() {
        let tz = berlin();
        let bar = hours((16, 0), (2, 0));
        // 2026-06-10, CEST (UTC+2).
        assert!(bar.is_quiet(ts("2026-06-10T13:59:59Z"), &tz)); // 15:59:59
        assert!(!bar.is_quiet(ts("2026-06-10T14:00:00Z"), &tz)); // 16:00
        assert!(!bar.is_quiet(ts("2026-06-10T23:59:00Z"), &tz)); // 01:59
        assert!(bar.is_quiet(ts("2026-06-11T00:00:00Z"), &tz)); // 02:00
        assert!(bar.is_quiet(ts("2026-06-11T10:00:00Z"), &tz)); // 12:00
        assert_eq!(
            bar.next_open_after(ts("2026-06-11T01:00:00Z"), &tz),
            ts("2026-06-11T14:00:00Z")
        );
        // Open now: no wait.
        let now = ts("2026-06-10T20:00:00Z");
        assert_eq!(bar.next_open_after(now, &tz), now);
    }

    #[test]
    fn daytime_window_and_always_open() {
        let tz = new_york();
        let cafe = hours((10, 0), (22, 0));
        // 23:00 EDT on 2026-06-10 → opens 10:00 EDT on the 11th.
        assert_eq!(
            cafe.next_open_after(ts("2026-06-11T03:00:00Z"), &tz),
            ts("2026-06-11T14:00:00Z")
        );
        // 09:00 EDT → 10:00 EDT the same day.
        assert_eq!(
            cafe.next_open_after(ts("2026-06-11T13:00:00Z"), &tz),
            ts("2026-06-11T14:00:00Z")
        );
        let always = hours((0, 0), (0, 0));
        assert!(!always.is_quiet(ts("2026-06-11T03:00:00Z"), &tz));
    }

    #[test]
    fn berlin_spring_forward() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z.
        let tz = berlin();
        let bar = hours((16, 0), (2, 0));
        assert!(!bar.is_quiet(ts("2026-03-29T00:59:59Z"), &tz)); // 01:59:59 CET
        assert!(bar.is_quiet(ts("2026-03-29T01:00:00Z"), &tz)); // 03:00 CEST
        assert_eq!(
            bar.next_open_after(ts("2026-03-29T01:00:00Z"), &tz),
            ts("2026-03-29T14:00:00Z") // 16:00 CEST
        );
        // An opening time inside the gap opens when the gap ends.
        let early = hours((2, 30), (12, 0));
        assert_eq!(
            early.next_open_after(ts("2026-03-29T00:30:00Z"), &tz), // 01:30 CET
            ts("2026-03-29T01:00:00Z")                              // 03:00 CEST
        );
    }

    #[test]
    fn berlin_fall_back() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET at 01:00Z; 02:00–02:59 happens twice.
        let tz = berlin();
        let bar = hours((16, 0), (2, 30));
        assert!(!bar.is_quiet(ts("2026-10-25T00:15:00Z"), &tz)); // 02:15 CEST
        assert!(bar.is_quiet(ts("2026-10-25T00:45:00Z"), &tz)); // 02:45 CEST
        assert!(!bar.is_quiet(ts("2026-10-25T01:15:00Z"), &tz)); // 02:15 CET, again
        // Closed at 02:30 CEST, open again when the clock falls back into operating hours.
        assert_eq!(
            bar.next_open_after(ts("2026-10-25T00:45:00Z"), &tz),
            ts("2026-10-25T01:00:00Z")
        );
        // After the second 02:30, the next opening is 16:00 CET.
        assert_eq!(
            bar.next_open_after(ts("2026-10-25T01:30:00Z"), &tz),
            ts("2026-10-25T15:00:00Z")
        );
    }

    #[test]
    fn new_york_spring_forward() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00Z.
        let tz = new_york();
        let bar = hours((2, 30), (18, 0));
        assert!(bar.is_quiet(ts("2026-03-08T06:59:59Z"), &tz)); // 01:59:59 EST
        assert!(!bar.is_quiet(ts("2026-03-08T07:00:00Z"), &tz)); // 03:00 EDT
        assert_eq!(
            bar.next_open_after(ts("2026-03-08T06:30:00Z"), &tz),
            ts("2026-03-08T07:00:00Z")
        );
        let night = hours((17, 0), (2, 0));
        // 01:30 EST is open; the next instant, 03:00 EDT, is past closing.
        assert!(!night.is_quiet(ts("2026-03-08T06:30:00Z"), &tz));
        assert!(night.is_quiet(ts("2026-03-08T07:00:00Z"), &tz));
        assert_eq!(
            night.next_open_after(ts("2026-03-08T07:00:00Z"), &tz),
            ts("2026-03-08T21:00:00Z") // 17:00 EDT
        );
    }

    #[test]
    fn new_york_fall_back() {
        // 2026-11-01: 02:00 EDT goes back to 01:00 EST at 06:00Z; 01:00–01:59 happens twice.
        let tz = new_york();
        let bar = hours((1, 30), (18, 0));
        assert_eq!(
            bar.next_open_after(ts("2026-11-01T05:00:00Z"), &tz), // 01:00 EDT
            ts("2026-11-01T05:30:00Z")                            // 01:30 EDT
        );
        // Once the clock falls back to 01:00 EST it is before opening again.
        assert!(bar.is_quiet(ts("2026-11-01T06:10:00Z"), &tz));
        assert_eq!(
            bar.next_open_after(ts("2026-11-01T06:10:00Z"), &tz),
            ts("2026-11-01T06:30:00Z") // 01:30 EST, the second one
        );
        // A late bar closing at 02:00 stays open the extra hour.
        let late = hours((16, 0), (2, 0));
        assert!(!late.is_quiet(ts("2026-11-01T06:30:00Z"), &tz)); // 01:30 EST
        assert!(late.is_quiet(ts("2026-11-01T07:00:00Z"), &tz)); // 02:00 EST
    }

    #[test]
    fn channels() {
        let tz = berlin();
        let bar = hours((16, 0), (2, 0));
        let quiet = ts("2026-06-11T08:00:00Z"); // 10:00 CEST
        let open = ts("2026-06-10T18:00:00Z");
        assert!(!bar.should_hold(Channel::WebSocket, quiet, &tz));
        for ch in [Channel::Email, Channel::Push, Channel::Webhook] {
            assert!(bar.should_hold(ch, quiet, &tz));
            assert!(!bar.should_hold(ch, open, &tz));
            assert_eq!(bar.deliver_at(ch, quiet, &tz), ts("2026-06-11T14:00:00Z"));
            assert_eq!(bar.deliver_at(ch, open, &tz), open);
        }
        assert_eq!(bar.deliver_at(Channel::WebSocket, quiet, &tz), quiet);
        assert_eq!(
            serde_json::to_string(&Channel::WebSocket).unwrap(),
            "\"websocket\""
        );
        assert_eq!(serde_json::to_string(&Channel::Email).unwrap(), "\"email\"");
    }

    #[test]
    fn settings_json() {
        let q: QuietHours = serde_json::from_str(r#"{"open":"16:00","close":"02:00"}"#).unwrap();
        assert_eq!(q, hours((16, 0), (2, 0)));
        let back: QuietHours = serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
        assert_eq!(back, q);
        assert!(serde_json::from_str::<QuietHours>(r#"{"open":"25:00","close":"02:00"}"#).is_err());
    }

    fn arb_hours() -> impl Strategy<Value = QuietHours> {
        ((0i8..24, 0i8..4), (0i8..24, 0i8..4))
            .prop_map(|((oh, om), (ch, cm))| hours((oh, om * 15), (ch, cm * 15)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn nothing_is_held_outside_quiet_hours(
            q in arb_hours(),
            // 2026 in seconds, covering both DST changes in both zones.
            secs in 1_767_225_600i64..1_798_761_600,
            ny in proptest::bool::ANY,
        ) {
            let tz = if ny { new_york() } else { berlin() };
            let at = Timestamp::from_second(secs).unwrap();
            let quiet = q.is_quiet(at, &tz);
            for ch in Channel::ALL {
                prop_assert!(!q.should_hold(ch, at, &tz) || quiet);
                if !quiet || !ch.held_in_quiet_hours() {
                    prop_assert_eq!(q.deliver_at(ch, at, &tz), at);
                }
            }
            let next = q.next_open_after(at, &tz);
            prop_assert!(next >= at);
            prop_assert!(!q.is_quiet(next, &tz), "{next} is quiet");
            if next > at {
                // Nothing between `at` and the opening was open: no hold lasted too long.
                let step = jiff::SignedDuration::from_mins(5);
                let mut t = at;
                while t < next {
                    prop_assert!(q.is_quiet(t, &tz), "{t} is open before {next}");
                    t = t.checked_add(step).unwrap();
                }
                let just_before = next.checked_sub(jiff::SignedDuration::from_millis(1)).unwrap();
                prop_assert!(q.is_quiet(just_before, &tz));
            }
        }
    }
}
