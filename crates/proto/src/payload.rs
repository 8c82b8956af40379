//! The JSON payloads of the contract (BRIEF §3, `docs/contract.md`) and their range rules.
//!
//! Field names and wire units are the seeds' (pounds, percent, volts, dBm, epoch milliseconds).
//! Each payload's `validate` is the single place its ranges are written down; decoding always
//! runs it and encoding refuses a payload that fails it, so no invalid payload crosses the wire
//! through this crate. This module must not depend on a clock: rules that need "now" (command
//! expiry) take it as an argument.

use core::fmt;
use core::str::FromStr;

use heapless::String;
use serde::{Deserialize, Serialize};

use crate::CONTRACT_VERSION;
use crate::command::CommandName;
use crate::error::ContractError;
use crate::ids::{CommandId, GatewayId};

/// Earliest accepted timestamp: 2020-01-01T00:00:00Z in epoch milliseconds. A device clock
/// before this has not been set (an unsynchronised RTC starts at 1970).
pub const MIN_TIMESTAMP_MS: u64 = 1_577_836_800_000;
/// Latest accepted timestamp: 2100-01-01T00:00:00Z in epoch milliseconds. Not a clock check
/// (there is no clock here), only a bound that keeps every timestamp a sane signed 64-bit value.
pub const MAX_TIMESTAMP_MS: u64 = 4_102_444_800_000;
/// Largest integer every JSON consumer (the dashboard's JavaScript included) reads exactly:
/// 2^53 − 1. Counters and sequence numbers above it are rejected.
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;
/// Weight range of a reading, pounds. A little below zero is tare noise on an empty platform;
/// 500 lb is beyond any keg plus platform.
pub const WEIGHT_LBS_RANGE: (f64, f64) = (-5.0, 500.0);
/// `level_pct` may exceed 0–100 by this much (rounding and noise on a full or empty keg);
/// consumers clamp it with [`Reading::level_pct_clamped`].
pub const LEVEL_PCT_TOLERANCE: f64 = 0.5;
/// Largest firmware image an OTA notice may announce, bytes (the module's whole 4 MiB flash).
pub const MAX_FIRMWARE_SIZE: u32 = 4 * 1024 * 1024;
/// Longest accepted firmware image URL, bytes.
pub const MAX_URL_LEN: usize = 160;
/// Longest accepted version string (`fw`, OTA `version`, gateway `version`), bytes.
pub const MAX_VERSION_LEN: usize = 24;
/// Longest accepted error text in a command response, bytes.
pub const MAX_ERROR_LEN: usize = 64;

/// A version string such as `1.4.2`.
pub type VersionString = String<MAX_VERSION_LEN>;

/// Where a scale is in taring its current keg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TareStatus {
    /// Never tared.
    None,
    /// A new keg is on the scale and waits for a tare.
    Pending,
    /// The empty weight is recorded.
    EmptySet,
    /// The full weight is recorded.
    FullSet,
    /// Both are recorded; `level_pct` is meaningful.
    Complete,
}

/// Whether a scale is connected. `offline` is normally published by the broker as the last will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Online,
    Offline,
}

/// A gateway's link to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkState {
    Connected,
    Disconnected,
    /// Connected and sending the backlog queued during an outage.
    Replaying,
}

/// Declares `as_str`, `FromStr` and `Display` for a wire enum from one table, so the names
/// used by the tracking decoder and the serde derive cannot drift.
macro_rules! wire_enum {
    ($ty:ident, $field:literal, $expected:literal, { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in contract order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),*
                }
            }
        }

        impl FromStr for $ty {
            type Err = ContractError;

            fn from_str(s: &str) -> Result<Self, ContractError> {
                match s {
                    $($name => Ok(Self::$variant),)*
                    _ => Err(ContractError::Invalid {
                        field: $field,
                        reason: $expected,
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(TareStatus, "tare_status", "must be one of none, pending, empty_set, full_set, complete", {
    None => "none",
    Pending => "pending",
    EmptySet => "empty_set",
    FullSet => "full_set",
    Complete => "complete",
});

wire_enum!(DeviceState, "state", "must be one of online, offline", {
    Online => "online",
    Offline => "offline",
});

wire_enum!(UplinkState, "uplink", "must be one of connected, disconnected, replaying", {
    Connected => "connected",
    Disconnected => "disconnected",
    Replaying => "replaying",
});

/// A SHA-256 digest written as 64 hex digits; stored lowercase so digests compare as strings.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Sha256Hex(String<64>);

impl Sha256Hex {
    /// The digest as 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<&str> for Sha256Hex {
    type Error = ContractError;

    fn try_from(s: &str) -> Result<Self, ContractError> {
        let bad = ContractError::Invalid {
            field: "sha256",
            reason: "must be 64 hexadecimal digits",
        };
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad);
        }
        let mut out = String::new();
        for c in s.chars() {
            out.push(c.to_ascii_lowercase()).map_err(|_| bad)?;
        }
        Ok(Self(out))
    }
}

impl FromStr for Sha256Hex {
    type Err = ContractError;

    fn from_str(s: &str) -> Result<Self, ContractError> {
        Self::try_from(s)
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hex({:?})", self.as_str())
    }
}

/// One weight reading, published on `keg/readings/{device_id}`.
///
/// Idempotent on `(device_id, boot, seq)`: a replay or a QoS-1 duplicate is stored once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub v: u16,
    /// Reading counter within one boot, from 0; never wraps within a boot.
    pub seq: u32,
    /// Boot counter, persisted on the scale and incremented at every start-up; at least 1.
    pub boot: u32,
    /// When the reading was taken, epoch ms by the device clock; absent when the clock is unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    /// Gross weight on the platform, pounds (the scale subtracts its zero offset, not the keg).
    pub weight_lbs: f64,
    /// Fill level computed by the scale once tared; absent before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level_pct: Option<f64>,
    pub battery_v: f64,
    pub battery_pct: f64,
    /// Wi-Fi signal, dBm.
    pub rssi: i16,
    /// The weight has settled (no pour in progress).
    pub stable: bool,
    pub tare_status: TareStatus,
    /// The gateway that forwarded this reading; added by the gateway, never by the scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<GatewayId>,
    /// The forwarding gateway's queue sequence; present exactly when `gw` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gseq: Option<u64>,
}

/// A scale's status, published retained on `keg/status/{device_id}`: at connect (online, with
/// telemetry), every 5 minutes, on maintenance changes, and as the broker-published last will.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub v: u16,
    pub state: DeviceState,
    /// Firmware version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fw: Option<VersionString>,
    /// The scale is in maintenance mode (readings paused). Absent means `false`.
    #[serde(skip_serializing_if = "is_false")]
    pub maintenance: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_v: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rssi: Option<i16>,
    /// Readings lost to the offline ring buffer overflowing since the previous status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_readings: Option<u32>,
    /// Readings waiting in the offline ring buffer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffered_readings: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<u32>,
}

// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

/// Parameters of a command. One struct for every command so it decodes without knowing the
/// command name (which is in the topic); [`CommandParams::validate_for`] applies the per-command
/// rules. Fields a command does not use are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CommandParams {
    /// `calibrate`: the reference weight on the platform, pounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_weight_lbs: Option<f64>,
    /// `identify`: how long to flash (default 10 s); `maintenance_enter`: leave maintenance
    /// automatically after this long (default: stay until `maintenance_exit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u32>,
    /// `set_config`: seconds between readings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u32>,
    /// `set_config`: temperature compensation, fractional change of the reading per °C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_coeff: Option<f64>,
}

/// A command, published retained on `keg/command/{device_id}/{name}`. Idempotent on `id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Command {
    pub v: u16,
    pub id: CommandId,
    pub params: CommandParams,
    /// Epoch ms when the server issued it.
    pub issued_at: u64,
    /// Epoch ms after which the scale must answer with an error instead of running it.
    pub expires_at: u64,
}

/// What a scale reports back after running a command; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseResult {
    /// Raw HX711 counts at zero load (24-bit signed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_offset: Option<i32>,
    /// Counts per pound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_factor: Option<f64>,
    /// The weight measured while running the command, pounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_lbs: Option<f64>,
    /// Calibration drift against the previous factor, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_pct: Option<f64>,
    /// Recorded empty-keg weight, pounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_lbs: Option<f64>,
    /// Recorded full-keg weight, pounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_lbs: Option<f64>,
}

/// A scale's answer to a command, on `keg/response/{device_id}`; the server then clears the
/// retained command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    pub v: u16,
    /// The command's id.
    pub id: CommandId,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ResponseResult>,
    /// Why the command failed; required when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String<MAX_ERROR_LEN>>,
}

/// A firmware update notice on `keg/ota/{device_id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ota {
    pub v: u16,
    pub job_id: CommandId,
    pub version: VersionString,
    /// Where to fetch the image: `http://` or `https://` (the gateway's local cache).
    pub url: String<MAX_URL_LEN>,
    /// SHA-256 of the image; the scale refuses to boot an image that does not match.
    pub sha256: Sha256Hex,
    /// Image size, bytes.
    pub size: u32,
}

/// A gateway's health, published retained on `gw/status/{gateway_id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayStatus {
    pub v: u16,
    /// Messages on disk waiting for the server's commit confirmation.
    pub queue_depth: u64,
    /// Age of the oldest queued message, seconds (0 when the queue is empty).
    pub oldest_age_s: u64,
    pub uplink: UplinkState,
    /// Messages forwarded since the gateway started.
    pub forwarded: u64,
    /// Messages dropped because the disk quota was full, since the gateway started.
    pub dropped: u64,
    /// Bytes the queue uses on disk.
    pub disk_bytes: u64,
    /// Gateway software version.
    pub version: VersionString,
    /// The lowest `gseq` still in the queue; absent when the queue is empty. Every lower `gseq`
    /// is gone from the gateway (committed, or dropped when the disk was full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_gseq: Option<u64>,
}

/// Most gseq ranges one acknowledgement carries; a server that committed more sends several.
pub const MAX_ACK_RANGES: usize = 32;

/// Inclusive `[first, last]` ranges of `gseq`, as carried by a [`GatewayAck`].
pub type GseqRanges = heapless::Vec<[u64; 2], MAX_ACK_RANGES>;

/// A commit confirmation on `gw/ack/{gateway_id}`: every message this gateway forwarded whose
/// `gseq` lies in one of `ranges` (inclusive) is committed by the server (stored, or stored as a
/// dead letter), and the gateway may delete it.
///
/// Ranges rather than a watermark because with shared subscriptions several server replicas
/// commit interleaved parts of one gateway's stream: each replica can say exactly what it
/// committed, and none can know what the others hold. The gateway keeps the watermark itself.
/// See `docs/contract.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayAck {
    pub v: u16,
    pub ranges: GseqRanges,
}

impl GatewayAck {
    /// Every `gseq` this acknowledgement confirms, range by range.
    pub fn gseqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|&[first, last]| first..=last)
    }

    /// Whether `gseq` is confirmed by this acknowledgement.
    pub fn confirms(&self, gseq: u64) -> bool {
        self.ranges
            .iter()
            .any(|&[first, last]| (first..=last).contains(&gseq))
    }
}

/// The `gw`/`gseq` pair a gateway adds to every uplink message it forwards (readings, statuses,
/// responses); read from any payload with [`crate::decode_forwarding`], added to raw bytes with
/// [`crate::append_forwarding`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Forwarding {
    pub gw: GatewayId,
    /// The gateway's queue sequence: assigned when the message is queued, from 1, one more per
    /// message, persisted, never reused.
    pub gseq: u64,
}

impl Forwarding {
    /// `gseq` within 1–2^53−1 (the id is valid by construction).
    pub fn validate(&self) -> Result<(), ContractError> {
        check_u64("gseq", self.gseq, 1, MAX_SAFE_INTEGER)
    }

    /// Both fields or neither; one without the other is an error naming the missing one.
    pub(crate) fn from_pair(
        gw: Option<GatewayId>,
        gseq: Option<u64>,
    ) -> Result<Option<Self>, ContractError> {
        match (gw, gseq) {
            (Some(gw), Some(gseq)) => {
                let forwarding = Self { gw, gseq };
                forwarding.validate()?;
                Ok(Some(forwarding))
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err(ContractError::Invalid {
                field: "gseq",
                reason: "must be present when gw is",
            }),
            (None, Some(_)) => Err(ContractError::Invalid {
                field: "gw",
                reason: "must be present when gseq is",
            }),
        }
    }
}

/// A payload type of the contract: validated, encoded and decoded by this crate.
pub trait Payload: Serialize + Sized + crate::de::Tracked {
    /// The payload's name in `docs/contract.md` examples (`reading`, `status`, …).
    const KIND: &'static str;

    /// An upper bound of the encoded size of any valid payload of this type, bytes: a buffer
    /// this large never makes [`crate::encode`] fail with `BufferTooSmall`.
    const MAX_ENCODED_LEN: usize;

    /// Check every range and cross-field rule. Decoding runs this; encoding refuses to write a
    /// payload that fails it.
    fn validate(&self) -> Result<(), ContractError>;
}

fn check_version(v: u16) -> Result<(), ContractError> {
    if v == 0 {
        Err(ContractError::Invalid {
            field: "v",
            reason: "must be at least 1",
        })
    } else if v > CONTRACT_VERSION {
        Err(ContractError::UnsupportedVersion {
            found: u64::from(v),
            supported: CONTRACT_VERSION,
        })
    } else {
        Ok(())
    }
}

/// The version rule for a `v` read before the payload's own fields (it may not fit `u16`).
pub(crate) fn check_probe_version(v: u64) -> Result<(), ContractError> {
    match u16::try_from(v) {
        Ok(v) => check_version(v),
        Err(_) => Err(ContractError::UnsupportedVersion {
            found: v,
            supported: CONTRACT_VERSION,
        }),
    }
}

fn check_range(field: &'static str, value: f64, min: f64, max: f64) -> Result<(), ContractError> {
    if !value.is_finite() {
        Err(ContractError::NotFinite { field })
    } else if value < min || value > max {
        Err(ContractError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    } else {
        Ok(())
    }
}

fn check_opt(
    field: &'static str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<(), ContractError> {
    value.map_or(Ok(()), |x| check_range(field, x, min, max))
}

fn check_u64(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ContractError> {
    if value < min || value > max {
        Err(ContractError::OutOfRange {
            field,
            value: value as f64,
            min: min as f64,
            max: max as f64,
        })
    } else {
        Ok(())
    }
}

fn check_timestamp(field: &'static str, ms: u64) -> Result<(), ContractError> {
    check_u64(field, ms, MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS)
}

fn check_battery(volts: Option<f64>, pct: Option<f64>) -> Result<(), ContractError> {
    check_opt("battery_v", volts, 0.0, 5.0)?;
    check_opt("battery_pct", pct, 0.0, 100.0)
}

fn check_rssi(rssi: i16) -> Result<(), ContractError> {
    check_range("rssi", f64::from(rssi), -127.0, 0.0)
}

/// Free text (versions, error messages): not blank, and no control characters, which would
/// be escaped differently by different JSON writers and mean nothing on a display.
fn check_text(field: &'static str, s: &str) -> Result<(), ContractError> {
    if s.trim().is_empty() {
        Err(ContractError::Invalid {
            field,
            reason: "must not be empty",
        })
    } else if s.contains(char::is_control) {
        Err(ContractError::Invalid {
            field,
            reason: "must not contain control characters",
        })
    } else {
        Ok(())
    }
}

fn check_boot(boot: u32) -> Result<(), ContractError> {
    check_u64("boot", u64::from(boot), 1, u64::from(u32::MAX))
}

impl Reading {
    /// `level_pct` clamped to 0–100 (the wire allows [`LEVEL_PCT_TOLERANCE`] either side).
    pub fn level_pct_clamped(&self) -> Option<f64> {
        self.level_pct.map(|p| p.clamp(0.0, 100.0))
    }
}

impl Payload for Reading {
    const KIND: &'static str = "reading";
    const MAX_ENCODED_LEN: usize = 352;

    fn validate(&self) -> Result<(), ContractError> {
        check_version(self.v)?;
        check_boot(self.boot)?;
        if let Some(ts) = self.ts {
            check_timestamp("ts", ts)?;
        }
        check_range(
            "weight_lbs",
            self.weight_lbs,
            WEIGHT_LBS_RANGE.0,
            WEIGHT_LBS_RANGE.1,
        )?;
        if let Some(level) = self.level_pct {
            if !level.is_finite() {
                return Err(ContractError::NotFinite { field: "level_pct" });
            }
            // The error states the nominal 0–100; the tolerance only absorbs rounding.
            if !(-LEVEL_PCT_TOLERANCE..=100.0 + LEVEL_PCT_TOLERANCE).contains(&level) {
                return Err(ContractError::OutOfRange {
                    field: "level_pct",
                    value: level,
                    min: 0.0,
                    max: 100.0,
                });
            }
        }
        check_battery(Some(self.battery_v), Some(self.battery_pct))?;
        check_rssi(self.rssi)?;
        Forwarding::from_pair(self.gw.clone(), self.gseq).map(drop)
    }
}

impl Status {
    /// The last will a scale registers at connect: `{"v":1,"state":"offline"}`.
    pub fn offline() -> Self {
        Self {
            v: CONTRACT_VERSION,
            state: DeviceState::Offline,
            fw: None,
            maintenance: false,
            uptime_s: None,
            battery_v: None,
            battery_pct: None,
            rssi: None,
            dropped_readings: None,
            buffered_readings: None,
            boot: None,
        }
    }
}

/// The last-will payload, byte for byte (what [`Status::offline`] encodes to).
pub const LAST_WILL_PAYLOAD: &str = r#"{"v":1,"state":"offline"}"#;

impl Payload for Status {
    const KIND: &'static str = "status";
    const MAX_ENCODED_LEN: usize = 320;

    fn validate(&self) -> Result<(), ContractError> {
        check_version(self.v)?;
        if let Some(fw) = &self.fw {
            check_text("fw", fw)?;
        }
        check_battery(self.battery_v, self.battery_pct)?;
        if let Some(rssi) = self.rssi {
            check_rssi(rssi)?;
        }
        if let Some(boot) = self.boot {
            check_boot(boot)?;
        }
        Ok(())
    }
}

/// Calibration reference weight range, pounds (exclusive of 0).
pub const KNOWN_WEIGHT_LBS_MAX: f64 = 500.0;
/// `identify` duration range, seconds.
pub const IDENTIFY_DURATION_S: (u32, u32) = (1, 600);
/// `maintenance_enter` automatic-exit range, seconds (at most a day).
pub const MAINTENANCE_DURATION_S: (u32, u32) = (1, 86_400);
/// `set_config` reading interval range, seconds.
pub const INTERVAL_S: (u32, u32) = (5, 3_600);
/// `set_config` temperature coefficient bound (±1 % per °C is far beyond any load cell).
pub const TEMP_COEFF_MAX: f64 = 0.01;

fn check_u32(
    field: &'static str,
    value: Option<u32>,
    range: (u32, u32),
) -> Result<(), ContractError> {
    value.map_or(Ok(()), |x| {
        check_u64(field, u64::from(x), u64::from(range.0), u64::from(range.1))
    })
}

impl CommandParams {
    /// Ranges of the fields that are present, whatever the command.
    pub fn validate(&self) -> Result<(), ContractError> {
        if let Some(w) = self.known_weight_lbs {
            check_range("params.known_weight_lbs", w, 0.0, KNOWN_WEIGHT_LBS_MAX)?;
            if w <= 0.0 {
                return Err(ContractError::Invalid {
                    field: "params.known_weight_lbs",
                    reason: "must be greater than 0",
                });
            }
        }
        // The widest duration range; `validate_for` narrows it per command.
        check_u32("params.duration_s", self.duration_s, MAINTENANCE_DURATION_S)?;
        check_u32("params.interval_s", self.interval_s, INTERVAL_S)?;
        check_opt(
            "params.temp_coeff",
            self.temp_coeff,
            -TEMP_COEFF_MAX,
            TEMP_COEFF_MAX,
        )
    }

    /// The rules of one command: `calibrate` needs `known_weight_lbs`; `identify` lasts at most
    /// 600 s; `set_config` needs `interval_s` or `temp_coeff`.
    pub fn validate_for(&self, command: CommandName) -> Result<(), ContractError> {
        self.validate()?;
        match command {
            CommandName::Calibrate if self.known_weight_lbs.is_none() => {
                Err(ContractError::Missing {
                    field: "params.known_weight_lbs",
                })
            }
            CommandName::Identify => {
                check_u32("params.duration_s", self.duration_s, IDENTIFY_DURATION_S)
            }
            CommandName::SetConfig if self.interval_s.is_none() && self.temp_coeff.is_none() => {
                Err(ContractError::Invalid {
                    field: "params",
                    reason: "set_config needs interval_s or temp_coeff",
                })
            }
            _ => Ok(()),
        }
    }
}

impl Command {
    /// Whether the command must be answered with an error instead of run (`now_ms > expires_at`).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms > self.expires_at
    }

    /// [`Payload::validate`] plus the rules of the command named in the topic.
    pub fn validate_for(&self, command: CommandName) -> Result<(), ContractError> {
        self.validate()?;
        self.params.validate_for(command)
    }
}

impl Payload for Command {
    const KIND: &'static str = "command";
    const MAX_ENCODED_LEN: usize = 256;

    fn validate(&self) -> Result<(), ContractError> {
        check_version(self.v)?;
        check_timestamp("issued_at", self.issued_at)?;
        check_timestamp("expires_at", self.expires_at)?;
        if self.expires_at <= self.issued_at {
            return Err(ContractError::Invalid {
                field: "expires_at",
                reason: "must be later than issued_at",
            });
        }
        self.params.validate()
    }
}

/// HX711 output range (24-bit two's complement).
pub const ZERO_OFFSET_RANGE: (i32, i32) = (-8_388_608, 8_388_607);

impl ResponseResult {
    /// Ranges of the fields that are present, and `full_lbs > empty_lbs` when both are.
    pub fn validate(&self) -> Result<(), ContractError> {
        if let Some(z) = self.zero_offset {
            check_range(
                "result.zero_offset",
                f64::from(z),
                f64::from(ZERO_OFFSET_RANGE.0),
                f64::from(ZERO_OFFSET_RANGE.1),
            )?;
        }
        if let Some(f) = self.scale_factor {
            if !f.is_finite() {
                return Err(ContractError::NotFinite {
                    field: "result.scale_factor",
                });
            }
            if f == 0.0 {
                return Err(ContractError::Invalid {
                    field: "result.scale_factor",
                    reason: "must not be 0",
                });
            }
        }
        check_opt(
            "result.weight_lbs",
            self.weight_lbs,
            WEIGHT_LBS_RANGE.0,
            WEIGHT_LBS_RANGE.1,
        )?;
        check_opt("result.drift_pct", self.drift_pct, -100.0, 100.0)?;
        check_opt("result.empty_lbs", self.empty_lbs, 0.0, WEIGHT_LBS_RANGE.1)?;
        check_opt("result.full_lbs", self.full_lbs, 0.0, WEIGHT_LBS_RANGE.1)?;
        if let (Some(empty), Some(full)) = (self.empty_lbs, self.full_lbs)
            && full <= empty
        {
            return Err(ContractError::Invalid {
                field: "result.full_lbs",
                reason: "must be greater than empty_lbs",
            });
        }
        Ok(())
    }
}

impl Payload for Response {
    const KIND: &'static str = "response";
    const MAX_ENCODED_LEN: usize = 448;

    fn validate(&self) -> Result<(), ContractError> {
        check_version(self.v)?;
        if let Some(result) = &self.result {
            result.validate()?;
        }
        match &self.error {
            Some(e) => check_text("error", e),
            None if !self.ok => Err(ContractError::Missing { field: "error" }),
            None => Ok(()),
        }
    }
}

impl Payload for Ota {
    const KIND: &'static str = "ota";
    const MAX_ENCODED_LEN: usize = 400;

    fn validate(&self) -> Result<(), ContractError> {
        check_version(self.v)?;
        check_text("version", &self.version)?;
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"));
        match rest {
            Some(rest)
                if !rest.is_empty()
                    && !rest.contains(|c: char| {
                        c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\')
                    }) => {}
            _ => {
                return Err(ContractError::Invalid {
                    field: "url",
                    reason: "must be an http:// or https:// URL without spaces, quotes or backslashes",
                });
            }
        }
        check_u64(
            "size",
            u64::from(self.size),
            1,
            u64::from(MAX_FIRMWARE_SIZE),
        )
    }
}

impl Payload for GatewayStatus {
    const KIND: &'static str = "gateway_status";
    const MAX_ENCODED_LEN: usize = 288;

    fn validate(&self) -> Result<(), ContractError> {
        check_version(self.v)?;
        for (field, value) in [
            ("queue_depth", self.queue_depth),
            ("oldest_age_s", self.oldest_age_s),
            ("forwarded", self.forwarded),
            ("dropped", self.dropped),
            ("disk_bytes", self.disk_bytes),
        ] {
            check_u64(field, value, 0, MAX_SAFE_INTEGER)?;
        }
        check_text("version", &self.version)?;
        if let Some(oldest) = self.oldest_gseq {
            check_u64("oldest_gseq", oldest, 1, MAX_SAFE_INTEGER)?;
        }
        Ok(())
    }
}

impl Payload for GatewayAck {
    const KIND: &'static str = "gateway_ack";
    const MAX_ENCODED_LEN: usize = 24 + MAX_ACK_RANGES * 36;

    fn validate(&self) -> Result<(), ContractError> {
        check_version(self.v)?;
        if self.ranges.is_empty() {
            return Err(ContractError::Invalid {
                field: "ranges",
                reason: "must confirm at least one range",
            });
        }
        for &[first, last] in &self.ranges {
            check_u64("ranges", first, 1, MAX_SAFE_INTEGER)?;
            check_u64("ranges", last, 1, MAX_SAFE_INTEGER)?;
            if first > last {
                return Err(ContractError::Invalid {
                    field: "ranges",
                    reason: "each range must be [first, last] with first <= last",
                });
            }
        }
        Ok(())
    }
}
