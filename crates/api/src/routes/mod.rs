//! The routes under `/api/v1`, one module per resource, and the helpers they share: loading a
//! resource the caller may see (else `404`), and appending to the audit log.
//!
//! Every handler's first extractor is [`Authorized`](crate::auth::Authorized) or
//! [`Caller`](crate::auth::Caller); a handler must never reach the store before the caller is
//! resolved, nor pass an account other than the caller's.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod beers;
pub mod channels;
pub mod commands;
pub mod devices;
pub mod kegs;
pub mod locations;
pub mod reports;
pub mod taps;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use scalesense_proto::{DeviceId, LocationId, TapId};
use scalesense_store::{Beer, Device, Keg, KegId, Location, NewAuditEntry, Tap};
use serde::Serialize;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::path_id;
use crate::openapi;
use crate::state::ApiState;

/// Builds the API router (see [`crate::router`]).
pub fn router(state: ApiState) -> Router {
    let body_limit = state.config.body_limit;
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/locations", get(locations::list))
        .route("/locations/{id}", get(locations::get_one))
        .route(
            "/locations/{id}/settings",
            get(locations::settings).patch(locations::update_settings),
        )
        .route("/locations/{id}/taps", get(taps::list))
        .route("/locations/{id}/kegs", get(kegs::list))
        .route("/locations/{id}/devices", get(devices::list))
        .route("/locations/{id}/alerts", get(alerts::active))
        .route("/locations/{id}/alerts/history", get(alerts::history))
        .route("/locations/{id}/channels", get(channels::list))
        .route("/locations/{id}/notifications", get(channels::deliveries))
        .route("/channels", post(channels::create))
        .route(
            "/channels/{id}",
            axum::routing::patch(channels::update).delete(channels::remove),
        )
        .route("/channels/{id}/test", post(channels::test))
        .route(
            "/locations/{id}/alerts/{kind}/{entity}/acknowledge",
            post(alerts::acknowledge),
        )
        .route(
            "/locations/{id}/inventory/export",
            get(locations::inventory_export),
        )
        .route("/locations/{id}/reports/inventory", get(reports::inventory))
        .route(
            "/locations/{id}/reports/pour-by-hour",
            get(reports::pour_by_hour),
        )
        .route("/locations/{id}/reports/styles", get(reports::styles))
        .route("/locations/{id}/reports/lifespans", get(reports::lifespans))
        .route("/locations/{id}/reports/kicked", get(reports::kicked))
        .route("/locations/{id}/reports/battery", get(reports::battery))
        .route("/downloads/{file}", get(reports::download))
        .route("/taps/{id}", get(taps::get_one).patch(taps::update))
        .route("/taps/{id}/command", post(commands::issue))
        .route("/taps/{id}/history", get(taps::history))
        .route("/taps/{id}/report", get(taps::report))
        .route("/commands/{id}", get(commands::get_one))
        .route("/beers", get(beers::search).post(beers::create))
        .route("/beers/{id}", get(beers::get_one).patch(beers::update))
        .route("/kegs", post(kegs::create))
        .route("/kegs/{id}", get(kegs::get_one).patch(kegs::update))
        .route("/kegs/{id}/readings", get(kegs::readings))
        .route("/devices", post(devices::register))
        .route(
            "/devices/{id}",
            get(devices::get_one).patch(devices::update),
        )
        .route("/devices/{id}/telemetry", get(devices::telemetry))
        .route(
            "/devices/{id}/calibration",
            get(devices::calibration).post(devices::calibrate),
        )
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::get_one).patch(users::update))
        .route("/users/{id}/sessions", delete(users::revoke_sessions))
        .route("/tokens", get(users::list_tokens).post(users::create_token))
        .route("/tokens/{id}", delete(users::revoke_token))
        .route("/audit", get(audit::list))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    Router::new()
        .nest("/api/v1", api)
        .merge(SwaggerUi::new("/api/docs").url("/api/v1/openapi.json", openapi::document()))
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("route")
}

async fn wrong_method() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Appends a line to the caller's account's audit log. The write it describes has already
/// committed, so a failure here is logged loudly rather than turned into an error answer (the
/// client would retry a write that happened).
pub async fn audit<B: Serialize, A: Serialize>(
    state: &ApiState,
    caller: &Caller,
    action: &str,
    entity: &str,
    before: Option<&B>,
    after: Option<&A>,
) {
    let entry = NewAuditEntry {
        actor: caller.actor(),
        action: action.to_owned(),
        entity: entity.to_owned(),
        before: before.and_then(|b| serde_json::to_value(b).ok()),
        after: after.and_then(|a| serde_json::to_value(a).ok()),
        at: state.now(),
    };
    if let Err(e) = state.store.record_audit(&caller.account, &entry).await {
        tracing::error!(error = %e, action, entity, actor = %entry.actor, "audit line not written");
    }
}

/// The location `raw` names, if the caller may see it.
pub async fn visible_location(
    state: &ApiState,
    caller: &Caller,
    raw: &str,
) -> Result<Location, ApiError> {
    let id: LocationId = path_id(raw, "location")?;
    caller.check_location(&id)?;
    Ok(state.store.location(&caller.account, &id).await?)
}

/// The tap `raw` names (`loc-001#TAP#07`, percent-encoded in the path), if the caller may see it.
pub async fn visible_tap(state: &ApiState, caller: &Caller, raw: &str) -> Result<Tap, ApiError> {
    let id: TapId = path_id(raw, "tap")?;
    caller.check_location(&id.location())?;
    Ok(state.store.tap(&caller.account, &id).await?)
}

/// The device `raw` names, if the caller may see it.
pub async fn visible_device(
    state: &ApiState,
    caller: &Caller,
    raw: &str,
) -> Result<Device, ApiError> {
    let id: DeviceId = path_id(raw, "device")?;
    let device = state.store.device(&caller.account, &id).await?;
    caller.check_optional_location(device.location_id.as_ref(), format!("device {id}"))?;
    Ok(device)
}

/// The keg `raw` names, if the caller may see it.
pub async fn visible_keg(state: &ApiState, caller: &Caller, raw: &str) -> Result<Keg, ApiError> {
    let id: KegId = path_id(raw, "keg")?;
    let keg = state.store.keg(&caller.account, &id).await?;
    caller.check_optional_location(Some(&keg.location_id), format!("keg {id}"))?;
    Ok(keg)
}

/// The beer `raw` names, if the caller may see it (library beers: everyone).
pub async fn visible_beer(state: &ApiState, caller: &Caller, raw: &str) -> Result<Beer, ApiError> {
    let id: scalesense_store::BeerId = path_id(raw, "beer")?;
    let beer = state.store.beer(&caller.account, &id).await?;
    if let Some(location) = &beer.location_id
        && !caller.sees(location)
    {
        return Err(ApiError::not_found(format!("beer {id}")));
    }
    Ok(beer)
}

/// A response that names the resource it made (`201 Created` or `202 Accepted` with `Location`).
pub type WithLocation<T> = (
    axum::http::StatusCode,
    [(axum::http::HeaderName, String); 1],
    axum::Json<T>,
);

/// The `Location` header of a [`WithLocation`] response.
pub fn created_at(path: &str) -> [(axum::http::HeaderName, String); 1] {
    [(axum::http::header::LOCATION, path.to_owned())]
}

/// Percent-encodes an id for a path segment (`#` in tap ids).
pub fn encode_segment(id: &str) -> String {
    id.replace('%', "%25").replace('#', "%23")
}
