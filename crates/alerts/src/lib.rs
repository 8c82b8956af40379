//! Scale Sense alerts (issue 7): tell the bar before a keg runs dry or a scale goes quiet.
//!
//! - [`AlertEngine`] runs the domain crate's alert machine and rules on stored data: after
//!   every committed batch ([`AlertEngine::after_batch`], fed through [`AlertFeed`] so ingest
//!   never waits), when a calibration lands, and on the scheduler's minute
//!   ([`AlertEngine::tick`]). It writes every change to the store, emits live events at once
//!   ([`AlertEvents`]) and queues notifications in the store's outbox.
//! - [`OutboxWorker`] delivers the outbox at least once: e-mail over SMTP
//!   ([`notify::email`]) and signed webhooks ([`notify::webhook`]), with backoff, then `dead`.
//!   Quiet hours hold e-mail and webhooks for a location's overnight [`digest`].
//! - [`Scheduler`] runs the tick and the worker on one replica at a time ([`LeaderLease`]).
//!
//! Boundaries: the domain crate decides (states, thresholds, hysteresis, quiet hours); the
//! store keeps (alerts, grace rows, history, outbox); this crate only connects them and talks
//! to the outside world. It never evaluates inside the ingest transaction and never sends from
//! the engine. Web Push is not implemented: push channels are never queued.

mod clock;
mod context;
pub mod digest;
mod engine;
mod error;
mod events;
mod feed;
mod lease;
pub mod notify;
mod outbox;
mod scheduler;
mod settings;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use clock::{Clock, ManualClock, SystemClock};
pub use context::AlertContext;
pub use engine::{AlertEngine, BatchSummary, EvalReport};
pub use error::{AlertsError, DeliveryError};
pub use events::{AlertEvent, AlertEvents};
pub use feed::AlertFeed;
pub use lease::{LeaderLease, PgAdvisoryLease, SCHEDULER_LOCK_KEY, SingleReplica};
pub use notify::email::{Attachment, Mailer, SmtpConfig, SmtpSecurity};
pub use outbox::{OutboxConfig, OutboxReport, OutboxWorker};
pub use scheduler::{ScheduledJob, Scheduler, SchedulerConfig};
pub use settings::{ChannelRules, LocationSettings};
