//! Alerts of a location: the active ones, the log, and acknowledging one.
//!
//! Who may acknowledge is the domain's matrix (`AcknowledgeAlert`: staff and up — they are at the
//! bar when a keg runs low, and an acknowledgement silences nothing). Whether an alert can be
//! acknowledged is the domain's alert machine (`AlertBook::acknowledge`): one still in its grace
//! period cannot (`409`), acknowledging twice changes nothing.

use axum::Json;
use axum::extract::State;
use scalesense_domain::alert::{self as domain, AlertBook, AlertError, AlertKind};
use scalesense_domain::units::EpochMs;
use scalesense_store::{Alert, AlertChange, AlertKey, AlertState, Severity};

use crate::auth::{Authorized, perm};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{PageParams, int_key, page_desc};
use crate::routes::{audit, visible_location};
use crate::state::ApiState;
use crate::views::{AlertHistoryPage, AlertHistoryView, AlertList, AlertView};

/// Most log lines one listing considers (pages are cut from these).
const MAX_HISTORY: u32 = 1_000;

/// A location's active alerts.
#[utoipa::path(get, path = "/api/v1/locations/{id}/alerts", tag = "alerts",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = AlertList)),
)]
pub async fn active(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlertList>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let alerts = state
        .store
        .active_alerts(&caller.account, &location.id)
        .await?;
    Ok(Json(AlertList {
        items: alerts.iter().map(AlertView::from).collect(),
    }))
}

/// A location's alert log, newest first.
#[utoipa::path(get, path = "/api/v1/locations/{id}/alerts/history", tag = "alerts",
    params(("id" = String, Path, description = "Location id"), PageParams),
    responses((status = 200, body = AlertHistoryPage)),
)]
pub async fn history(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<AlertHistoryPage>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let entries = state
        .store
        .alert_history(&caller.account, &location.id, MAX_HISTORY)
        .await?;
    let (items, next_cursor) = page_desc(entries, &params, |e| int_key(e.id))?;
    Ok(Json(AlertHistoryPage {
        items: items.iter().map(AlertHistoryView::from).collect(),
        next_cursor,
    }))
}

/// The stored alert as the domain's alert machine sees it.
fn domain_alert(alert: &Alert) -> Option<domain::Alert> {
    let kind: AlertKind = alert.kind.parse().ok()?;
    let state = match alert.state {
        AlertState::Firing => domain::AlertState::Firing {
            since: EpochMs(alert.fired_at),
        },
        AlertState::Active => domain::AlertState::Active,
        AlertState::Escalated => domain::AlertState::Escalated,
        AlertState::Acknowledged => domain::AlertState::Acknowledged {
            by: alert.acknowledged_by.clone().unwrap_or_default(),
            at: EpochMs(alert.acknowledged_at.unwrap_or(alert.updated_at)),
        },
        AlertState::Resolved => return None,
    };
    let fired = !matches!(alert.state, AlertState::Firing);
    Some(domain::Alert {
        key: domain::AlertKey {
            location: alert.location_id.clone(),
            kind,
            entity: alert.entity.clone(),
        },
        severity: match alert.severity {
            Severity::Critical => domain::Severity::Critical,
            Severity::Info | Severity::Warning => domain::Severity::Warning,
        },
        state,
        first_seen: EpochMs(alert.fired_at),
        due_at: EpochMs(alert.fired_at),
        fired_at: fired.then_some(EpochMs(alert.fired_at)),
        last_seen: EpochMs(alert.updated_at),
        resolved_at: None,
        context: alert.context.to_string(),
    })
}

/// Marks an active alert as seen. `entity` is a tap id (`#` as `%23`) or a device id.
#[utoipa::path(post, path = "/api/v1/locations/{id}/alerts/{kind}/{entity}/acknowledge", tag = "alerts",
    params(("id" = String, Path, description = "Location id"),
        ("kind" = String, Path, description = "`low_keg`, `scale_offline`, `low_battery`, `calibration_drift`, `stale_reading`"),
        ("entity" = String, Path, description = "Tap id or device id")),
    responses((status = 200, body = AlertView),
        (status = 409, description = "Still in its grace period", body = crate::error::Problem, content_type = "application/problem+json")),
)]
pub async fn acknowledge(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::AcknowledgeAlert>,
    ApiPath((id, kind, entity)): ApiPath<(String, String, String)>,
) -> Result<Json<AlertView>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let not_found = || ApiError::not_found(format!("alert {kind} on {entity}"));
    let alert = state
        .store
        .active_alerts(&caller.account, &location.id)
        .await?
        .into_iter()
        .find(|a| a.kind == kind && a.entity == entity)
        .ok_or_else(not_found)?;
    let book_alert = domain_alert(&alert).ok_or_else(not_found)?;
    let key = book_alert.key.clone();
    let mut book =
        AlertBook::try_from(vec![book_alert]).map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = state.now();
    let actor = caller.actor();
    match book.acknowledge(&key, &actor, EpochMs(now)) {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(Json(AlertView::from(&alert))),
        Err(AlertError::NotFired(_)) => {
            return Err(ApiError::Conflict(format!(
                "alert {kind} on {entity} is still in its grace period"
            )));
        }
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    }
    let updated = state
        .store
        .change_alert(
            &caller.account,
            &AlertKey {
                location_id: location.id.clone(),
                kind: alert.kind.clone(),
                entity: alert.entity.clone(),
            },
            &AlertChange {
                state: AlertState::Acknowledged,
                severity: alert.severity,
                at: now,
                by: Some(actor),
                context: alert.context.clone(),
            },
        )
        .await?;
    let before = AlertView::from(&alert);
    let after = AlertView::from(&updated);
    audit(
        &state,
        &caller,
        "alert.acknowledge",
        &format!("alert:{}/{}/{}", location.id, alert.kind, alert.entity),
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(Json(after))
}
