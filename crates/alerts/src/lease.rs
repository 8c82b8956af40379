//! Leader election for the scheduler: with several `scalesense serve` replicas on one
//! PostgreSQL, exactly one runs the minute tick and the outbox worker at a time.
//!
//! [`PgAdvisoryLease`] holds `pg_try_advisory_lock` on a dedicated connection for as long as it
//! leads; PostgreSQL releases the lock when that session ends, so when the holder dies another
//! replica's next attempt (every `lease_every`, 15 s by default) takes over. Server-side TCP
//! keepalives are set short on the session so a holder whose host vanished without closing the
//! socket is noticed within about half a minute. [`SingleReplica`] is for the SQLite shapes
//! (`scalesense up`, one process owns the database file).
//!
//! What this module must never do: report leadership it cannot vouch for. A leader's
//! connection is checked on every call; if it broke, the lock is gone and the answer is no
//! (until it is acquired again).

use std::fmt::Debug;

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;

use crate::error::AlertsError;

/// The advisory-lock key of the scheduler (any fixed 64-bit number all replicas share).
pub const SCHEDULER_LOCK_KEY: i64 = 0x5CA1_E5E5_0007_0001;

/// Who runs the scheduled jobs.
#[async_trait]
pub trait LeaderLease: Send + Sync + Debug {
    /// Becomes or stays the leader if possible; `true` while this replica leads. Called
    /// periodically; a leader must call it more often than a takeover should take.
    async fn try_acquire(&self) -> Result<bool, AlertsError>;
    /// Gives leadership up (shutdown), so another replica takes over at once.
    async fn release(&self);
}

/// Always the leader: one process owns the database (SQLite, `scalesense up`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleReplica;

#[async_trait]
impl LeaderLease for SingleReplica {
    async fn try_acquire(&self) -> Result<bool, AlertsError> {
        Ok(true)
    }

    async fn release(&self) {}
}

#[derive(Debug)]
struct Session {
    conn: PgConnection,
    leader: bool,
}

/// A PostgreSQL session-level advisory lock on a connection of its own.
#[derive(Debug)]
pub struct PgAdvisoryLease {
    url: String,
    key: i64,
    session: Mutex<Option<Session>>,
}

impl PgAdvisoryLease {
    /// Does not connect yet: the first [`LeaderLease::try_acquire`] does.
    pub fn new(url: impl Into<String>, key: i64) -> Self {
        Self {
            url: url.into(),
            key,
            session: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<PgConnection, AlertsError> {
        let mut conn = PgConnection::connect(&self.url).await?;
        // Best effort (ignored on Unix sockets, and by servers that refuse them): let the
        // server notice a vanished holder in ~25 s instead of the kernel's two hours.
        for setting in [
            "SET tcp_keepalives_idle = 10",
            "SET tcp_keepalives_interval = 5",
            "SET tcp_keepalives_count = 3",
        ] {
            if let Err(e) = sqlx::query(setting).execute(&mut conn).await {
                tracing::debug!(error = %e, setting, "lease session setting refused");
            }
        }
        Ok(conn)
    }

    async fn try_lock(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(self.key)
            .fetch_one(conn)
            .await
    }
}

#[async_trait]
impl LeaderLease for PgAdvisoryLease {
    async fn try_acquire(&self) -> Result<bool, AlertsError> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_mut() {
            let alive = if session.leader {
                // Session-level locks stack: a leader only checks its session is still there.
                sqlx::query("SELECT 1")
                    .execute(&mut session.conn)
                    .await
                    .map(|_| true)
            } else {
                self.try_lock(&mut session.conn).await
            };
            match alive {
                Ok(leads) => {
                    session.leader = leads;
                    return Ok(leads);
                }
                Err(e) => {
                    if session.leader {
                        tracing::warn!(error = %e, "scheduler lease connection lost; leadership given up");
                    }
                    *slot = None;
                }
            }
        }
        let mut conn = self.connect().await?;
        let leads = self.try_lock(&mut conn).await?;
        *slot = Some(Session {
            conn,
            leader: leads,
        });
        Ok(leads)
    }

    async fn release(&self) {
        let Some(mut session) = self.session.lock().await.take() else {
            return;
        };
        if session.leader
            && let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut session.conn)
                .await
        {
            tracing::debug!(error = %e, "advisory unlock failed; closing the session releases it");
        }
        if let Err(e) = session.conn.close().await {
            tracing::debug!(error = %e, "lease connection did not close cleanly");
        }
    }
}
