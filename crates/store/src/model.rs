//! The records the store reads and writes (BRIEF §4), as plain data.
//!
//! Quantities are SI numbers (kilograms, litres, volts, percent) and times are epoch
//! milliseconds (`Millis`); unit conversion and every domain rule live in the domain crate,
//! never here. Location settings stay a JSON document the domain crate parses: the store only
//! reads the one key it needs itself (`raw_retention_days`).

use scalesense_proto::{CommandId, DeviceId, LocationId, TapId};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ids::{AccountId, BeerId, KegId, RecordId, Series, UserId};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Five minutes, the fine rollup bucket.
pub const BUCKET_5_MIN: Millis = 5 * 60 * 1000;
/// One hour, the rollup bucket for ranges beyond a day.
pub const BUCKET_1_HOUR: Millis = 60 * 60 * 1000;
/// One UTC day, the rollup bucket for year-long reports.
pub const BUCKET_1_DAY: Millis = 24 * BUCKET_1_HOUR;
/// Every rollup bucket size the ingest maintains.
pub const ROLLUP_BUCKETS: [Millis; 3] = [BUCKET_5_MIN, BUCKET_1_HOUR, BUCKET_1_DAY];
/// Raw readings are kept this many days unless a location's settings say otherwise.
pub const DEFAULT_RAW_RETENTION_DAYS: i64 = 30;
/// Rollups are kept this long.
pub const ROLLUP_RETENTION: Millis = 366 * 24 * BUCKET_1_HOUR;
/// Dead-letter payloads are cut to this many bytes: enough to diagnose, never a disk filler.
pub const DEAD_LETTER_PAYLOAD_CAP: usize = 4096;
/// A history query may return at most this many bins.
pub const MAX_HISTORY_POINTS: i64 = 20_000;
/// A volume drop smaller than this (litres) between readings is scale noise, not a pour.
pub const POUR_NOISE_FLOOR_L: f64 = 0.1;

/// Maps a stored enum string back, reporting an unknown value as corruption.
fn unknown(kind: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {kind} {value:?} in the database"))
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// The text stored in the database and used on the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub(crate) fn parse(value: &str) -> Result<Self, StoreError> {
                match value {
                    $($text => Ok(Self::$variant),)+
                    other => Err(unknown($kind, other)),
                }
            }
        }
    };
}

text_enum!(
    /// How a location displays quantities.
    Units, "units" { Metric => "metric", Imperial => "imperial" }
);

text_enum!(
    /// Where a keg is in its life. Allowed moves: created → tapped → kicked → removed, and
    /// created/tapped → removed.
    KegState, "keg state" {
        Created => "created", Tapped => "tapped", Kicked => "kicked", Removed => "removed"
    }
);

text_enum!(
    /// Which tare was taken.
    TareKind, "tare kind" { Empty => "empty", Full => "full" }
);

/// Where a beer's keg weights came from (seed 002's badges). Derived from `measured_at` and
/// `measured_count`, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightSource {
    /// The library's reference weights: no real tare yet.
    Default,
    /// One real full tare.
    Set,
    /// The running average of several full tares.
    Calculated,
}

text_enum!(
    /// Last known connection state of a scale.
    DeviceStatus, "device status" { Online => "online", Offline => "offline" }
);

text_enum!(
    /// A user's role (BRIEF §6).
    Role, "role" { Staff => "staff", Manager => "manager", Admin => "admin" }
);

text_enum!(
    /// An alert's lifecycle state while active (resolved alerts leave the active table).
    AlertState, "alert state" {
        Firing => "firing", Active => "active", Escalated => "escalated",
        Acknowledged => "acknowledged", Resolved => "resolved"
    }
);

text_enum!(
    /// How loud an alert is.
    Severity, "severity" { Info => "info", Warning => "warning", Critical => "critical" }
);

text_enum!(
    /// Where a command is. pending → delivered → succeeded | failed; pending | delivered →
    /// expired; a response may also arrive while still pending.
    CommandState, "command state" {
        Pending => "pending", Delivered => "delivered", Succeeded => "succeeded",
        Failed => "failed", Expired => "expired"
    }
);

text_enum!(
    /// Delivery state of an outbox notification.
    OutboxStatus, "outbox status" {
        Pending => "pending", Sent => "sent", Dead => "dead"
    }
);

text_enum!(
    /// How a notification channel delivers.
    ChannelKind, "channel kind" { Email => "email", Webhook => "webhook", Push => "push" }
);

/// A customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: Millis,
}

/// A bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub id: LocationId,
    pub account_id: AccountId,
    pub name: String,
    pub address: String,
    /// IANA time zone name, e.g. `Europe/Dublin`.
    pub time_zone: String,
    pub units: Units,
    /// Thresholds, quiet hours, pour-rate window, export time, `raw_retention_days`: parsed by
    /// the domain crate.
    pub settings: serde_json::Value,
    pub created_at: Millis,
}

/// The editable fields of a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationFields {
    pub name: String,
    pub address: String,
    pub time_zone: String,
    pub units: Units,
    pub settings: serde_json::Value,
}

/// A tap's configuration (the cold row). `device_id` and `keg_id` are derived: the device
/// assigned to the tap and the keg currently tapped on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tap {
    pub id: TapId,
    pub location_id: LocationId,
    pub number: u16,
    pub name: String,
    pub beer_id: Option<BeerId>,
    pub device_id: Option<DeviceId>,
    pub keg_id: Option<KegId>,
}

/// The hot row written by every reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapState {
    pub tap_id: TapId,
    /// The series the last reading went to.
    pub series: Option<Series>,
    pub level_pct: Option<f64>,
    pub volume_l: Option<f64>,
    pub weight_kg: Option<f64>,
    pub updated_at: Option<Millis>,
    pub tare_status: Option<String>,
    pub maintenance: bool,
    pub last_boot: Option<i64>,
    pub last_seq: Option<i64>,
}

/// A tap with its hot state: the dashboard's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapView {
    pub tap: Tap,
    pub state: TapState,
}

/// A beer, global (no location) or custom to one location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beer {
    pub id: BeerId,
    pub location_id: Option<LocationId>,
    pub name: String,
    pub brewery: String,
    pub style: String,
    pub abv: f64,
    pub specific_gravity: f64,
}

/// Weights of one keg type filled with one beer, as seen by one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeerKegWeight {
    pub beer_id: BeerId,
    pub keg_type: String,
    pub full_kg: f64,
    pub empty_kg: f64,
    /// When a real tare last set this, if ever.
    pub measured_at: Option<Millis>,
    /// How many full tares are averaged into `full_kg`.
    pub measured_count: i64,
    pub source: WeightSource,
}

/// A physical keg and its lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keg {
    pub id: KegId,
    pub location_id: LocationId,
    pub beer_id: BeerId,
    pub keg_type: String,
    pub full_kg: f64,
    pub empty_kg: f64,
    pub specific_gravity: f64,
    /// The tap it is (or was last) on.
    pub tap_id: Option<TapId>,
    pub state: KegState,
    pub created_at: Millis,
    pub tapped_at: Option<Millis>,
    pub kicked_at: Option<Millis>,
    pub removed_at: Option<Millis>,
}

/// A new keg, in state `created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewKeg {
    pub id: KegId,
    pub location_id: LocationId,
    pub beer_id: BeerId,
    pub keg_type: String,
    pub full_kg: f64,
    pub empty_kg: f64,
    pub specific_gravity: f64,
    pub created_at: Millis,
}

/// One tare measurement: the keg's audit trail, copied to the device's telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TareRecord {
    pub id: i64,
    pub keg_id: KegId,
    pub device_id: DeviceId,
    pub kind: TareKind,
    /// The scale's raw ADC value at the tare (the empty offset, or the full reference).
    pub raw: i64,
    pub weight_kg: f64,
    pub by: String,
    pub at: Millis,
}

/// A tare to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTare {
    pub keg_id: KegId,
    pub device_id: DeviceId,
    pub kind: TareKind,
    pub raw: i64,
    pub weight_kg: f64,
    pub by: String,
    pub at: Millis,
}

/// What a tare changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TareOutcome {
    pub record: TareRecord,
    /// The beer's keg weight after a full tare updated it.
    pub beer_weight: Option<BeerKegWeight>,
}

/// A scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub account_id: AccountId,
    pub location_id: Option<LocationId>,
    pub tap_id: Option<TapId>,
    pub fw_version: Option<String>,
    pub status: DeviceStatus,
    pub last_seen: Option<Millis>,
    pub maintenance: bool,
    pub created_at: Millis,
}

/// A status message from a scale (`keg/status/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatusUpdate {
    pub status: DeviceStatus,
    pub fw_version: Option<String>,
    pub maintenance: Option<bool>,
    pub battery_v: Option<f64>,
    pub battery_pct: Option<f64>,
    pub rssi: Option<i64>,
    pub at: Millis,
}

/// A device's hot health row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub device_id: DeviceId,
    pub battery_v: Option<f64>,
    pub battery_pct: Option<f64>,
    pub rssi: Option<i64>,
    pub updated_at: Option<Millis>,
    /// Diagnostic copy of the last empty tare (seed 002's dual write).
    pub tare_empty_raw: Option<i64>,
    /// Diagnostic copy of the last full tare's weight.
    pub tare_full_kg: Option<f64>,
    pub tare_at: Option<Millis>,
}

/// A calibration of a scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub id: i64,
    pub device_id: DeviceId,
    pub scale_factor: f64,
    pub zero_offset: i64,
    pub method: String,
    pub known_weight_kg: Option<f64>,
    pub drift_pct: Option<f64>,
    pub by: String,
    pub at: Millis,
}

/// A calibration to record; it becomes the device's current one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCalibration {
    pub device_id: DeviceId,
    pub scale_factor: f64,
    pub zero_offset: i64,
    pub method: String,
    pub known_weight_kg: Option<f64>,
    pub drift_pct: Option<f64>,
    pub by: String,
    pub at: Millis,
}

/// One reading as it arrives from a scale, already validated at the edge and converted to SI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestReading {
    pub device_id: DeviceId,
    pub boot: i64,
    pub seq: i64,
    /// The reading's time (the scale's clock, or the receive time when it has none).
    pub ts: Millis,
    pub weight_kg: f64,
    pub level_pct: f64,
    pub battery_v: Option<f64>,
    pub battery_pct: Option<f64>,
    pub rssi: Option<i64>,
    pub stable: bool,
    pub tare_status: Option<String>,
}

/// Where a stored reading went, for events and acks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReading {
    pub account_id: AccountId,
    pub location_id: LocationId,
    pub tap_id: TapId,
    pub keg_id: Option<KegId>,
    pub series: Series,
    /// Litres left, `(weight − keg empty) / sg`, when a keg is tapped.
    pub volume_l: Option<f64>,
}

/// What happened to one reading of a batch, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReadingOutcome {
    /// Newly stored.
    Stored(StoredReading),
    /// Already stored earlier (or earlier in the same batch): nothing changed.
    Duplicate,
    /// No such device: dead-letter it.
    UnknownDevice,
    /// The device exists but is on no tap: telemetry was updated, the reading was not stored.
    Unassigned,
    /// The reading carries a non-finite number or an out-of-range value.
    Invalid(String),
}

/// The result of `ingest_batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestOutcome {
    /// One entry per input reading, in input order.
    pub readings: Vec<ReadingOutcome>,
}

impl IngestOutcome {
    pub fn stored(&self) -> usize {
        self.readings
            .iter()
            .filter(|o| matches!(o, ReadingOutcome::Stored(_)))
            .count()
    }

    pub fn duplicates(&self) -> usize {
        self.readings
            .iter()
            .filter(|o| matches!(o, ReadingOutcome::Duplicate))
            .count()
    }
}

/// A stored raw reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub device_id: DeviceId,
    pub boot: i64,
    pub seq: i64,
    pub series: Series,
    pub tap_id: TapId,
    pub keg_id: Option<KegId>,
    pub ts: Millis,
    pub weight_kg: f64,
    pub level_pct: f64,
    pub volume_l: Option<f64>,
    pub battery_v: Option<f64>,
    pub battery_pct: Option<f64>,
    pub rssi: Option<i64>,
    pub stable: bool,
}

/// One rollup bucket of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub series: Series,
    pub bucket_ms: Millis,
    pub bucket_start: Millis,
    pub count: i64,
    pub level_sum: f64,
    pub level_min: f64,
    pub level_max: f64,
    pub battery_sum: f64,
    pub battery_count: i64,
    pub first_ts: Millis,
    pub first_volume_l: Option<f64>,
    pub last_ts: Millis,
    pub last_volume_l: Option<f64>,
    /// Sum of volume decreases beyond the noise floor, litres.
    pub poured_l: f64,
}

/// One point of a history chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Start of the bin.
    pub t: Millis,
    pub level_avg: f64,
    pub level_min: f64,
    pub level_max: f64,
    pub battery_avg: Option<f64>,
    /// Litres poured in the bin; `None` when answered from raw readings, which carry no pour
    /// count of their own.
    pub poured_l: Option<f64>,
}

/// Which stored data answered a history query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistorySource {
    Raw,
    Rollup5Min,
    Rollup1Hour,
    Rollup1Day,
}

/// A history chart: level and battery series of one reading series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub source: HistorySource,
    pub points: Vec<HistoryPoint>,
}

/// Litres poured at a location in one UTC hour, all taps together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HourlyPour {
    pub hour_start: Millis,
    pub poured_l: f64,
}

/// One keg's line in the inventory / lifespan report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KegReportRow {
    pub keg_id: KegId,
    pub beer_id: BeerId,
    pub keg_type: String,
    pub tap_id: Option<TapId>,
    pub state: KegState,
    pub tapped_at: Option<Millis>,
    pub kicked_at: Option<Millis>,
    pub first_reading: Option<Millis>,
    pub last_reading: Option<Millis>,
    pub poured_l: f64,
    pub readings: i64,
}

/// What `purge` deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeStats {
    pub readings: u64,
    pub rollups: u64,
    pub grace_rows: u64,
}

/// An alert that is currently active (one per location, kind and entity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub location_id: LocationId,
    /// `low_keg`, `scale_offline`, `low_battery`, `calibration_drift`, `stale_reading`, …
    pub kind: String,
    /// What it is about: a tap id or a device id.
    pub entity: String,
    pub severity: Severity,
    pub state: AlertState,
    pub fired_at: Millis,
    pub updated_at: Millis,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Millis>,
    pub context: serde_json::Value,
}

/// One line of the append-only alert log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertHistoryEntry {
    pub id: i64,
    pub location_id: LocationId,
    pub kind: String,
    pub entity: String,
    pub severity: Severity,
    pub state: AlertState,
    pub at: Millis,
    pub by: Option<String>,
    pub context: serde_json::Value,
}

/// A change to an active alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    pub state: AlertState,
    pub severity: Severity,
    pub at: Millis,
    /// Who acknowledged, when `state` is `Acknowledged`.
    pub by: Option<String>,
    pub context: serde_json::Value,
}

/// A condition that has started to hold and must persist for the grace period before it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grace {
    pub location_id: LocationId,
    pub kind: String,
    pub entity: String,
    pub severity: Severity,
    pub started_at: Millis,
    pub expires_at: Millis,
}

/// A command to a scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: CommandId,
    pub device_id: DeviceId,
    pub name: String,
    pub params: serde_json::Value,
    pub state: CommandState,
    pub issued_by: String,
    pub issued_at: Millis,
    pub expires_at: Millis,
    pub delivered_at: Option<Millis>,
    pub answered_at: Option<Millis>,
    pub result: Option<serde_json::Value>,
}

/// A command to create, in state `pending`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCommand {
    pub id: CommandId,
    pub device_id: DeviceId,
    pub name: String,
    pub params: serde_json::Value,
    pub issued_by: String,
    pub issued_at: Millis,
    pub expires_at: Millis,
}

/// A dashboard user. `password_hash` is a PHC string made by the server; the store never sees a
/// password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub account_id: AccountId,
    /// Stored lower-cased; unique within the account.
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    /// `None`: every location of the account.
    pub allowed_locations: Option<Vec<LocationId>>,
    pub created_at: Millis,
}

/// A login session, looked up by the hash of its cookie token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub token_hash: String,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub role: Role,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// An API token for integrations, looked up by the hash of the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: RecordId,
    pub account_id: AccountId,
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub id: RecordId,
    pub account_id: AccountId,
    /// `None`: all locations of the account.
    pub location_id: Option<LocationId>,
    pub kind: ChannelKind,
    /// An e-mail address, a URL or a push subscription id.
    pub target: String,
    pub settings: serde_json::Value,
    pub enabled: bool,
}

/// A notification waiting for (or done with) delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: i64,
    pub account_id: AccountId,
    pub channel_id: RecordId,
    pub idempotency_key: String,
    pub payload: serde_json::Value,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub sent_at: Option<Millis>,
}

/// A notification to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    pub channel_id: RecordId,
    /// Enqueuing the same key twice stores it once.
    pub idempotency_key: String,
    pub payload: serde_json::Value,
    pub next_attempt_at: Millis,
    pub created_at: Millis,
}

/// The result of enqueuing a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    pub id: i64,
    /// True when the key was already queued; the existing item is returned.
    pub duplicate: bool,
}

/// A message that could not be processed, kept for the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    /// At most [`DEAD_LETTER_PAYLOAD_CAP`] bytes of the original payload.
    pub payload: Vec<u8>,
    /// The original payload length, so a cut is visible.
    pub payload_len: i64,
    pub reason: String,
    pub received_at: Millis,
}

/// One line of an account's audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub account_id: AccountId,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub at: Millis,
}

/// An audit line to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub at: Millis,
}

/// Names one active alert, grace row or history thread: seed 002's `ACTIVE#<kind>#<entity>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub location_id: LocationId,
    pub kind: String,
    pub entity: String,
}

/// A scale to register with an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDevice {
    pub id: DeviceId,
    pub location_id: Option<LocationId>,
    pub fw_version: Option<String>,
    pub created_at: Millis,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUser {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub allowed_locations: Option<Vec<LocationId>>,
    pub created_at: Millis,
}

/// A session to open for a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSession {
    pub token_hash: String,
    pub user_id: UserId,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// An API token to create; the server keeps only the hash of the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewApiToken {
    pub id: RecordId,
    pub token_hash: String,
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
}

/// A notification channel to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewChannel {
    pub id: RecordId,
    pub location_id: Option<LocationId>,
    pub kind: ChannelKind,
    pub target: String,
    pub settings: serde_json::Value,
    pub enabled: bool,
}

/// A change to a notification channel: its location and kind never change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelUpdate {
    pub target: String,
    pub settings: serde_json::Value,
    pub enabled: bool,
}

/// Average battery of one tap's scale over one UTC hour, from the hourly rollups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapBatteryHour {
    pub tap_id: TapId,
    pub hour_start: Millis,
    /// Mean battery percentage of the hour's readings that carried one.
    pub battery_pct: f64,
}

/// A generated report file (CSV or PDF) kept in the data directory for a short time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// Random, unguessable; the file name is derived from it.
    pub id: String,
    pub account_id: AccountId,
    pub location_id: LocationId,
    /// `csv` or `pdf`.
    pub format: String,
    pub file_name: String,
    pub bytes: i64,
    /// Who asked: a user actor, or `scheduler` for the daily export.
    pub created_by: String,
    pub created_at: Millis,
}
