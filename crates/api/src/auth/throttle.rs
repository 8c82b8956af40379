//! Login throttling per e-mail and per client address: after a few free failures, each further
//! failure locks the key for twice as long as the previous one, up to a cap; a quiet period
//! forgets the key. Both keys are checked before the password is, so a locked key costs no
//! hashing.
//!
//! The state is in memory, per process: with several replicas an attacker gets each replica's
//! allowance, which still bounds guessing to a few attempts per minute. The table is bounded
//! (oldest entries dropped first) so a flood of distinct keys cannot exhaust memory. Nothing
//! here may hold the lock across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How hard throttling bites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures per e-mail before locking starts.
    pub free_failures_per_email: u32,
    /// Failures per client address before locking starts (higher: a bar's staff share one).
    pub free_failures_per_address: u32,
    /// The first lock; each further failure doubles it.
    pub base_lock: Duration,
    pub max_lock: Duration,
    /// A key with no failure for this long starts afresh.
    pub forget_after: Duration,
    /// Most keys remembered.
    pub capacity: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            free_failures_per_email: 5,
            free_failures_per_address: 20,
            base_lock: Duration::from_secs(1),
            max_lock: Duration::from_mins(15),
            forget_after: Duration::from_mins(15),
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: i64,
    locked_until: i64,
}

/// What to throttle on for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptKeys {
    pub email: String,
    pub address: String,
}

/// The throttle table.
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    entries: Mutex<HashMap<String, Entry>>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with_entries<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> R) -> R {
        match self.entries.lock() {
            Ok(mut e) => f(&mut e),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn keys(keys: &AttemptKeys) -> [(String, bool); 2] {
        [
            (format!("e:{}", keys.email), true),
            (format!("a:{}", keys.address), false),
        ]
    }

    /// `Err(seconds)` when either key is locked at `now`.
    pub fn check(&self, keys: &AttemptKeys, now: i64) -> Result<(), u64> {
        let forget = ms(self.config.forget_after);
        self.with_entries(|entries| {
            let wait = Self::keys(keys)
                .iter()
                .filter_map(|(k, _)| entries.get(k))
                .filter(|e| now - e.last_failure < forget || e.locked_until > now)
                .map(|e| e.locked_until - now)
                .max()
                .unwrap_or(0);
            if wait > 0 {
                Err(u64::try_from(wait).unwrap_or(0).div_ceil(1000))
            } else {
                Ok(())
            }
        })
    }

    /// Counts a failed attempt against both keys.
    pub fn record_failure(&self, keys: &AttemptKeys, now: i64) {
        let c = self.config;
        self.with_entries(|entries| {
            if entries.len() >= c.capacity {
                evict(entries, now, ms(c.forget_after), c.capacity);
            }
            for (key, is_email) in Self::keys(keys) {
                let free = if is_email {
                    c.free_failures_per_email
                } else {
                    c.free_failures_per_address
                };
                let e = entries.entry(key).or_insert(Entry {
                    failures: 0,
                    last_failure: now,
                    locked_until: 0,
                });
                if now - e.last_failure >= ms(c.forget_after) && e.locked_until <= now {
                    e.failures = 0;
                }
                e.failures = e.failures.saturating_add(1);
                e.last_failure = now;
                if e.failures >= free {
                    let doublings = (e.failures - free).min(30);
                    let lock = ms(c.base_lock)
                        .saturating_mul(1_i64 << doublings)
                        .min(ms(c.max_lock));
                    e.locked_until = now.saturating_add(lock);
                }
            }
        });
    }

    /// A successful login clears the e-mail's count (not the address's: one valid account must
    /// not reset an address that is guessing at others).
    pub fn record_success(&self, keys: &AttemptKeys) {
        let key = format!("e:{}", keys.email);
        self.with_entries(|entries| {
            entries.remove(&key);
        });
    }
}

/// Drops forgotten entries, then the oldest until there is room.
fn evict(entries: &mut HashMap<String, Entry>, now: i64, forget: i64, capacity: usize) {
    entries.retain(|_, e| now - e.last_failure < forget || e.locked_until > now);
    if entries.len() >= capacity {
        let mut by_age: Vec<(i64, String)> = entries
            .iter()
            .map(|(k, e)| (e.last_failure, k.clone()))
            .collect();
        by_age.sort();
        let excess = entries.len() + 1 - capacity;
        for (_, k) in by_age.into_iter().take(excess) {
            entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(email: &str, address: &str) -> AttemptKeys {
        AttemptKeys {
            email: email.into(),
            address: address.into(),
        }
    }

    #[test]
    fn locks_after_free_failures_and_doubles() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        let k = keys("a@x", "1.2.3.4");
        for _ in 0..4 {
            t.record_failure(&k, 0);
            assert_eq!(t.check(&k, 0), Ok(()));
        }
        t.record_failure(&k, 0); // fifth: 1 s
        assert_eq!(t.check(&k, 0), Err(1));
        assert_eq!(t.check(&k, 1_000), Ok(()));
        t.record_failure(&k, 1_000); // sixth: 2 s
        assert_eq!(t.check(&k, 1_000), Err(2));
        t.record_failure(&k, 3_000); // seventh: 4 s
        assert_eq!(t.check(&k, 3_500), Err(4));
        // Another e-mail from the same address is not locked (the address allows 20).
        assert_eq!(t.check(&keys("b@x", "1.2.3.4"), 3_500), Ok(()));
    }

    #[test]
    fn lock_is_capped_and_forgotten() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        let k = keys("a@x", "addr");
        for i in 0..40 {
            t.record_failure(&k, i);
        }
        assert_eq!(t.check(&k, 40), Err(15 * 60));
        let later = 40 + 16 * 60 * 1000;
        assert_eq!(t.check(&k, later), Ok(()));
        t.record_failure(&k, later);
        assert_eq!(
            t.check(&k, later),
            Ok(()),
            "count restarted after the quiet period"
        );
    }

    #[test]
    fn address_locks_across_emails_and_success_clears_only_email() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        for i in 0..20 {
            t.record_failure(&keys(&format!("u{i}@x"), "addr"), 0);
        }
        assert!(t.check(&keys("fresh@x", "addr"), 0).is_err());
        assert_eq!(t.check(&keys("fresh@x", "other"), 0), Ok(()));
        let k = keys("a@x", "elsewhere");
        for _ in 0..5 {
            t.record_failure(&k, 0);
        }
        t.record_success(&k);
        assert_eq!(t.check(&k, 0), Ok(()));
    }

    #[test]
    fn table_is_bounded() {
        let config = ThrottleConfig {
            capacity: 10,
            ..ThrottleConfig::default()
        };
        let t = LoginThrottle::new(config);
        for i in 0..100 {
            t.record_failure(&keys(&format!("u{i}"), &format!("a{i}")), i);
        }
        assert!(t.with_entries(|e| e.len()) <= 11);
    }
}
