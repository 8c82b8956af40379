//! The uplink window as a pure state machine: which queued gseq to send next, which sent ones
//! wait for the server's confirmation, and when to start over from the oldest unconfirmed one.
//!
//! The socket loop feeds it connection changes, sends, confirmations and the time, and asks it
//! how much room there is; it never touches the network, the disk or a clock. It must never
//! decide that a message is done — only the server's confirmation (applied to the queue) does —
//! so every path that loses track (reconnect, timeout) goes back to the queue's oldest
//! unconfirmed message and resends from there. Resending is safe because the server stores each
//! reading once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Messages sent upstream and not yet confirmed, bounded by a capacity.
#[derive(Debug)]
pub struct Window {
    capacity: usize,
    confirm_timeout: Duration,
    connected: bool,
    /// The next gseq to read from the queue and send.
    next: u64,
    /// Sent, unconfirmed: gseq → when it was sent. Sends go out in gseq order and a restart
    /// clears the map, so the first entry is also the longest waiting.
    in_flight: BTreeMap<u64, Instant>,
    restarts: u64,
}

impl Window {
    pub fn new(capacity: usize, confirm_timeout: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            confirm_timeout,
            connected: false,
            next: 1,
            in_flight: BTreeMap::new(),
            restarts: 0,
        }
    }

    /// A (new) connection is up: everything unconfirmed is resent, from `oldest_unconfirmed`.
    pub fn connected(&mut self, oldest_unconfirmed: u64) {
        self.connected = true;
        self.restart(oldest_unconfirmed);
    }

    /// The connection is gone: nothing is sent until the next [`Window::connected`].
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.in_flight.clear();
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    fn restart(&mut self, from: u64) {
        self.next = from;
        self.in_flight.clear();
        self.restarts += 1;
    }

    /// How many more messages may be sent now.
    pub fn room(&self) -> usize {
        if self.connected {
            self.capacity.saturating_sub(self.in_flight.len())
        } else {
            0
        }
    }

    /// The gseq to read from next (the queue skips confirmed and missing ones).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// `gseq` went out at `now`.
    pub fn sent(&mut self, gseq: u64, now: Instant) {
        self.in_flight.insert(gseq, now);
        self.next = self.next.max(gseq + 1);
    }

    /// The server confirmed these inclusive ranges.
    pub fn confirmed(&mut self, ranges: &[(u64, u64)]) {
        for &(lo, hi) in ranges {
            if lo > hi {
                continue;
            }
            let done: Vec<u64> = self.in_flight.range(lo..=hi).map(|(g, _)| *g).collect();
            for g in done {
                self.in_flight.remove(&g);
            }
        }
    }

    /// If the longest-waiting message has waited longer than the confirmation timeout, start
    /// over from `oldest_unconfirmed` and return true.
    pub fn check_timeout(&mut self, now: Instant, oldest_unconfirmed: Option<u64>) -> bool {
        let Some((_, sent)) = self.in_flight.first_key_value() else {
            return false;
        };
        if now.saturating_duration_since(*sent) < self.confirm_timeout {
            return false;
        }
        let from = oldest_unconfirmed.unwrap_or(self.next);
        self.restart(from);
        true
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// How many times sending started over (connections plus timeouts).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(w: &mut Window, n: u64, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        while w.room() > 0 && out.len() < n as usize {
            let g = w.next();
            w.sent(g, now);
            out.push(g);
        }
        out
    }

    #[test]
    fn nothing_goes_out_while_disconnected() {
        let mut w = Window::new(10, Duration::from_secs(30));
        assert_eq!(w.room(), 0);
        w.connected(1);
        assert_eq!(w.room(), 10);
        w.disconnected();
        assert_eq!(w.room(), 0);
    }

    #[test]
    fn the_window_bounds_what_is_in_flight_and_confirmations_free_it() {
        let t0 = Instant::now();
        let mut w = Window::new(3, Duration::from_secs(30));
        w.connected(5);
        assert_eq!(send(&mut w, 10, t0), vec![5, 6, 7]);
        assert_eq!(w.room(), 0);
        // Confirmations may arrive out of order and name more than is in flight.
        w.confirmed(&[(6, 6), (100, 200)]);
        assert_eq!(w.room(), 1);
        assert_eq!(send(&mut w, 10, t0), vec![8]);
        w.confirmed(&[(1, 8)]);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.next(), 9);
    }

    #[test]
    fn a_reconnect_resends_from_the_oldest_unconfirmed() {
        let t0 = Instant::now();
        let mut w = Window::new(100, Duration::from_secs(30));
        w.connected(1);
        send(&mut w, 10, t0);
        w.confirmed(&[(1, 4)]);
        w.disconnected();
        w.connected(5);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(send(&mut w, 3, t0), vec![5, 6, 7]);
        assert_eq!(w.restarts(), 2);
    }

    #[test]
    fn an_unconfirmed_message_is_resent_after_the_timeout() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut w = Window::new(100, timeout);
        w.connected(1);
        send(&mut w, 5, t0);
        w.confirmed(&[(2, 5)]);
        assert!(!w.check_timeout(t0 + Duration::from_millis(29_999), Some(1)));
        assert!(w.check_timeout(t0 + timeout, Some(1)));
        assert_eq!(w.next(), 1);
        assert_eq!(w.in_flight(), 0);
        assert!(
            !w.check_timeout(t0 + timeout * 5, Some(1)),
            "nothing in flight"
        );
    }
}
