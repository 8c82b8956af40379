//! The hand-off from the ingest pipeline to the alert engine, so evaluating alerts never slows
//! ingest: [`AlertFeed::submit`] merges a batch summary into one pending summary and returns at
//! once; [`AlertFeed::run`] evaluates whatever is pending, one evaluation at a time.
//!
//! Merging is lossless for the engine (it reads the current state from the store), so the
//! pending summary is bounded by the number of taps and scales, never by the ingest rate: no
//! unbounded queue, no back-pressure on the pipeline. An evaluation that fails is merged back
//! and retried with the next submission.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine::{AlertEngine, BatchSummary};

/// Batch summaries waiting for the engine.
#[derive(Debug, Default)]
pub struct AlertFeed {
    pending: Mutex<BatchSummary>,
    wake: Notify,
}

impl AlertFeed {
    pub fn new() -> Self {
        Self::default()
    }

    /// Never blocks (a short lock, no await): call it right after a commit.
    pub fn submit(&self, batch: BatchSummary) {
        if batch.is_empty() {
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(batch);
        self.wake.notify_one();
    }

    fn take(&self) -> BatchSummary {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Evaluates submitted batches until `shutdown`.
    pub async fn run(&self, engine: &AlertEngine, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
            }
            let batch = self.take();
            if batch.is_empty() {
                continue;
            }
            let report = engine.after_batch(&batch).await;
            if report.failed_locations > 0 {
                // Evaluation reads the current state, so doing the batch again is harmless.
                tracing::warn!(
                    failed = report.failed_locations,
                    "alert evaluation failed for some locations; retried with the next batch"
                );
                self.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .merge(batch);
            }
        }
    }
}
