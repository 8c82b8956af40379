//! The audit log of the caller's account (admins): every write the API made, with who, what,
//! when and a before/after summary, newest first.

use axum::Json;
use axum::extract::State;

use crate::auth::{Authorized, perm};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::pagination::{PageParams, int_key, page_desc};
use crate::state::ApiState;
use crate::views::{AuditPage, AuditView};

/// Most lines one listing considers (pages are cut from these).
const MAX_LINES: u32 = 1_000;

/// The account's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(PageParams),
    responses((status = 200, body = AuditPage)),
)]
pub async fn list(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewAuditLog>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let lines = state.store.audit_log(&caller.account, MAX_LINES).await?;
    let (items, next_cursor) = page_desc(lines, &params, |l| int_key(l.id))?;
    Ok(Json(AuditPage {
        items: items.iter().map(AuditView::from).collect(),
        next_cursor,
    }))
}
