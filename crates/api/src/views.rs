//! What the API answers: response bodies built from store records, with every quantity's unit
//! in its name (`volume_l` and `volume_gal`, `weight_kg` and `weight_lbs`) and the location's
//! `units` alongside so the dashboard picks which to show. Instants are RFC 3339 UTC strings.
//!
//! This module converts and never decides: no domain rule, no permission, no store call.

use scalesense_domain::units::{Kilograms, Litres};
use scalesense_store as store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// An epoch-milliseconds instant as RFC 3339 UTC.
pub fn ts(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

pub fn ts_opt(ms: Option<i64>) -> Option<String> {
    ms.map(ts)
}

pub fn gallons(litres: f64) -> f64 {
    Litres(litres).to_us_gallons()
}

pub fn lbs(kg: f64) -> f64 {
    Kilograms(kg).to_lbs()
}

macro_rules! api_enum {
    ($(#[$meta:meta])* $name:ident, $store:path { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl From<$store> for $name {
            fn from(v: $store) -> Self {
                use $store as S;
                match v {
                    $(S::$variant => Self::$variant),+
                }
            }
        }

        impl From<$name> for $store {
            fn from(v: $name) -> Self {
                use $store as S;
                match v {
                    $($name::$variant => S::$variant),+
                }
            }
        }
    };
}

api_enum!(
    /// How a location displays quantities.
    UnitsName, store::Units { Metric, Imperial }
);
api_enum!(
    /// A user's role: staff < manager < admin.
    RoleName, store::Role { Staff, Manager, Admin }
);
api_enum!(
    /// Where a keg is in its life.
    KegStateName, store::KegState { Created, Tapped, Kicked, Removed }
);
api_enum!(
    /// Last known connection state of a scale.
    DeviceStatusName, store::DeviceStatus { Online, Offline }
);
api_enum!(
    /// How loud an alert is.
    SeverityName, store::Severity { Info, Warning, Critical }
);
api_enum!(
    /// An alert's lifecycle state.
    AlertStateName, store::AlertState { Firing, Active, Escalated, Acknowledged, Resolved }
);
api_enum!(
    /// Where a command is.
    CommandStateName, store::CommandState { Pending, Delivered, Succeeded, Failed, Expired }
);
api_enum!(
    /// Where a beer's keg weights came from: reference table, one real tare, or an average.
    WeightSourceName, store::WeightSource { Default, Set, Calculated }
);

/// A bar.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocationView {
    #[schema(example = "loc-001")]
    pub id: String,
    pub name: String,
    pub address: String,
    /// IANA time zone, e.g. `Europe/Dublin`.
    pub time_zone: String,
    pub units: UnitsName,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&store::Location> for LocationView {
    fn from(l: &store::Location) -> Self {
        Self {
            id: l.id.to_string(),
            name: l.name.clone(),
            address: l.address.clone(),
            time_zone: l.time_zone.clone(),
            units: l.units.into(),
            created_at: ts(l.created_at),
        }
    }
}

/// A page of locations.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocationPage {
    pub items: Vec<LocationView>,
    pub next_cursor: Option<String>,
}

/// A tap with its live state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TapView {
    #[schema(example = "loc-001#TAP#07")]
    pub id: String,
    pub location_id: String,
    pub number: u16,
    pub name: String,
    pub beer_id: Option<String>,
    pub device_id: Option<String>,
    pub keg_id: Option<String>,
    /// The location's display units.
    pub units: UnitsName,
    pub level_pct: Option<f64>,
    pub volume_l: Option<f64>,
    pub volume_gal: Option<f64>,
    pub weight_kg: Option<f64>,
    pub weight_lbs: Option<f64>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    pub tare_status: Option<String>,
    pub maintenance: bool,
    /// The keg on the tap looks empty ("Kicked?"): its level stayed at or below 3 % for 10
    /// minutes of readings. A manager confirms with the kick route.
    pub kick_suspected: bool,
}

impl TapView {
    pub fn new(tap: &store::Tap, state: &store::TapState, units: store::Units) -> Self {
        Self {
            id: tap.id.to_string(),
            location_id: tap.location_id.to_string(),
            number: tap.number,
            name: tap.name.clone(),
            beer_id: tap.beer_id.as_ref().map(ToString::to_string),
            device_id: tap.device_id.as_ref().map(ToString::to_string),
            keg_id: tap.keg_id.as_ref().map(ToString::to_string),
            units: units.into(),
            level_pct: state.level_pct,
            volume_l: state.volume_l,
            volume_gal: state.volume_l.map(gallons),
            weight_kg: state.weight_kg,
            weight_lbs: state.weight_kg.map(lbs),
            updated_at: ts_opt(state.updated_at),
            tare_status: state.tare_status.clone(),
            maintenance: state.maintenance,
            kick_suspected: false,
        }
    }

    /// The same view with the "Kicked?" suspicion decided by the caller.
    #[must_use]
    pub fn with_kick_suspected(mut self, suspected: bool) -> Self {
        self.kick_suspected = suspected;
        self
    }
}

/// A page of one location's taps, by tap number.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TapPage {
    pub location_id: String,
    pub units: UnitsName,
    pub items: Vec<TapView>,
    pub next_cursor: Option<String>,
}

/// A beer's weights in one keg type, as this account sees them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KegWeightView {
    #[schema(example = "half_barrel")]
    pub keg_type: String,
    pub full_kg: f64,
    pub full_lbs: f64,
    pub empty_kg: f64,
    pub empty_lbs: f64,
    #[schema(format = DateTime)]
    pub measured_at: Option<String>,
    pub measured_count: i64,
    pub source: WeightSourceName,
}

impl From<&store::BeerKegWeight> for KegWeightView {
    fn from(w: &store::BeerKegWeight) -> Self {
        Self {
            keg_type: w.keg_type.clone(),
            full_kg: w.full_kg,
            full_lbs: lbs(w.full_kg),
            empty_kg: w.empty_kg,
            empty_lbs: lbs(w.empty_kg),
            measured_at: ts_opt(w.measured_at),
            measured_count: w.measured_count,
            source: w.source.into(),
        }
    }
}

/// A beer: global library (`location_id` null) or custom to one location.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BeerView {
    #[schema(example = "guinness-draught")]
    pub id: String,
    pub location_id: Option<String>,
    pub name: String,
    pub brewery: String,
    pub style: String,
    /// Alcohol by volume, percent.
    pub abv: f64,
    pub specific_gravity: f64,
    /// Keg weights per keg type (only on `GET /beers/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keg_weights: Option<Vec<KegWeightView>>,
}

impl From<&store::Beer> for BeerView {
    fn from(b: &store::Beer) -> Self {
        Self {
            id: b.id.to_string(),
            location_id: b.location_id.as_ref().map(ToString::to_string),
            name: b.name.clone(),
            brewery: b.brewery.clone(),
            style: b.style.clone(),
            abv: b.abv,
            specific_gravity: b.specific_gravity,
            keg_weights: None,
        }
    }
}

/// A page of beers, by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BeerPage {
    pub items: Vec<BeerView>,
    pub next_cursor: Option<String>,
}

/// A physical keg.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KegView {
    #[schema(example = "keg-20260318-007")]
    pub id: String,
    pub location_id: String,
    pub beer_id: String,
    pub keg_type: String,
    pub full_kg: f64,
    pub full_lbs: f64,
    pub empty_kg: f64,
    pub empty_lbs: f64,
    pub specific_gravity: f64,
    /// The tap it is (or was last) on.
    pub tap_id: Option<String>,
    pub state: KegStateName,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub tapped_at: Option<String>,
    #[schema(format = DateTime)]
    pub kicked_at: Option<String>,
    #[schema(format = DateTime)]
    pub removed_at: Option<String>,
}

impl From<&store::Keg> for KegView {
    fn from(k: &store::Keg) -> Self {
        Self {
            id: k.id.to_string(),
            location_id: k.location_id.to_string(),
            beer_id: k.beer_id.to_string(),
            keg_type: k.keg_type.clone(),
            full_kg: k.full_kg,
            full_lbs: lbs(k.full_kg),
            empty_kg: k.empty_kg,
            empty_lbs: lbs(k.empty_kg),
            specific_gravity: k.specific_gravity,
            tap_id: k.tap_id.as_ref().map(ToString::to_string),
            state: k.state.into(),
            created_at: ts(k.created_at),
            tapped_at: ts_opt(k.tapped_at),
            kicked_at: ts_opt(k.kicked_at),
            removed_at: ts_opt(k.removed_at),
        }
    }
}

/// A page of kegs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KegPage {
    pub items: Vec<KegView>,
    pub next_cursor: Option<String>,
}

/// One stored reading.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadingView {
    #[schema(format = DateTime)]
    pub t: String,
    pub device_id: String,
    pub tap_id: String,
    pub boot: i64,
    pub seq: i64,
    pub weight_kg: f64,
    pub weight_lbs: f64,
    pub level_pct: f64,
    pub volume_l: Option<f64>,
    pub volume_gal: Option<f64>,
    pub battery_v: Option<f64>,
    pub battery_pct: Option<f64>,
    pub rssi: Option<i64>,
    pub stable: bool,
}

impl From<&store::Reading> for ReadingView {
    fn from(r: &store::Reading) -> Self {
        Self {
            t: ts(r.ts),
            device_id: r.device_id.to_string(),
            tap_id: r.tap_id.to_string(),
            boot: r.boot,
            seq: r.seq,
            weight_kg: r.weight_kg,
            weight_lbs: lbs(r.weight_kg),
            level_pct: r.level_pct,
            volume_l: r.volume_l,
            volume_gal: r.volume_l.map(gallons),
            battery_v: r.battery_v,
            battery_pct: r.battery_pct,
            rssi: r.rssi,
            stable: r.stable,
        }
    }
}

/// A page of a keg's readings, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadingPage {
    pub keg_id: String,
    pub items: Vec<ReadingView>,
    pub next_cursor: Option<String>,
}

/// A scale.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    #[schema(example = "SCALE-0042")]
    pub id: String,
    pub location_id: Option<String>,
    pub tap_id: Option<String>,
    pub fw_version: Option<String>,
    pub status: DeviceStatusName,
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
    pub maintenance: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&store::Device> for DeviceView {
    fn from(d: &store::Device) -> Self {
        Self {
            id: d.id.to_string(),
            location_id: d.location_id.as_ref().map(ToString::to_string),
            tap_id: d.tap_id.as_ref().map(ToString::to_string),
            fw_version: d.fw_version.clone(),
            status: d.status.into(),
            last_seen: ts_opt(d.last_seen),
            maintenance: d.maintenance,
            created_at: ts(d.created_at),
        }
    }
}

/// A page of devices, by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<DeviceView>,
    pub next_cursor: Option<String>,
}

/// A scale's health.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TelemetryView {
    pub device_id: String,
    pub battery_v: Option<f64>,
    pub battery_pct: Option<f64>,
    /// Wi-Fi signal, dBm.
    pub rssi: Option<i64>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    /// Raw ADC value of the last empty tare (diagnostic copy).
    pub tare_empty_raw: Option<i64>,
    pub tare_full_kg: Option<f64>,
    pub tare_full_lbs: Option<f64>,
    #[schema(format = DateTime)]
    pub tare_at: Option<String>,
}

impl From<&store::Telemetry> for TelemetryView {
    fn from(t: &store::Telemetry) -> Self {
        Self {
            device_id: t.device_id.to_string(),
            battery_v: t.battery_v,
            battery_pct: t.battery_pct,
            rssi: t.rssi,
            updated_at: ts_opt(t.updated_at),
            tare_empty_raw: t.tare_empty_raw,
            tare_full_kg: t.tare_full_kg,
            tare_full_lbs: t.tare_full_kg.map(lbs),
            tare_at: ts_opt(t.tare_at),
        }
    }
}

/// One calibration of a scale.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CalibrationView {
    pub id: i64,
    pub device_id: String,
    /// Counts per kilogram.
    pub scale_factor: f64,
    pub zero_offset: i64,
    pub method: String,
    pub known_weight_kg: Option<f64>,
    pub drift_pct: Option<f64>,
    pub by: String,
    #[schema(format = DateTime)]
    pub at: String,
}

impl From<&store::Calibration> for CalibrationView {
    fn from(c: &store::Calibration) -> Self {
        Self {
            id: c.id,
            device_id: c.device_id.to_string(),
            scale_factor: c.scale_factor,
            zero_offset: c.zero_offset,
            method: c.method.clone(),
            known_weight_kg: c.known_weight_kg,
            drift_pct: c.drift_pct,
            by: c.by.clone(),
            at: ts(c.at),
        }
    }
}

/// A scale's current calibration and its history, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CalibrationsView {
    pub current: Option<CalibrationView>,
    pub history: Vec<CalibrationView>,
}

/// An active alert (one per location, kind and entity).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertView {
    pub location_id: String,
    /// `low_keg`, `scale_offline`, `low_battery`, `calibration_drift`, `stale_reading`.
    pub kind: String,
    /// A tap id or a device id.
    pub entity: String,
    pub severity: SeverityName,
    pub state: AlertStateName,
    #[schema(format = DateTime)]
    pub fired_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub acknowledged_by: Option<String>,
    #[schema(format = DateTime)]
    pub acknowledged_at: Option<String>,
    #[schema(value_type = Object)]
    pub context: Value,
}

impl From<&store::Alert> for AlertView {
    fn from(a: &store::Alert) -> Self {
        Self {
            location_id: a.location_id.to_string(),
            kind: a.kind.clone(),
            entity: a.entity.clone(),
            severity: a.severity.into(),
            state: a.state.into(),
            fired_at: ts(a.fired_at),
            updated_at: ts(a.updated_at),
            acknowledged_by: a.acknowledged_by.clone(),
            acknowledged_at: ts_opt(a.acknowledged_at),
            context: a.context.clone(),
        }
    }
}

/// A location's active alerts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertList {
    pub items: Vec<AlertView>,
}

/// One line of the alert log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertHistoryView {
    pub id: i64,
    pub location_id: String,
    pub kind: String,
    pub entity: String,
    pub severity: SeverityName,
    pub state: AlertStateName,
    #[schema(format = DateTime)]
    pub at: String,
    pub by: Option<String>,
    #[schema(value_type = Object)]
    pub context: Value,
}

impl From<&store::AlertHistoryEntry> for AlertHistoryView {
    fn from(a: &store::AlertHistoryEntry) -> Self {
        Self {
            id: a.id,
            location_id: a.location_id.to_string(),
            kind: a.kind.clone(),
            entity: a.entity.clone(),
            severity: a.severity.into(),
            state: a.state.into(),
            at: ts(a.at),
            by: a.by.clone(),
            context: a.context.clone(),
        }
    }
}

/// A page of the alert log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertHistoryPage {
    pub items: Vec<AlertHistoryView>,
    pub next_cursor: Option<String>,
}

/// A command to a scale and where it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommandView {
    pub id: String,
    pub device_id: String,
    /// `tare_empty`, `tare_full`, `calibrate`, `identify`, `maintenance_enter`,
    /// `maintenance_exit`, `set_config`, `reboot`.
    pub command: String,
    #[schema(value_type = Object)]
    pub params: Value,
    pub state: CommandStateName,
    pub issued_by: String,
    #[schema(format = DateTime)]
    pub issued_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
    #[schema(format = DateTime)]
    pub answered_at: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
}

impl From<&store::Command> for CommandView {
    fn from(c: &store::Command) -> Self {
        Self {
            id: c.id.to_string(),
            device_id: c.device_id.to_string(),
            command: c.name.clone(),
            params: c.params.clone(),
            state: c.state.into(),
            issued_by: c.issued_by.clone(),
            issued_at: ts(c.issued_at),
            expires_at: ts(c.expires_at),
            delivered_at: ts_opt(c.delivered_at),
            answered_at: ts_opt(c.answered_at),
            result: c.result.clone(),
        }
    }
}

/// A dashboard user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub role: RoleName,
    /// `null`: every location of the account.
    pub allowed_locations: Option<Vec<String>>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&store::User> for UserView {
    fn from(u: &store::User) -> Self {
        Self {
            id: u.id.to_string(),
            account_id: u.account_id.to_string(),
            email: u.email.clone(),
            role: u.role.into(),
            allowed_locations: u
                .allowed_locations
                .as_ref()
                .map(|l| l.iter().map(ToString::to_string).collect()),
            created_at: ts(u.created_at),
        }
    }
}

/// A page of users, by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

/// An API token (never its secret, except once at creation).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: RoleName,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
}

impl From<&store::ApiToken> for TokenView {
    fn from(t: &store::ApiToken) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name.clone(),
            role: t.role.into(),
            created_at: ts(t.created_at),
            revoked_at: ts_opt(t.revoked_at),
            last_used_at: ts_opt(t.last_used_at),
        }
    }
}

/// A new API token with its secret: shown this once, stored only hashed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewTokenView {
    pub token: TokenView,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// A page of API tokens, by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenPage {
    pub items: Vec<TokenView>,
    pub next_cursor: Option<String>,
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    /// `user:<id> (<email>)` or `token:<id> (<name>)`.
    pub actor: String,
    pub action: String,
    pub entity: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    #[schema(format = DateTime)]
    pub at: String,
}

impl From<&store::AuditEntry> for AuditView {
    fn from(a: &store::AuditEntry) -> Self {
        Self {
            id: a.id,
            actor: a.actor.clone(),
            action: a.action.clone(),
            entity: a.entity.clone(),
            before: a.before.clone(),
            after: a.after.clone(),
            at: ts(a.at),
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_units() {
        assert_eq!(ts(1_773_792_000_000), "2026-03-18T00:00:00Z");
        assert_eq!(ts(1_773_792_000_123), "2026-03-18T00:00:00.123Z");
        assert!((gallons(3.785_411_784) - 1.0).abs() < 1e-12);
        assert!((lbs(0.453_592_37) - 1.0).abs() < 1e-12);
        assert_eq!(ts(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn enums_round_trip_with_the_store() {
        for r in [store::Role::Staff, store::Role::Manager, store::Role::Admin] {
            assert_eq!(store::Role::from(RoleName::from(r)), r);
        }
        assert_eq!(
            serde_json::to_string(&KegStateName::Tapped).unwrap(),
            "\"tapped\""
        );
    }
}
