//! The scheduler: on the leader replica only, the engine's minute tick (scale offline, stale
//! readings, grace expiry) and the outbox worker (delivery, retries, digests when they fall
//! due). Every replica runs a `Scheduler`; the [`LeaderLease`] decides which one works.
//!
//! Becoming leader reloads the engine's grace periods from the store, so a takeover promotes
//! the grace periods the old leader was watching. Nothing here sleeps to wait for an event: the
//! outbox loop wakes on the engine's signal or on its poll interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::engine::AlertEngine;
use crate::lease::LeaderLease;
use crate::outbox::OutboxWorker;

/// How often each job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// The engine's tick (issue 7: every minute).
    pub tick_every: Duration,
    /// Lease attempts: a takeover happens within this (plus the old session's end).
    pub lease_every: Duration,
    /// Outbox polls when nothing signals (retries and digests fall due by time).
    pub outbox_every: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_every: Duration::from_mins(1),
            lease_every: Duration::from_secs(15),
            outbox_every: Duration::from_secs(5),
        }
    }
}

/// Another crate's periodic work (the daily report export, issue 9) that must run on one
/// replica only: the scheduler runs every job after its own minute tick, on the leader only.
/// A job reads the time from its own clock, and logs and survives its own failures.
#[async_trait::async_trait]
pub trait ScheduledJob: Send + Sync + std::fmt::Debug {
    /// For logs.
    fn name(&self) -> &'static str;
    /// One pass; called about once per `tick_every`, never concurrently with itself.
    async fn run(&self);
}

/// Runs the scheduled alert jobs while this replica holds the lease.
#[derive(Debug)]
pub struct Scheduler {
    engine: Arc<AlertEngine>,
    outbox: Arc<OutboxWorker>,
    lease: Arc<dyn LeaderLease>,
    config: SchedulerConfig,
    leader: AtomicBool,
    jobs: Vec<Arc<dyn ScheduledJob>>,
}

impl Scheduler {
    pub fn new(
        engine: Arc<AlertEngine>,
        outbox: Arc<OutboxWorker>,
        lease: Arc<dyn LeaderLease>,
        config: SchedulerConfig,
    ) -> Self {
        Self {
            engine,
            outbox,
            lease,
            config,
            leader: AtomicBool::new(false),
            jobs: Vec::new(),
        }
    }

    /// Adds a job run on the leader after every minute tick.
    #[must_use]
    pub fn with_job(mut self, job: Arc<dyn ScheduledJob>) -> Self {
        self.jobs.push(job);
        self
    }

    /// Whether this replica currently runs the jobs.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Runs until `shutdown`, then gives the lease up.
    pub async fn run(&self, shutdown: CancellationToken) {
        tokio::join!(self.lead_and_tick(&shutdown), self.deliver(&shutdown));
        self.leader.store(false, Ordering::SeqCst);
        self.lease.release().await;
    }

    async fn lead_and_tick(&self, shutdown: &CancellationToken) {
        let mut lease = interval(self.config.lease_every);
        let mut tick = interval(self.config.tick_every);
        lease.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = lease.tick() => {
                    let leads = self.lease.try_acquire().await.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "scheduler lease unavailable; not leading");
                        false
                    });
                    let led = self.leader.swap(leads, Ordering::SeqCst);
                    if leads && !led {
                        tracing::info!("this replica now runs the alert scheduler");
                        if let Err(e) = self.engine.load().await {
                            tracing::warn!(error = %e, "grace periods not reloaded; only new ones are watched");
                        }
                        self.tick().await;
                    } else if led && !leads {
                        tracing::warn!("this replica no longer runs the alert scheduler");
                    }
                }
                _ = tick.tick() => {
                    if self.is_leader() {
                        self.tick().await;
                    }
                }
            }
        }
    }

    async fn tick(&self) {
        match self.engine.tick().await {
            Ok(report) => tracing::debug!(?report, "alert tick"),
            Err(e) => tracing::warn!(error = %e, "alert tick failed; the next one retries"),
        }
        for job in &self.jobs {
            tracing::trace!(job = job.name(), "scheduled job");
            job.run().await;
        }
    }

    async fn deliver(&self, shutdown: &CancellationToken) {
        let signal = self.engine.outbox_signal();
        let mut poll = interval(self.config.outbox_every);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = poll.tick() => {}
                () = signal.notified() => {}
            }
            if !self.is_leader() {
                continue;
            }
            match self.outbox.run_once().await {
                Ok(report) if report != crate::OutboxReport::default() => {
                    tracing::debug!(?report, "outbox pass");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox pass failed; the next one retries"),
            }
        }
    }
}
