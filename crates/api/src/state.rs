//! What every handler can reach ([`ApiState`]), and the traits through which the API reaches
//! things that live elsewhere: the time ([`Clock`]), the broker ([`CommandSink`]) and the live
//! events ([`ChangeSink`]).
//!
//! Handlers take "now" only from the [`Clock`] so session expiry, throttling and command expiry
//! are testable without sleeping. Nothing here may hold a lock across an `.await`.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use scalesense_proto::{CommandName, DeviceId, LocationId, TapId};
use scalesense_store::{AccountId, Store};

use crate::auth::password::{PasswordCost, Passwords};
use crate::auth::throttle::{LoginThrottle, ThrottleConfig};

/// Milliseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync + Debug {
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that reads what it was set to: tests and the fixture server move it by hand.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a command could not be handed to the broker. The command stays `pending` in the store;
/// the server republishes open commands when the device reconnects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot publish the command: {0}")]
pub struct CommandSinkError(pub String);

/// Publishes a command to a scale (`keg/command/{device}/{name}`, retained). Implemented by the
/// server over its MQTT client; the API records the command in the store first.
#[async_trait]
pub trait CommandSink: Send + Sync + Debug {
    async fn publish_command(
        &self,
        device: &DeviceId,
        name: CommandName,
        command: &scalesense_proto::Command,
    ) -> Result<(), CommandSinkError>;
}

/// Told after a REST write changed what a tap view shows (beer, keg, scale), so the server can
/// push a `tap_updated` event to the dashboards. Must not block: it only queues.
pub trait ChangeSink: Send + Sync + Debug {
    /// `changed` names the tap view's fields that changed (`beer_id`, `keg_id`, …).
    fn tap_changed(&self, location: &LocationId, tap: &TapId, changed: &[&str]);
}

/// Sends a channel's test notification now ("Send test" in the settings). Implemented by the
/// server over the alerts' outbox worker; the API only checks that the caller may see the
/// channel. `Err` carries the delivery error for people (an SMTP or HTTP failure).
#[async_trait]
pub trait NotificationTester: Send + Sync + Debug {
    async fn send_test(
        &self,
        account: &AccountId,
        channel: &scalesense_store::RecordId,
    ) -> Result<(), String>;
}

/// One command a [`RecordingCommandSink`] was asked to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedCommand {
    pub device: DeviceId,
    pub name: CommandName,
    pub command: scalesense_proto::Command,
}

/// A [`CommandSink`] that keeps what it is asked to publish, for tests and the fixture server
/// (which has no broker).
#[derive(Debug, Default)]
pub struct RecordingCommandSink {
    published: Mutex<Vec<PublishedCommand>>,
}

impl RecordingCommandSink {
    /// Everything published so far, oldest first.
    pub fn published(&self) -> Vec<PublishedCommand> {
        match self.published.lock() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[async_trait]
impl CommandSink for RecordingCommandSink {
    async fn publish_command(
        &self,
        device: &DeviceId,
        name: CommandName,
        command: &scalesense_proto::Command,
    ) -> Result<(), CommandSinkError> {
        let entry = PublishedCommand {
            device: device.clone(),
            name,
            command: command.clone(),
        };
        match self.published.lock() {
            Ok(mut p) => p.push(entry),
            Err(poisoned) => poisoned.into_inner().push(entry),
        }
        Ok(())
    }
}

/// When the session cookie carries `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureCookies {
    /// When the request came over HTTPS: `X-Forwarded-Proto: https` from a trusted proxy, or an
    /// `https` request URI.
    #[default]
    Auto,
    Always,
    /// Plain-HTTP development on a laptop only.
    Never,
}

/// The API's settings. `Default` is production's.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub secure_cookies: SecureCookies,
    /// A session lasts this long from login (then the user logs in again).
    pub session_ttl: Duration,
    /// A command the scale has not run by then is answered with an error by the scale.
    pub command_ttl: Duration,
    /// Argon2id cost for new password hashes (verification reads the cost from each hash).
    pub password_cost: PasswordCost,
    /// Trust `X-Forwarded-For` / `X-Forwarded-Proto` (only behind a proxy that sets them).
    pub trust_proxy_headers: bool,
    /// The account a login without `account` belongs to (a single-bar install).
    pub default_account: Option<AccountId>,
    pub throttle: ThrottleConfig,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            secure_cookies: SecureCookies::Auto,
            session_ttl: Duration::from_hours(12),
            command_ttl: Duration::from_mins(10),
            password_cost: PasswordCost::default(),
            trust_proxy_headers: false,
            default_account: None,
            throttle: ThrottleConfig::default(),
            body_limit: 64 * 1024,
        }
    }
}

/// Why the API state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("password hashing is misconfigured: {0}")]
    Password(String),
}

/// Everything a handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub commands: Arc<dyn CommandSink>,
    pub config: Arc<ApiConfig>,
    /// Where tap changes are announced; `None`: nobody listens (tests, the fixture server).
    pub changes: Option<Arc<dyn ChangeSink>>,
    /// Sends test notifications; `None`: the test route answers `503`.
    pub notifier: Option<Arc<dyn NotificationTester>>,
    /// Inventory exports and their signed downloads; `None`: those routes answer `503`.
    pub exports: Option<Arc<scalesense_reports::Exporter>>,
    pub(crate) passwords: Arc<Passwords>,
    pub(crate) throttle: Arc<LoginThrottle>,
}

impl ApiState {
    /// Builds the state; hashes the dummy password that unknown-user logins are checked
    /// against (so they cost as much as a wrong password).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        commands: Arc<dyn CommandSink>,
        config: ApiConfig,
    ) -> Result<Self, StateError> {
        let passwords = Passwords::new(config.password_cost).map_err(StateError::Password)?;
        let throttle = LoginThrottle::new(config.throttle);
        Ok(Self {
            store,
            clock,
            commands,
            config: Arc::new(config),
            changes: None,
            notifier: None,
            exports: None,
            passwords: Arc::new(passwords),
            throttle: Arc::new(throttle),
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Lets `POST /channels/{id}/test` deliver through `notifier`.
    #[must_use]
    pub fn with_notifier(mut self, notifier: Arc<dyn NotificationTester>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Serves inventory exports and downloads through `exports`.
    #[must_use]
    pub fn with_exports(mut self, exports: Arc<scalesense_reports::Exporter>) -> Self {
        self.exports = Some(exports);
        self
    }

    /// Announces tap changes to `changes` (the server's event bus).
    #[must_use]
    pub fn with_changes(mut self, changes: Arc<dyn ChangeSink>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Tells the change sink, if any, that a write changed `changed` on `tap`.
    pub fn tap_changed(&self, location: &LocationId, tap: &TapId, changed: &[&str]) {
        if let Some(changes) = &self.changes {
            changes.tap_changed(location, tap, changed);
        }
    }
}
