//! Scales: register (admins: it admits a new identity), get, move to a tap (managers),
//! telemetry, calibration (read; record one — managers), and the list per location.
//!
//! A device on no location yet is visible only to callers who see every location.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use scalesense_proto::{DeviceId, LocationId, TapId};
use scalesense_store::{NewCalibration, NewDevice};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Authorized, perm};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Checks, Validate};
use crate::pagination::{PageParams, page};
use crate::routes::taps::double_option;
use crate::routes::{
    WithLocation, audit, created_at, visible_device, visible_location, visible_tap,
};
use crate::state::ApiState;
use crate::views::{CalibrationView, CalibrationsView, DevicePage, DeviceView, TelemetryView};

/// Calibrations returned with the current one.
const CALIBRATION_HISTORY: u32 = 50;

/// A scale to register.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceRequest {
    /// 1–32 of `A–Z a–z 0–9 - _`, e.g. `SCALE-0042` (also its MQTT client id).
    #[schema(example = "SCALE-0042", pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub id: String,
    #[schema(pattern = "^[a-z][a-z0-9-]{0,31}$")]
    pub location_id: Option<String>,
    #[schema(min_length = 1, max_length = 24)]
    pub fw_version: Option<String>,
}

impl Validate for NewDeviceRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            DeviceId::try_from(self.id.as_str()).is_ok(),
            "id",
            "must be 1 to 32 of A-Z a-z 0-9 - _",
        );
        if let Some(l) = &self.location_id {
            c.check(
                LocationId::try_from(l.as_str()).is_ok(),
                "location_id",
                "is not a location id",
            );
        }
        if let Some(v) = &self.fw_version {
            c.text(v, 24, "fw_version");
        }
        c.finish()
    }
}

/// Registers a scale with the account (admins).
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices",
    request_body = NewDeviceRequest,
    responses((status = 201, body = DeviceView, headers(("Location" = String))),
        (status = 409, description = "The id is taken", body = crate::error::Problem, content_type = "application/problem+json")),
)]
pub async fn register(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::RegisterDevice>,
    ApiJson(body): ApiJson<NewDeviceRequest>,
) -> Result<WithLocation<DeviceView>, ApiError> {
    let id =
        DeviceId::try_from(body.id.as_str()).map_err(|e| ApiError::field("id", e.to_string()))?;
    let location = match &body.location_id {
        Some(raw) => Some(visible_location(&state, &caller, raw).await?.id),
        None => None,
    };
    let device = state
        .store
        .register_device(
            &caller.account,
            &NewDevice {
                id,
                location_id: location,
                fw_version: body.fw_version.clone(),
                created_at: state.now(),
            },
        )
        .await?;
    let view = DeviceView::from(&device);
    audit::<(), _>(
        &state,
        &caller,
        "device.register",
        &format!("device:{}", device.id),
        None,
        Some(&view),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        created_at(&format!("/api/v1/devices/{}", device.id)),
        Json(view),
    ))
}

/// One scale.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id, e.g. `SCALE-0042`")),
    responses((status = 200, body = DeviceView)),
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(DeviceView::from(
        &visible_device(&state, &caller, &id).await?,
    )))
}

/// Moves a scale onto a tap, or takes it off with `null`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub tap_id: Option<Option<String>>,
}

impl Validate for DevicePatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            self.tap_id.is_some(),
            "tap_id",
            "is required (null takes the scale off its tap)",
        );
        if let Some(Some(t)) = &self.tap_id {
            c.check(
                TapId::try_from(t.as_str()).is_ok(),
                "tap_id",
                "is not a tap id",
            );
        }
        c.finish()
    }
}

/// Puts the scale on a tap (managers).
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    request_body = DevicePatch,
    responses((status = 200, body = DeviceView),
        (status = 409, description = "The tap already has a scale", body = crate::error::Problem, content_type = "application/problem+json")),
)]
pub async fn update(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageDevices>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<DevicePatch>,
) -> Result<Json<DeviceView>, ApiError> {
    let device = visible_device(&state, &caller, &id).await?;
    let tap = match patch.tap_id.flatten() {
        Some(raw) => Some(
            visible_tap(&state, &caller, &raw)
                .await
                .map_err(|_| ApiError::field("tap_id", "no such tap"))?
                .id,
        ),
        None => None,
    };
    let updated = state
        .store
        .assign_device(&caller.account, &device.id, tap.as_ref())
        .await?;
    let before = DeviceView::from(&device);
    let after = DeviceView::from(&updated);
    audit(
        &state,
        &caller,
        "device.update",
        &format!("device:{}", device.id),
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(Json(after))
}

/// The scale's health: battery, signal, last tare.
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = TelemetryView)),
)]
pub async fn telemetry(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TelemetryView>, ApiError> {
    let device = visible_device(&state, &caller, &id).await?;
    let t = state.store.telemetry(&caller.account, &device.id).await?;
    Ok(Json(TelemetryView::from(&t)))
}

/// The scale's current calibration and the latest ones before it.
#[utoipa::path(get, path = "/api/v1/devices/{id}/calibration", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = CalibrationsView)),
)]
pub async fn calibration(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CalibrationsView>, ApiError> {
    let device = visible_device(&state, &caller, &id).await?;
    let current = state.store.calibration(&caller.account, &device.id).await?;
    let history = state
        .store
        .calibration_history(&caller.account, &device.id, CALIBRATION_HISTORY)
        .await?;
    Ok(Json(CalibrationsView {
        current: current.as_ref().map(CalibrationView::from),
        history: history.iter().map(CalibrationView::from).collect(),
    }))
}

/// A calibration measured elsewhere (e.g. over BLE during maintenance), to record as current.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCalibrationRequest {
    /// Counts per kilogram, positive.
    #[schema(exclusive_minimum = 0, maximum = 1_000_000_000)]
    pub scale_factor: f64,
    /// Raw HX711 counts at zero load (24-bit signed).
    #[schema(minimum = -8_388_608, maximum = 8_388_607)]
    pub zero_offset: i64,
    /// How it was measured, e.g. `known_weight`.
    #[schema(example = "known_weight", min_length = 1, max_length = 32)]
    pub method: String,
    #[schema(exclusive_minimum = 0, maximum = 250)]
    pub known_weight_kg: Option<f64>,
    /// Drift against the previous calibration, percent.
    #[schema(minimum = -100, maximum = 100)]
    pub drift_pct: Option<f64>,
}

impl Validate for NewCalibrationRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            self.scale_factor.is_finite() && self.scale_factor > 0.0 && self.scale_factor <= 1e9,
            "scale_factor",
            "must be a positive number of counts per kg, at most 1e9",
        )
        .check(
            (-(1 << 23)..(1 << 23)).contains(&self.zero_offset),
            "zero_offset",
            "must be a 24-bit signed value",
        )
        .text(&self.method, 32, "method");
        if let Some(w) = self.known_weight_kg {
            c.check(
                w.is_finite() && w > 0.0 && w <= 250.0,
                "known_weight_kg",
                "must be above 0 and at most 250",
            );
        }
        if let Some(d) = self.drift_pct {
            c.range(d, -100.0, 100.0, "drift_pct");
        }
        c.finish()
    }
}

/// Records a calibration as the scale's current one (managers).
#[utoipa::path(post, path = "/api/v1/devices/{id}/calibration", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    request_body = NewCalibrationRequest,
    responses((status = 201, body = CalibrationView)),
)]
pub async fn calibrate(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::Calibrate>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewCalibrationRequest>,
) -> Result<(StatusCode, Json<CalibrationView>), ApiError> {
    let device = visible_device(&state, &caller, &id).await?;
    let before = state.store.calibration(&caller.account, &device.id).await?;
    let recorded = state
        .store
        .record_calibration(
            &caller.account,
            &NewCalibration {
                device_id: device.id.clone(),
                scale_factor: body.scale_factor,
                zero_offset: body.zero_offset,
                method: body.method.trim().to_owned(),
                known_weight_kg: body.known_weight_kg,
                drift_pct: body.drift_pct,
                by: caller.actor(),
                at: state.now(),
            },
        )
        .await?;
    let view = CalibrationView::from(&recorded);
    audit(
        &state,
        &caller,
        "device.calibrate",
        &format!("device:{}", device.id),
        before.as_ref().map(CalibrationView::from).as_ref(),
        Some(&view),
    )
    .await;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A location's scales, by id.
#[utoipa::path(get, path = "/api/v1/locations/{id}/devices", tag = "devices",
    params(("id" = String, Path, description = "Location id"), PageParams),
    responses((status = 200, body = DevicePage)),
)]
pub async fn list(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<DevicePage>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let mut devices = state.store.devices(&caller.account, &location.id).await?;
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    let (items, next_cursor) = page(devices, &params, |d| d.id.to_string())?;
    Ok(Json(DevicePage {
        items: items.iter().map(DeviceView::from).collect(),
        next_cursor,
    }))
}
