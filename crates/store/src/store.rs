//! The `Store` trait: everything the server, the jobs and the ingest pipeline may ask of the
//! database. Two implementations ([`crate::SqliteStore`], [`crate::PgStore`]) pass the same
//! conformance suite (`tests/conformance.rs`).
//!
//! Tenancy rule: every method that reads or writes customer data takes the caller's
//! [`AccountId`] and filters on it *in the SQL* (a join or a `WHERE account_id`), so a row of
//! another account is never even fetched; it reads as `NotFound`. The exceptions are explicit:
//! device-originated writes (`ingest_batch`, `record_device_status`, command answers) resolve the
//! account from the device; pre-authentication look-ups (`session`, `api_token`) resolve it from
//! the secret's hash; operator jobs (`purge`, `expire_commands`, the outbox worker's
//! `due_notifications` and `mark_notification_*`, `silent_devices`, dead letters, the beer
//! library) span accounts by design.

use async_trait::async_trait;
use scalesense_proto::{CommandId, DeviceId, LocationId, TapId};

use crate::error::Result;
use crate::ids::{AccountId, BeerId, KegId, RecordId, Series, UserId};
use crate::model::{
    Account, Alert, AlertChange, AlertHistoryEntry, AlertKey, ApiToken, AuditEntry, Beer,
    BeerKegWeight, Calibration, Channel, Command, DeadLetter, Device, DeviceStatusUpdate, Enqueued,
    Grace, History, HourlyPour, IngestOutcome, IngestReading, Keg, KegReportRow, KegState,
    Location, LocationFields, Millis, NewApiToken, NewAuditEntry, NewCalibration, NewChannel,
    NewCommand, NewDevice, NewKeg, NewNotification, NewSession, NewTare, NewUser, OutboxItem,
    PurgeStats, Reading, Role, Rollup, Session, Tap, TapState, TapView, TareOutcome, TareRecord,
    Telemetry, User,
};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The persistence boundary. Object-safe: the server holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> Backend;

    // --- accounts and locations -------------------------------------------------------------

    async fn create_account(&self, id: &AccountId, name: &str, at: Millis) -> Result<Account>;
    async fn account(&self, id: &AccountId) -> Result<Account>;

    async fn create_location(
        &self,
        account: &AccountId,
        id: &LocationId,
        fields: &LocationFields,
        at: Millis,
    ) -> Result<Location>;
    async fn location(&self, account: &AccountId, id: &LocationId) -> Result<Location>;
    async fn locations(&self, account: &AccountId) -> Result<Vec<Location>>;
    async fn update_location(
        &self,
        account: &AccountId,
        id: &LocationId,
        fields: &LocationFields,
    ) -> Result<Location>;

    // --- taps -------------------------------------------------------------------------------

    /// Creates tap `number` at `location` (id `loc#TAP#nn`) with an empty hot state row.
    async fn create_tap(
        &self,
        account: &AccountId,
        location: &LocationId,
        number: u16,
        name: &str,
    ) -> Result<Tap>;
    async fn tap(&self, account: &AccountId, tap: &TapId) -> Result<Tap>;
    /// Dashboard load: every tap of a location with its hot state, by tap number.
    async fn taps(&self, account: &AccountId, location: &LocationId) -> Result<Vec<TapView>>;
    async fn tap_state(&self, account: &AccountId, tap: &TapId) -> Result<TapState>;
    async fn set_tap_beer(
        &self,
        account: &AccountId,
        tap: &TapId,
        beer: Option<&BeerId>,
    ) -> Result<Tap>;

    // --- devices, telemetry, calibration ----------------------------------------------------

    async fn register_device(&self, account: &AccountId, device: &NewDevice) -> Result<Device>;
    async fn device(&self, account: &AccountId, id: &DeviceId) -> Result<Device>;
    async fn devices(&self, account: &AccountId, location: &LocationId) -> Result<Vec<Device>>;
    /// Puts the scale on `tap` (same account; the device moves to the tap's location), or takes
    /// it off with `None`. A tap holds one scale: a second one is a `Conflict`.
    async fn assign_device(
        &self,
        account: &AccountId,
        device: &DeviceId,
        tap: Option<&TapId>,
    ) -> Result<Device>;
    /// Sets the maintenance flag on the device and on its tap's hot state, together.
    async fn set_maintenance(
        &self,
        account: &AccountId,
        device: &DeviceId,
        on: bool,
    ) -> Result<Device>;
    /// Device-originated: the device and, through it, its account (a command answer carries
    /// only the device id). `None` when the device is unknown.
    async fn device_owner(&self, device: &DeviceId) -> Result<Option<Device>>;
    /// A `keg/status` message. `None` when the device is unknown (dead-letter it).
    async fn record_device_status(
        &self,
        device: &DeviceId,
        update: &DeviceStatusUpdate,
    ) -> Result<Option<Device>>;
    async fn telemetry(&self, account: &AccountId, device: &DeviceId) -> Result<Telemetry>;
    /// Devices of a location whose battery is below `below_pct`, lowest first.
    async fn low_battery_devices(
        &self,
        account: &AccountId,
        location: &LocationId,
        below_pct: f64,
    ) -> Result<Vec<(Device, Telemetry)>>;
    /// Operator job: devices not heard from since `seen_before` (or never), across accounts.
    async fn silent_devices(&self, seen_before: Millis) -> Result<Vec<Device>>;

    async fn record_calibration(
        &self,
        account: &AccountId,
        calibration: &NewCalibration,
    ) -> Result<Calibration>;
    /// The current calibration: the latest recorded.
    async fn calibration(
        &self,
        account: &AccountId,
        device: &DeviceId,
    ) -> Result<Option<Calibration>>;
    /// Newest first.
    async fn calibration_history(
        &self,
        account: &AccountId,
        device: &DeviceId,
        limit: u32,
    ) -> Result<Vec<Calibration>>;

    // --- beers ------------------------------------------------------------------------------

    /// Operator: adds a beer to the global library (`beer.location_id` must be `None`).
    async fn create_library_beer(&self, beer: &Beer) -> Result<Beer>;
    /// Adds a beer only `beer.location_id` (a location of `account`) sees.
    async fn create_custom_beer(&self, account: &AccountId, beer: &Beer) -> Result<Beer>;
    async fn beer(&self, account: &AccountId, id: &BeerId) -> Result<Beer>;
    /// Rewrites name, brewery, style, ABV and specific gravity of one of the account's custom
    /// beers; its location never changes (`beer.location_id` is ignored). Another account's
    /// beer is `NotFound`; a library beer is shared by every account and is a `Conflict`.
    async fn update_beer(&self, account: &AccountId, beer: &Beer) -> Result<Beer>;
    /// `?q=`: case-insensitive substring of name, brewery or style, over the global library and
    /// the custom beers of `location` (or of every location of the account when `None`).
    async fn search_beers(
        &self,
        account: &AccountId,
        location: Option<&LocationId>,
        q: &str,
        limit: u32,
    ) -> Result<Vec<Beer>>;
    /// Operator: the library's reference weights for a keg type (badge `default`).
    async fn set_default_keg_weight(
        &self,
        beer: &BeerId,
        keg_type: &str,
        full_kg: f64,
        empty_kg: f64,
    ) -> Result<()>;
    /// The weights this account sees: its own measurements, else the library defaults.
    async fn beer_keg_weights(
        &self,
        account: &AccountId,
        beer: &BeerId,
    ) -> Result<Vec<BeerKegWeight>>;

    // --- kegs and tares ---------------------------------------------------------------------

    async fn create_keg(&self, account: &AccountId, keg: &NewKeg) -> Result<Keg>;
    async fn keg(&self, account: &AccountId, id: &KegId) -> Result<Keg>;
    /// Kegs of a location, optionally in one state, newest first.
    async fn kegs(
        &self,
        account: &AccountId,
        location: &LocationId,
        state: Option<KegState>,
    ) -> Result<Vec<Keg>>;
    /// created → tapped on `tap`; a tap that already has a tapped keg is a `Conflict`.
    async fn tap_keg(
        &self,
        account: &AccountId,
        keg: &KegId,
        tap: &TapId,
        at: Millis,
    ) -> Result<Keg>;
    /// tapped → kicked (ran dry); frees the tap.
    async fn kick_keg(&self, account: &AccountId, keg: &KegId, at: Millis) -> Result<Keg>;
    /// created | tapped | kicked → removed.
    async fn remove_keg(&self, account: &AccountId, keg: &KegId, at: Millis) -> Result<Keg>;
    /// Records a tare on the keg and, in the same transaction, copies it to the device's
    /// telemetry; a full tare also updates the account's weight for the keg's beer and type.
    async fn record_tare(&self, account: &AccountId, tare: &NewTare) -> Result<TareOutcome>;
    /// Oldest first.
    async fn tare_records(&self, account: &AccountId, keg: &KegId) -> Result<Vec<TareRecord>>;

    // --- readings ---------------------------------------------------------------------------

    /// Stores a batch of readings in one transaction: duplicates on `(device_id, boot, seq)`
    /// are skipped and reported, tap state, telemetry, `last_seen` and rollups follow the new
    /// readings only. An error means nothing of the batch was written.
    async fn ingest_batch(&self, readings: &[IngestReading]) -> Result<IngestOutcome>;
    /// Raw readings of a series in `[start, end)`, oldest first.
    async fn readings(
        &self,
        account: &AccountId,
        series: &Series,
        start: Millis,
        end: Millis,
        limit: u32,
    ) -> Result<Vec<Reading>>;
    /// Rollup rows of a series in `[start, end)` for bucket size `bucket_ms` (5 min or 1 h).
    async fn rollups(
        &self,
        account: &AccountId,
        series: &Series,
        bucket_ms: Millis,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<Rollup>>;
    /// A chart of `[start, end)` in bins of `bin_ms`, bins aligned on `start`: from the 5-minute
    /// rollups when the range is ≤ 24 h, from the hourly rollups beyond (when `bin_ms` is a whole
    /// number of hours), from the daily rollups beyond 90 days (whole-day bins), and from raw
    /// readings only for bins that are not whole 5-minute multiples.
    async fn history(
        &self,
        account: &AccountId,
        series: &Series,
        start: Millis,
        end: Millis,
        bin_ms: Millis,
    ) -> Result<History>;
    /// Litres poured per UTC hour at a location (all taps), from the hourly rollups. The domain
    /// crate folds these into the location's local hour of day.
    async fn pour_by_hour(
        &self,
        account: &AccountId,
        location: &LocationId,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<HourlyPour>>;
    /// Inventory / keg lifespan: every keg of the location with rollups in `[start, end)` or
    /// tapped in it, with litres poured and first/last reading, from the daily rollups for whole
    /// UTC days and the hourly rollups for the partial days at the edges.
    async fn keg_report(
        &self,
        account: &AccountId,
        location: &LocationId,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<KegReportRow>>;
    /// Operator job: deletes raw readings older than each location's `raw_retention_days`
    /// (default 30), rollups older than a year, and expired grace rows.
    async fn purge(&self, now: Millis) -> Result<PurgeStats>;

    // --- alerts -----------------------------------------------------------------------------

    /// Starts a grace period, or returns the one already running for the key.
    async fn start_grace(&self, account: &AccountId, grace: &Grace) -> Result<Grace>;
    async fn grace(&self, account: &AccountId, key: &AlertKey) -> Result<Option<Grace>>;
    /// True when a grace row was removed.
    async fn clear_grace(&self, account: &AccountId, key: &AlertKey) -> Result<bool>;
    /// Makes `alert` the active one for its key, removes its grace row and appends to the log.
    /// A second active alert for the same key is a `Conflict`.
    async fn fire_alert(&self, account: &AccountId, alert: &Alert) -> Result<Alert>;
    /// Overwrites the active alert in place and appends to the log.
    async fn change_alert(
        &self,
        account: &AccountId,
        key: &AlertKey,
        change: &AlertChange,
    ) -> Result<Alert>;
    /// Removes the active alert and appends a `resolved` line to the log.
    async fn resolve_alert(
        &self,
        account: &AccountId,
        key: &AlertKey,
        at: Millis,
        by: Option<&str>,
    ) -> Result<Alert>;
    async fn active_alerts(&self, account: &AccountId, location: &LocationId)
    -> Result<Vec<Alert>>;
    /// Newest first.
    async fn alert_history(
        &self,
        account: &AccountId,
        location: &LocationId,
        limit: u32,
    ) -> Result<Vec<AlertHistoryEntry>>;

    // --- commands ---------------------------------------------------------------------------

    /// The device must belong to `account`. A reused id is a `Conflict`.
    async fn create_command(&self, account: &AccountId, command: &NewCommand) -> Result<Command>;
    async fn command(&self, account: &AccountId, id: &CommandId) -> Result<Command>;
    /// Newest first.
    async fn commands(
        &self,
        account: &AccountId,
        device: &DeviceId,
        limit: u32,
    ) -> Result<Vec<Command>>;
    /// Pipeline: published to the device. pending → delivered.
    async fn mark_command_delivered(
        &self,
        device: &DeviceId,
        id: &CommandId,
        at: Millis,
    ) -> Result<Command>;
    /// Pipeline: the device answered on `keg/response`. pending | delivered → succeeded | failed;
    /// a second answer is a `Conflict`.
    async fn complete_command(
        &self,
        device: &DeviceId,
        id: &CommandId,
        ok: bool,
        result: &serde_json::Value,
        at: Millis,
    ) -> Result<Command>;
    /// Operator job: pending | delivered commands past `expires_at` become expired; returns them
    /// so their retained topics can be cleared.
    async fn expire_commands(&self, now: Millis) -> Result<Vec<Command>>;
    /// Pipeline: unanswered, unexpired commands of a device, oldest first (republish on
    /// reconnect).
    async fn open_commands(&self, device: &DeviceId, now: Millis) -> Result<Vec<Command>>;

    // --- users, sessions, API tokens --------------------------------------------------------

    /// E-mail is stored lower-cased and is unique within the account (`Conflict`).
    async fn create_user(&self, account: &AccountId, user: &NewUser) -> Result<User>;
    async fn user(&self, account: &AccountId, id: &UserId) -> Result<User>;
    async fn user_by_email(&self, account: &AccountId, email: &str) -> Result<Option<User>>;
    async fn users(&self, account: &AccountId) -> Result<Vec<User>>;
    /// Replaces the user's password hash. Sessions are left alone: the caller revokes them.
    async fn set_user_password(
        &self,
        account: &AccountId,
        user: &UserId,
        password_hash: &str,
    ) -> Result<User>;
    /// Changes the role and/or the allowed locations (`Some(None)`: every location); a `None`
    /// argument keeps the current value. Each allowed location must belong to `account`.
    async fn update_user(
        &self,
        account: &AccountId,
        user: &UserId,
        role: Option<Role>,
        allowed_locations: Option<Option<Vec<LocationId>>>,
    ) -> Result<User>;
    async fn create_session(&self, account: &AccountId, session: &NewSession) -> Result<Session>;
    /// Pre-auth: the live session for a token hash; `None` when unknown, expired or revoked.
    async fn session(&self, token_hash: &str, now: Millis) -> Result<Option<Session>>;
    /// True when a live session was revoked.
    async fn revoke_session(&self, token_hash: &str, at: Millis) -> Result<bool>;
    /// Revokes every live session of a user; returns how many.
    async fn revoke_user_sessions(
        &self,
        account: &AccountId,
        user: &UserId,
        at: Millis,
    ) -> Result<u64>;
    async fn create_api_token(&self, account: &AccountId, token: &NewApiToken) -> Result<ApiToken>;
    /// Pre-auth: the live token for a hash, recording `now` as its last use.
    async fn api_token(&self, token_hash: &str, now: Millis) -> Result<Option<ApiToken>>;
    async fn api_tokens(&self, account: &AccountId) -> Result<Vec<ApiToken>>;
    async fn revoke_api_token(
        &self,
        account: &AccountId,
        id: &RecordId,
        at: Millis,
    ) -> Result<ApiToken>;

    // --- notifications ----------------------------------------------------------------------

    async fn create_channel(&self, account: &AccountId, channel: &NewChannel) -> Result<Channel>;
    async fn channels(&self, account: &AccountId) -> Result<Vec<Channel>>;
    /// Queues a notification once per idempotency key (per account).
    async fn enqueue_notification(
        &self,
        account: &AccountId,
        notification: &NewNotification,
    ) -> Result<Enqueued>;
    /// Operator job: pending items due at `now`, oldest first.
    async fn due_notifications(&self, now: Millis, limit: u32) -> Result<Vec<OutboxItem>>;
    async fn mark_notification_sent(&self, id: i64, at: Millis) -> Result<()>;
    /// Counts the attempt; retries at `retry_at`, or gives up (`dead`) when `None`.
    async fn mark_notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Millis>,
    ) -> Result<()>;
    /// Newest first.
    async fn outbox(&self, account: &AccountId, limit: u32) -> Result<Vec<OutboxItem>>;
    /// One channel of the account.
    async fn channel(&self, account: &AccountId, id: &RecordId) -> Result<Channel>;
    /// Rewrites a channel's target, settings and enabled flag.
    async fn update_channel(
        &self,
        account: &AccountId,
        id: &RecordId,
        update: &crate::model::ChannelUpdate,
    ) -> Result<Channel>;
    /// Removes a channel and, in the same transaction, its outbox rows (queued notifications
    /// and their delivery history go with it). Returns the removed channel.
    async fn delete_channel(&self, account: &AccountId, id: &RecordId) -> Result<Channel>;
    /// Newest first: the outbox items of `location`'s channels and of the account-wide ones.
    async fn location_outbox(
        &self,
        account: &AccountId,
        location: &LocationId,
        limit: u32,
    ) -> Result<Vec<OutboxItem>>;

    // --- dead letters and audit -------------------------------------------------------------

    /// Keeps at most `DEAD_LETTER_PAYLOAD_CAP` bytes of the payload.
    async fn record_dead_letter(
        &self,
        topic: &str,
        payload: &[u8],
        reason: &str,
        at: Millis,
    ) -> Result<i64>;
    /// Newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>>;
    async fn record_audit(&self, account: &AccountId, entry: &NewAuditEntry) -> Result<AuditEntry>;
    /// Newest first.
    async fn audit_log(&self, account: &AccountId, limit: u32) -> Result<Vec<AuditEntry>>;

    // --- reports (issue 9) ------------------------------------------------------------------

    /// Operator job (the daily export): every location of every account.
    async fn all_locations(&self) -> Result<Vec<Location>>;
    /// Mean battery per tap and UTC hour at a location in `[start, end)`, from the hourly
    /// rollups (the battery of the scale that was on the tap), by tap then hour.
    async fn battery_by_hour(
        &self,
        account: &AccountId,
        location: &LocationId,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<crate::model::TapBatteryHour>>;
    /// Records a generated export file; the location must belong to `account`.
    async fn record_export(
        &self,
        account: &AccountId,
        export: &crate::model::ExportRecord,
    ) -> Result<crate::model::ExportRecord>;
    /// Operator job: deletes the export rows created before `before` and returns them, so the
    /// caller removes their files.
    async fn purge_exports(&self, before: Millis) -> Result<Vec<crate::model::ExportRecord>>;
    /// Claims the daily export of `location` for the local date `local_date` (`YYYY-MM-DD`):
    /// true the first time, false for every later claim of the same day (any replica, any
    /// restart).
    async fn claim_daily_export(
        &self,
        account: &AccountId,
        location: &LocationId,
        local_date: &str,
        at: Millis,
    ) -> Result<bool>;
}
