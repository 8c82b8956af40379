//! Shared readiness state: whether the last database write worked and whether the server's MQTT
//! client is connected. The pipeline and the MQTT link write it; `GET /readyz` reads it.
//!
//! It only records what the components observed; it never probes anything itself (the HTTP
//! handler adds a live database probe), and it must stay cheap to update on every batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::telemetry;

#[derive(Debug, Default)]
struct Inner {
    /// The last store write failed as unavailable and no write has succeeded since.
    db_failing: AtomicBool,
    db_error: Mutex<Option<String>>,
    broker_connected: AtomicBool,
}

/// Readiness as observed by the pipeline and the MQTT link. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store write succeeded.
    pub fn db_ok(&self) {
        if self.inner.db_failing.swap(false, Ordering::AcqRel) {
            tracing::info!("database writes work again");
            *self
                .inner
                .db_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// A store write failed because the database is unavailable.
    pub fn db_failed(&self, error: &str) {
        if !self.inner.db_failing.swap(true, Ordering::AcqRel) {
            tracing::error!(
                error,
                "database unavailable: nothing is acknowledged until it is back"
            );
        }
        *self
            .inner
            .db_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_owned());
    }

    /// Why database writes are failing, if they are.
    pub fn db_failure(&self) -> Option<String> {
        if self.inner.db_failing.load(Ordering::Acquire) {
            let error = self
                .inner
                .db_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Some(
                error
                    .clone()
                    .unwrap_or_else(|| "database unavailable".to_owned()),
            )
        } else {
            None
        }
    }

    /// The server's MQTT client is connected (and, when it ingests, subscribed): `true`; or it
    /// lost its connection: `false`.
    pub fn set_broker_connected(&self, connected: bool) {
        self.inner
            .broker_connected
            .store(connected, Ordering::Release);
        metrics::gauge!(telemetry::BROKER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }

    pub fn broker_connected(&self) -> bool {
        self.inner.broker_connected.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_is_reported_until_a_write_succeeds() {
        let health = Health::new();
        assert_eq!(health.db_failure(), None);
        health.db_failed("disk I/O error");
        assert_eq!(health.db_failure().as_deref(), Some("disk I/O error"));
        health.db_ok();
        assert_eq!(health.db_failure(), None);
        assert!(!health.broker_connected());
        health.set_broker_connected(true);
        assert!(health.broker_connected());
    }
}
