//! Location reports (managers and up) and the downloads of exported files.
//!
//! The reports themselves are built by `scalesense-reports` from the store in the location's
//! time zone and units; this module only resolves the caller and the location, and shapes the
//! answer. `GET /downloads/{file}` is the one route here that takes no credentials: the signed
//! link is the credential (HMAC over path and expiry, 15 minutes), and a link that is expired,
//! tampered with or unsigned answers `403` problem+json before any file is touched.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scalesense_reports::report::{
    self, BatteryReport, InventoryReport, KickedReport, LifespanReport, PourByHourReport,
    StyleReport,
};
use scalesense_reports::{ReportError, ReportScope};
use serde::Deserialize;

use crate::auth::{Authorized, Caller, perm};
use crate::error::{ApiError, FieldError, PROBLEM_JSON, Problem};
use crate::extract::{ApiPath, ApiQuery, Checks, Validate};
use crate::routes::visible_location;
use crate::state::ApiState;

/// The report scope of a location the caller may see, at the API clock's now.
async fn scope(state: &ApiState, caller: &Caller, id: &str) -> Result<ReportScope, ApiError> {
    let location = visible_location(state, caller, id).await?;
    Ok(ReportScope::of(
        caller.account.clone(),
        location,
        state.now(),
    ))
}

/// A report failure as an API error (link problems are answered by [`link_refused`]).
pub fn report_error(err: ReportError) -> ApiError {
    match err {
        ReportError::Store(e) => e.into(),
        ReportError::Gone => ApiError::not_found("export file"),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Inventory snapshot: every tap with beer, style, keg type, level, volume left, hours
/// remaining and tapped date; the low kegs; and the 30-day pour-by-hour chart.
#[utoipa::path(get, path = "/api/v1/locations/{id}/reports/inventory", tag = "reports",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = InventoryReport)),
)]
pub async fn inventory(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewReports>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InventoryReport>, ApiError> {
    let scope = scope(&state, &caller, &id).await?;
    Ok(Json(
        report::inventory(&*state.store, &scope)
            .await
            .map_err(report_error)?,
    ))
}

/// Volume poured per local hour of the day over the last 30 days (hourly rollups).
#[utoipa::path(get, path = "/api/v1/locations/{id}/reports/pour-by-hour", tag = "reports",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = PourByHourReport)),
)]
pub async fn pour_by_hour(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewReports>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PourByHourReport>, ApiError> {
    let scope = scope(&state, &caller, &id).await?;
    Ok(Json(
        report::pour_by_hour(&*state.store, &scope)
            .await
            .map_err(report_error)?,
    ))
}

/// Volume poured by beer style over the last 30 days.
#[utoipa::path(get, path = "/api/v1/locations/{id}/reports/styles", tag = "reports",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = StyleReport)),
)]
pub async fn styles(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewReports>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StyleReport>, ApiError> {
    let scope = scope(&state, &caller, &id).await?;
    Ok(Json(
        report::styles(&*state.store, &scope)
            .await
            .map_err(report_error)?,
    ))
}

/// Keg lifespans over the last 90 days: tapped, kicked (or last reading), hours, volume poured.
#[utoipa::path(get, path = "/api/v1/locations/{id}/reports/lifespans", tag = "reports",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = LifespanReport)),
)]
pub async fn lifespans(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewReports>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<LifespanReport>, ApiError> {
    let scope = scope(&state, &caller, &id).await?;
    Ok(Json(
        report::lifespans(&*state.store, &scope)
            .await
            .map_err(report_error)?,
    ))
}

/// Kegs kicked per local week (Monday to Sunday) over the last 12 weeks.
#[utoipa::path(get, path = "/api/v1/locations/{id}/reports/kicked", tag = "reports",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = KickedReport)),
)]
pub async fn kicked(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewReports>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<KickedReport>, ApiError> {
    let scope = scope(&state, &caller, &id).await?;
    Ok(Json(
        report::kicked(&*state.store, &scope)
            .await
            .map_err(report_error)?,
    ))
}

/// Battery trend per scale over the last 7 days (hourly means).
#[utoipa::path(get, path = "/api/v1/locations/{id}/reports/battery", tag = "reports",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = BatteryReport)),
)]
pub async fn battery(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewReports>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BatteryReport>, ApiError> {
    let scope = scope(&state, &caller, &id).await?;
    Ok(Json(
        report::battery(&*state.store, &scope)
            .await
            .map_err(report_error)?,
    ))
}

/// `?expires={epoch ms}&sig={hex}` of a download link.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DownloadParams {
    /// Epoch milliseconds after which the link is refused.
    pub expires: Option<i64>,
    /// HMAC-SHA256 of the path and expiry, hex.
    pub sig: Option<String>,
}

impl Validate for DownloadParams {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Checks::new().finish()
    }
}

/// `403` problem+json for a link that is missing, expired or tampered with.
fn link_refused(detail: &str) -> Response {
    let problem = Problem {
        r#type: "urn:scalesense:problem:download-link".into(),
        title: "Forbidden".into(),
        status: 403,
        detail: detail.to_owned(),
        errors: Vec::new(),
    };
    let mut response = (
        StatusCode::FORBIDDEN,
        serde_json::to_vec(&problem).unwrap_or_default(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// Downloads an exported file through its signed link (no credentials: the link is one).
/// Links last 15 minutes (the daily e-mail's CSV link: 24 hours); files are removed after 24
/// hours (`404`).
#[utoipa::path(get, path = "/api/v1/downloads/{file}", tag = "reports",
    params(("file" = String, Path, description = "Export file name"), DownloadParams),
    security(()),
    responses(
        (status = 200, description = "The file (text/csv or application/pdf)", content_type = "application/octet-stream"),
        (status = 403, description = "The link is expired, tampered with or unsigned", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn download(
    State(state): State<ApiState>,
    ApiPath(file): ApiPath<String>,
    ApiQuery(params): ApiQuery<DownloadParams>,
) -> Response {
    let Some(exports) = state.exports.clone() else {
        return ApiError::Unavailable("exports are not configured on this server".into())
            .into_response();
    };
    let (Some(expires), Some(sig)) = (params.expires, params.sig) else {
        return link_refused("the download link is not signed");
    };
    match exports.download(&file, expires, &sig, state.now()).await {
        Ok(d) => {
            let disposition = format!("attachment; filename=\"{}\"", d.file_name);
            let mut response = (StatusCode::OK, d.bytes).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(d.format.content_type()),
            );
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            response
        }
        Err(ReportError::LinkExpired) => {
            link_refused("the download link has expired: export again")
        }
        Err(ReportError::LinkInvalid) => link_refused("the download link is not valid"),
        Err(e) => report_error(e).into_response(),
    }
}

/// Where to fetch a generated export.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ExportLink {
    /// Path and query of the signed download link (relative to this server).
    pub url: String,
    /// RFC 3339 UTC: the link is refused from then on (15 minutes).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// `csv` or `pdf`.
    pub format: String,
    pub file_name: String,
    pub bytes: i64,
}

/// Generates the inventory export and answers with its signed link.
pub async fn export_inventory(
    state: &ApiState,
    caller: &Caller,
    location: &scalesense_store::Location,
    format: scalesense_reports::ExportFormat,
) -> Result<ExportLink, ApiError> {
    let Some(exports) = state.exports.clone() else {
        return Err(ApiError::Unavailable(
            "exports are not configured on this server".into(),
        ));
    };
    let exported = exports
        .export_inventory(
            &caller.account,
            &location.id,
            format,
            &caller.actor(),
            state.now(),
        )
        .await
        .map_err(report_error)?;
    Ok(ExportLink {
        url: exported.link.url,
        expires_at: report::rfc3339(exported.link.expires_at),
        format: exported.record.format,
        file_name: exported.record.file_name,
        bytes: exported.record.bytes,
    })
}
