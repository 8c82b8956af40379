//! Locations: list, get, settings (read and change), and the inventory export.
//!
//! A location's settings are one JSON document in the store. This module owns the keys the API
//! writes — `thresholds` (the domain's [`Thresholds`]), `pour_rate` ([`PourRateConfig`]),
//! `quiet_hours` ([`QuietHours`]), `raw_retention_days` and `export_time` (the daily report
//! e-mail) — and keeps every other key as it found it. Every value is checked by the domain
//! crate before it is stored; a stored document that no longer parses reads as the defaults,
//! never as an error.

use axum::Json;
use axum::extract::State;
use scalesense_domain::pour::PourRateConfig;
use scalesense_domain::quiet::QuietHours;
use scalesense_domain::rules::Thresholds;
use scalesense_domain::units::Litres;
use scalesense_store::{Location, LocationFields};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::{Authorized, perm};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Checks, Validate};
use crate::pagination::{PageParams, page};
use crate::routes::{audit, visible_location};
use crate::state::ApiState;
use crate::views::{LocationPage, LocationView, UnitsName};

/// The settings keys the API manages, parsed with the domain's defaults for missing ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct SettingsDoc {
    thresholds: Thresholds,
    pour_rate: PourRateConfig,
    quiet_hours: Option<QuietHours>,
    raw_retention_days: Option<u32>,
    /// Read leniently (any JSON): the daily export reads it the same way.
    export_time: Option<Value>,
}

fn settings_doc(location: &Location) -> SettingsDoc {
    serde_json::from_value(location.settings.clone()).unwrap_or_else(|e| {
        tracing::warn!(location = %location.id, error = %e, "stored settings unreadable; using defaults");
        SettingsDoc::default()
    })
}

/// The location's pour-rate settings (used by the tap report).
pub fn pour_rate_config(location: &Location) -> PourRateConfig {
    settings_doc(location).pour_rate
}

/// Longest duration a threshold may name: 30 days.
const MAX_THRESHOLD_SECS: u64 = 30 * 86_400;

/// Alert thresholds; every field optional on writes (missing ones keep their value).
/// Percentages 0–100, hours 0–1000, durations 0–2592000 s (30 days).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub low_keg_warning_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub low_keg_critical_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1000)]
    pub low_keg_warning_hours: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1000)]
    pub low_keg_critical_hours: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub offline_warning_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub offline_critical_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub battery_warning_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub battery_critical_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub calibration_drift_warn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub stale_readings_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub grace_period_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub hysteresis_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1000)]
    pub hysteresis_hours: Option<f64>,
}

/// Pour-rate settings; every field optional on writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PourRateBody {
    /// How far back the pour rate looks, seconds (default 6 h).
    #[schema(minimum = 60, maximum = 604_800)]
    pub window_secs: Option<u64>,
    /// Drops at or below this many litres are noise.
    #[schema(minimum = 0, maximum = 10)]
    pub noise_floor_l: Option<f64>,
    /// At most `window_secs`.
    #[schema(minimum = 0, maximum = 86_400)]
    pub min_span_secs: Option<u64>,
    #[schema(minimum = 0, maximum = 10_000)]
    pub min_samples: Option<u32>,
}

/// Operating hours `[open, close)` in the location's time zone, `HH:MM`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursBody {
    #[schema(example = "16:00", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub open: String,
    #[schema(example = "02:00", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub close: String,
}

/// A location's editable fields and settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettingsView {
    pub location_id: String,
    pub name: String,
    pub address: String,
    pub time_zone: String,
    pub units: UnitsName,
    pub thresholds: ThresholdsBody,
    pub pour_rate: PourRateBody,
    /// `null`: no quiet hours (notifications are never held).
    pub quiet_hours: Option<QuietHoursBody>,
    /// Days raw readings are kept (rollups: a year).
    pub raw_retention_days: u32,
    /// Local time of the daily inventory e-mail (`HH:MM`, default `10:00`), or `off`.
    pub export_time: String,
}

fn settings_view(location: &Location) -> SettingsView {
    let doc = settings_doc(location);
    let t = doc.thresholds;
    SettingsView {
        location_id: location.id.to_string(),
        name: location.name.clone(),
        address: location.address.clone(),
        time_zone: location.time_zone.clone(),
        units: location.units.into(),
        thresholds: ThresholdsBody {
            low_keg_warning_pct: Some(t.low_keg_warning_pct),
            low_keg_critical_pct: Some(t.low_keg_critical_pct),
            low_keg_warning_hours: Some(t.low_keg_warning_hours),
            low_keg_critical_hours: Some(t.low_keg_critical_hours),
            offline_warning_secs: Some(t.offline_warning_secs),
            offline_critical_secs: Some(t.offline_critical_secs),
            battery_warning_pct: Some(t.battery_warning_pct),
            battery_critical_pct: Some(t.battery_critical_pct),
            calibration_drift_warn: Some(t.calibration_drift_warn),
            stale_readings_secs: Some(t.stale_readings_secs),
            grace_period_secs: Some(t.grace_period_secs),
            hysteresis_pct: Some(t.hysteresis_pct),
            hysteresis_hours: Some(t.hysteresis_hours),
        },
        pour_rate: PourRateBody {
            window_secs: Some(doc.pour_rate.window_secs),
            noise_floor_l: Some(doc.pour_rate.noise_floor.0),
            min_span_secs: Some(doc.pour_rate.min_span_secs),
            min_samples: Some(u32::try_from(doc.pour_rate.min_samples).unwrap_or(u32::MAX)),
        },
        quiet_hours: doc.quiet_hours.map(|q| QuietHoursBody {
            open: q.open.strftime("%H:%M").to_string(),
            close: q.close.strftime("%H:%M").to_string(),
        }),
        raw_retention_days: doc
            .raw_retention_days
            .unwrap_or(u32::try_from(scalesense_store::DEFAULT_RAW_RETENTION_DAYS).unwrap_or(30)),
        export_time: doc
            .export_time
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or("10:00")
            .to_owned(),
    }
}

/// A change to a location: every field optional; `quiet_hours: null` removes them.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub name: Option<String>,
    pub address: Option<String>,
    /// IANA time zone name.
    pub time_zone: Option<String>,
    pub units: Option<UnitsName>,
    pub thresholds: Option<ThresholdsBody>,
    pub pour_rate: Option<PourRateBody>,
    #[serde(default, deserialize_with = "crate::routes::taps::double_option")]
    #[schema(value_type = Option<QuietHoursBody>)]
    pub quiet_hours: Option<Option<QuietHoursBody>>,
    #[schema(minimum = 1, maximum = 3650)]
    pub raw_retention_days: Option<u32>,
    /// Local time of the daily inventory e-mail, `HH:MM`, or `off`.
    #[schema(example = "10:00", pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|off)$")]
    pub export_time: Option<String>,
}

impl ThresholdsBody {
    fn check(&self, c: &mut Checks) {
        let pct = [
            ("low_keg_warning_pct", self.low_keg_warning_pct),
            ("low_keg_critical_pct", self.low_keg_critical_pct),
            ("battery_warning_pct", self.battery_warning_pct),
            ("battery_critical_pct", self.battery_critical_pct),
            ("calibration_drift_warn", self.calibration_drift_warn),
            ("hysteresis_pct", self.hysteresis_pct),
        ];
        let hours = [
            ("low_keg_warning_hours", self.low_keg_warning_hours),
            ("low_keg_critical_hours", self.low_keg_critical_hours),
            ("hysteresis_hours", self.hysteresis_hours),
        ];
        let secs = [
            ("offline_warning_secs", self.offline_warning_secs),
            ("offline_critical_secs", self.offline_critical_secs),
            ("stale_readings_secs", self.stale_readings_secs),
            ("grace_period_secs", self.grace_period_secs),
        ];
        for (name, value) in pct {
            if let Some(v) = value {
                c.range(v, 0.0, 100.0, &format!("thresholds.{name}"));
            }
        }
        for (name, value) in hours {
            if let Some(v) = value {
                c.range(v, 0.0, 1000.0, &format!("thresholds.{name}"));
            }
        }
        for (name, value) in secs {
            if let Some(v) = value {
                c.check(
                    v <= MAX_THRESHOLD_SECS,
                    &format!("thresholds.{name}"),
                    format!("must be at most {MAX_THRESHOLD_SECS}"),
                );
            }
        }
    }
}

impl Validate for SettingsPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        if let Some(name) = &self.name {
            c.text(name, 120, "name");
        }
        if let Some(address) = &self.address {
            c.optional_text(address, 300, "address");
        }
        if let Some(tz) = &self.time_zone {
            c.check(
                tz.len() <= 64 && jiff::tz::TimeZone::get(tz).is_ok(),
                "time_zone",
                "must be an IANA time zone name such as Europe/Dublin",
            );
        }
        if let Some(days) = self.raw_retention_days {
            c.check(
                (1..=3650).contains(&days),
                "raw_retention_days",
                "must be 1 to 3650",
            );
        }
        if let Some(t) = &self.export_time {
            c.check(
                t == "off" || parse_time(t).is_some(),
                "export_time",
                "must be HH:MM or off",
            );
        }
        if let Some(Some(q)) = &self.quiet_hours {
            c.check(
                parse_time(&q.open).is_some(),
                "quiet_hours.open",
                "must be HH:MM",
            );
            c.check(
                parse_time(&q.close).is_some(),
                "quiet_hours.close",
                "must be HH:MM",
            );
        }
        if let Some(t) = &self.thresholds {
            t.check(&mut c);
        }
        if let Some(p) = &self.pour_rate {
            if let Some(floor) = p.noise_floor_l {
                c.range(floor, 0.0, 10.0, "pour_rate.noise_floor_l");
            }
            if let Some(w) = p.window_secs {
                c.check(
                    (60..=7 * 86_400).contains(&w),
                    "pour_rate.window_secs",
                    "must be 60 to 604800",
                );
            }
            if let Some(s) = p.min_span_secs {
                c.check(
                    s <= 86_400,
                    "pour_rate.min_span_secs",
                    "must be at most 86400",
                );
            }
            if let Some(n) = p.min_samples {
                c.check(
                    n <= 10_000,
                    "pour_rate.min_samples",
                    "must be at most 10000",
                );
            }
        }
        c.finish()
    }
}

fn parse_time(s: &str) -> Option<jiff::civil::Time> {
    if s.len() != 5 {
        return None;
    }
    s.parse().ok()
}

/// Applies a patch to the stored document, checking the result with the domain's rules.
fn merged_settings(location: &Location, patch: &SettingsPatch) -> Result<Value, ApiError> {
    let mut doc: Map<String, Value> = match &location.settings {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let current = settings_doc(location);
    if let Some(t) = &patch.thresholds {
        let mut merged = serde_json::to_value(current.thresholds)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if let (Value::Object(base), Ok(Value::Object(over))) =
            (&mut merged, serde_json::to_value(t))
        {
            base.extend(over);
        }
        let thresholds: Thresholds = serde_json::from_value(merged)
            .map_err(|e| ApiError::field("thresholds", e.to_string()))?;
        thresholds
            .validate()
            .map_err(|e| ApiError::field("thresholds", e.to_string()))?;
        doc.insert(
            "thresholds".into(),
            serde_json::to_value(thresholds).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    if let Some(p) = &patch.pour_rate {
        let mut config = current.pour_rate;
        if let Some(w) = p.window_secs {
            config.window_secs = w;
        }
        if let Some(f) = p.noise_floor_l {
            config.noise_floor = Litres(f);
        }
        if let Some(s) = p.min_span_secs {
            config.min_span_secs = s;
        }
        if let Some(n) = p.min_samples {
            config.min_samples = n as usize;
        }
        if config.min_span_secs > config.window_secs {
            return Err(ApiError::field(
                "pour_rate.min_span_secs",
                "must not exceed window_secs",
            ));
        }
        doc.insert(
            "pour_rate".into(),
            serde_json::to_value(config).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    match &patch.quiet_hours {
        Some(Some(q)) => {
            let (Some(open), Some(close)) = (parse_time(&q.open), parse_time(&q.close)) else {
                return Err(ApiError::field(
                    "quiet_hours",
                    "open and close must be HH:MM",
                ));
            };
            doc.insert(
                "quiet_hours".into(),
                serde_json::to_value(QuietHours { open, close })
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            );
        }
        Some(None) => {
            doc.remove("quiet_hours");
        }
        None => {}
    }
    if let Some(days) = patch.raw_retention_days {
        doc.insert("raw_retention_days".into(), Value::from(days));
    }
    if let Some(t) = &patch.export_time {
        doc.insert("export_time".into(), Value::from(t.as_str()));
    }
    Ok(Value::Object(doc))
}

/// The locations the caller may see, by id.
#[utoipa::path(get, path = "/api/v1/locations", tag = "locations",
    params(PageParams),
    responses((status = 200, body = LocationPage)),
)]
pub async fn list(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<LocationPage>, ApiError> {
    let mut all = state.store.locations(&caller.account).await?;
    all.retain(|l| caller.sees(&l.id));
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let (items, next_cursor) = page(all, &params, |l| l.id.to_string())?;
    Ok(Json(LocationPage {
        items: items.iter().map(LocationView::from).collect(),
        next_cursor,
    }))
}

/// One location.
#[utoipa::path(get, path = "/api/v1/locations/{id}", tag = "locations",
    params(("id" = String, Path, description = "Location id, e.g. `loc-001`")),
    responses((status = 200, body = LocationView)),
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<LocationView>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    Ok(Json(LocationView::from(&location)))
}

/// A location's settings: thresholds, pour-rate window, quiet hours, retention (managers).
#[utoipa::path(get, path = "/api/v1/locations/{id}/settings", tag = "locations",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = SettingsView)),
)]
pub async fn settings(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageSettings>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SettingsView>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    Ok(Json(settings_view(&location)))
}

/// Changes a location's fields and settings (managers). Thresholds are checked by the domain's
/// rules (critical at least as severe as warning).
#[utoipa::path(patch, path = "/api/v1/locations/{id}/settings", tag = "locations",
    params(("id" = String, Path, description = "Location id")),
    request_body = SettingsPatch,
    responses((status = 200, body = SettingsView)),
)]
pub async fn update_settings(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageSettings>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Json<SettingsView>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let fields = LocationFields {
        name: patch.name.clone().unwrap_or_else(|| location.name.clone()),
        address: patch
            .address
            .clone()
            .unwrap_or_else(|| location.address.clone()),
        time_zone: patch
            .time_zone
            .clone()
            .unwrap_or_else(|| location.time_zone.clone()),
        units: patch.units.map_or(location.units, Into::into),
        settings: merged_settings(&location, &patch)?,
    };
    let updated = state
        .store
        .update_location(&caller.account, &location.id, &fields)
        .await?;
    let before = settings_view(&location);
    let after = settings_view(&updated);
    audit(
        &state,
        &caller,
        "location.settings",
        &format!("location:{}", location.id),
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(Json(after))
}

/// `?format=csv|pdf`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` or `pdf`.
    #[param(pattern = "^(csv|pdf)$")]
    pub format: Option<String>,
}

impl Validate for ExportParams {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Checks::new()
            .check(
                self.format
                    .as_deref()
                    .is_none_or(|f| matches!(f, "csv" | "pdf")),
                "format",
                "must be csv or pdf",
            )
            .finish()
    }
}

/// Inventory export (managers): generates the CSV (RFC 4180, units in column names) or the
/// A4 PDF of the location's inventory and answers with a signed download link valid 15
/// minutes. Files are removed after 24 hours.
#[utoipa::path(get, path = "/api/v1/locations/{id}/inventory/export", tag = "locations",
    params(("id" = String, Path, description = "Location id"), ExportParams),
    responses((status = 200, body = crate::routes::reports::ExportLink)),
)]
pub async fn inventory_export(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewReports>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Json<crate::routes::reports::ExportLink>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let format = scalesense_reports::ExportFormat::parse(params.format.as_deref().unwrap_or("pdf"))
        .ok_or_else(|| ApiError::field("format", "must be csv or pdf"))?;
    Ok(Json(
        crate::routes::reports::export_inventory(&state, &caller, &location, format).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalesense_store::{AccountId, LocationId, Units};

    fn location(settings: Value) -> Location {
        Location {
            id: LocationId::try_from("loc-001").unwrap(),
            account_id: AccountId::try_from("acme").unwrap(),
            name: "Bar".into(),
            address: String::new(),
            time_zone: "Europe/Dublin".into(),
            units: Units::Metric,
            settings,
            created_at: 0,
        }
    }

    #[test]
    fn patches_merge_and_keep_foreign_keys() {
        let loc = location(
            serde_json::json!({"export_time": "10:00", "thresholds": {"battery_warning_pct": 25.0}}),
        );
        let patch = SettingsPatch {
            thresholds: Some(ThresholdsBody {
                low_keg_warning_pct: Some(30.0),
                ..ThresholdsBody::default()
            }),
            quiet_hours: Some(Some(QuietHoursBody {
                open: "16:00".into(),
                close: "02:00".into(),
            })),
            ..SettingsPatch::default()
        };
        let merged = merged_settings(&loc, &patch).unwrap();
        assert_eq!(merged["export_time"], "10:00");
        assert_eq!(merged["thresholds"]["battery_warning_pct"], 25.0);
        assert_eq!(merged["thresholds"]["low_keg_warning_pct"], 30.0);
        let view = settings_view(&location(merged));
        assert_eq!(view.quiet_hours.unwrap().open, "16:00");
        assert_eq!(view.export_time, "10:00");
        assert_eq!(view.thresholds.low_keg_critical_pct, Some(10.0));
    }

    #[test]
    fn domain_rules_refuse_inverted_thresholds() {
        let patch = SettingsPatch {
            thresholds: Some(ThresholdsBody {
                battery_critical_pct: Some(50.0),
                ..ThresholdsBody::default()
            }),
            ..SettingsPatch::default()
        };
        let err = merged_settings(&location(Value::Null), &patch).unwrap_err();
        assert!(matches!(err, ApiError::Validation(ref e) if e[0].field == "thresholds"));
    }

    #[test]
    fn unreadable_settings_read_as_defaults() {
        let view = settings_view(&location(serde_json::json!({"thresholds": "nonsense"})));
        assert_eq!(view.thresholds.low_keg_warning_pct, Some(20.0));
        assert_eq!(view.raw_retention_days, 30);
        assert!(view.quiet_hours.is_none());
    }
}
