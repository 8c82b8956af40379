//! Kegs: create (weights default to the beer's for the keg type, else the reference table),
//! get, move through the lifecycle (tap, kick, remove), list per location, and the keg's
//! readings. Also the "Kicked?" rule ([`kick_suspected`]): a keg whose level stayed near zero
//! for a while is suspected empty, for a manager to confirm with the kick move; the server never
//! kicks a keg by itself.
//!
//! Weight and gravity rules are the domain crate's (`KegWeights::new`, `SpecificGravity`,
//! `KegType`); the lifecycle's allowed moves are the store's. This module must never invent a
//! weight: a custom keg type without weights is a `422`.

use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use scalesense_domain::keg::{KegType, KegWeights};
use scalesense_domain::units::{Kilograms, SpecificGravity};
use scalesense_proto::{LocationId, TapId};
use scalesense_store::{
    AccountId, BeerId, KegId, KegState, Millis, NewKeg, Reading, Series, Store, StoreError,
};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Authorized, perm, secrets};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Checks, Validate};
use crate::pagination::{PageParams, encode, int_key, page_desc};
use crate::routes::{WithLocation, audit, created_at, visible_keg, visible_location, visible_tap};
use crate::state::ApiState;
use crate::views::{KegPage, KegStateName, KegView, ReadingPage, ReadingView};

/// A keg at or below this level (percent) may be empty…
pub const KICK_LEVEL_PCT: f64 = 3.0;
/// …once its readings have stayed there this long (ms).
pub const KICK_AFTER_MS: Millis = 10 * 60 * 1_000;
/// Readings looked at, at most, to decide it.
const KICK_READINGS: u32 = 5_000;

/// Whether `readings` (one keg's, oldest first, ending with its latest) say the keg is empty:
/// the latest is stable and every reading of the last [`KICK_AFTER_MS`] (and the one just before
/// that span) is at or below [`KICK_LEVEL_PCT`]. A single low reading, or a keg that was lifted
/// and came back above the threshold, does not count.
pub fn looks_empty(readings: &[Reading]) -> bool {
    let Some(last) = readings.last() else {
        return false;
    };
    if !last.stable || last.level_pct > KICK_LEVEL_PCT {
        return false;
    }
    let low_since = readings
        .iter()
        .rev()
        .take_while(|r| r.level_pct <= KICK_LEVEL_PCT)
        .last()
        .map_or(last.ts, |r| r.ts);
    last.ts - low_since >= KICK_AFTER_MS
}

/// The "Kicked?" suspicion for the keg tapped on a tap whose latest reading is at `latest_ts`
/// with `level_pct`: reads the keg's readings of the last [`KICK_AFTER_MS`] (plus a margin) and
/// applies [`looks_empty`]. Costs a query only when the level is already low.
pub async fn kick_suspected(
    store: &dyn Store,
    account: &AccountId,
    keg: &KegId,
    level_pct: Option<f64>,
    latest_ts: Option<Millis>,
) -> Result<bool, StoreError> {
    let (Some(level), Some(latest)) = (level_pct, latest_ts) else {
        return Ok(false);
    };
    if level > KICK_LEVEL_PCT {
        return Ok(false);
    }
    let start = latest.saturating_sub(KICK_AFTER_MS + KICK_AFTER_MS / 2);
    let readings = store
        .readings(
            account,
            &Series::Keg(keg.clone()),
            start,
            latest.saturating_add(1),
            KICK_READINGS,
        )
        .await?;
    Ok(looks_empty(&readings))
}

/// A new keg, in state `created`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKegRequest {
    #[schema(example = "loc-001")]
    pub location_id: String,
    #[schema(example = "guinness-draught")]
    pub beer_id: String,
    /// `half_barrel`, `quarter_barrel`, `sixth_barrel`, `slim_quarter`, or a custom name (which
    /// then needs both weights).
    #[schema(example = "half_barrel")]
    pub keg_type: String,
    /// Full keg, kg; default: the beer's measured weight for the type, else the reference.
    pub full_kg: Option<f64>,
    pub empty_kg: Option<f64>,
    /// Default: the beer's.
    pub specific_gravity: Option<f64>,
}

impl Validate for NewKegRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            LocationId::try_from(self.location_id.as_str()).is_ok(),
            "location_id",
            "is not a location id",
        )
        .check(
            BeerId::try_from(self.beer_id.as_str()).is_ok(),
            "beer_id",
            "is not a beer id",
        )
        .check(
            !self.keg_type.is_empty()
                && self.keg_type.len() <= 40
                && self
                    .keg_type
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "keg_type",
            "must be 1 to 40 of a-z, 0-9, _ and -",
        );
        if let Some(full) = self.full_kg {
            c.range(full, 0.0, 250.0, "full_kg");
        }
        if let Some(empty) = self.empty_kg {
            c.range(empty, 0.0, 250.0, "empty_kg");
        }
        if let Some(sg) = self.specific_gravity {
            c.check(
                SpecificGravity::try_from(sg).is_ok(),
                "specific_gravity",
                "must be from 0.9 to 1.2",
            );
        }
        c.finish()
    }
}

/// Creates a keg (managers). Its id is `keg-YYYYMMDD-<random>`.
#[utoipa::path(post, path = "/api/v1/kegs", tag = "kegs",
    request_body = NewKegRequest,
    responses((status = 201, body = KegView, headers(("Location" = String)))),
)]
pub async fn create(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageKegs>,
    ApiJson(body): ApiJson<NewKegRequest>,
) -> Result<WithLocation<KegView>, ApiError> {
    let location = visible_location(&state, &caller, &body.location_id).await?;
    let beer_id = BeerId::try_from(body.beer_id.as_str())
        .map_err(|e| ApiError::field("beer_id", e.to_string()))?;
    let beer = match state.store.beer(&caller.account, &beer_id).await {
        Ok(beer) => beer,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::field("beer_id", "no such beer"));
        }
        Err(e) => return Err(e.into()),
    };
    if beer.location_id.as_ref().is_some_and(|l| *l != location.id) {
        return Err(ApiError::field(
            "beer_id",
            "a custom beer of another location",
        ));
    }
    let measured = state
        .store
        .beer_keg_weights(&caller.account, &beer_id)
        .await?
        .into_iter()
        .find(|w| w.keg_type == body.keg_type)
        .map(|w| (w.full_kg, w.empty_kg));
    let reference = KegType::from_str(&body.keg_type)
        .ok()
        .map(|t| t.reference_weights())
        .map(|w| (w.full().0, w.empty().0));
    let defaults = measured.or(reference);
    let (Some(full), Some(empty)) = (
        body.full_kg.or(defaults.map(|d| d.0)),
        body.empty_kg.or(defaults.map(|d| d.1)),
    ) else {
        return Err(ApiError::field(
            "full_kg",
            "a custom keg type needs full_kg and empty_kg",
        ));
    };
    KegWeights::new(Kilograms(full), Kilograms(empty))
        .map_err(|e| ApiError::field("empty_kg", e.to_string()))?;
    let sg = body.specific_gravity.unwrap_or(beer.specific_gravity);
    let sg = SpecificGravity::try_from(sg)
        .map_err(|e| ApiError::field("specific_gravity", e.to_string()))?;
    let now = state.now();
    let date = jiff::Timestamp::from_millisecond(now)
        .map(|t| t.strftime("%Y%m%d").to_string())
        .unwrap_or_default();
    let id = KegId::try_from(format!("keg-{date}-{}", secrets::random_suffix(3)).as_str())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let keg = state
        .store
        .create_keg(
            &caller.account,
            &NewKeg {
                id,
                location_id: location.id.clone(),
                beer_id,
                keg_type: body.keg_type.clone(),
                full_kg: full,
                empty_kg: empty,
                specific_gravity: sg.get(),
                created_at: now,
            },
        )
        .await?;
    let view = KegView::from(&keg);
    audit::<(), _>(
        &state,
        &caller,
        "keg.create",
        &format!("keg:{}", keg.id),
        None,
        Some(&view),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        created_at(&format!("/api/v1/kegs/{}", keg.id)),
        Json(view),
    ))
}

/// One keg.
#[utoipa::path(get, path = "/api/v1/kegs/{id}", tag = "kegs",
    params(("id" = String, Path, description = "Keg id, e.g. `keg-20260318-007`")),
    responses((status = 200, body = KegView)),
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<KegView>, ApiError> {
    Ok(Json(KegView::from(
        &visible_keg(&state, &caller, &id).await?,
    )))
}

/// Where a keg may move to (it never goes back to `created`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KegMove {
    Tapped,
    Kicked,
    Removed,
}

/// A lifecycle move: `tapped` (needs `tap_id`), `kicked` (ran dry, frees the tap) or `removed`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KegPatch {
    pub state: KegMove,
    /// For `tapped` (and only then): a tap of the keg's location (`loc-001#TAP#07`).
    #[schema(pattern = "^[a-z][a-z0-9-]{0,31}#TAP#(0[1-9]|[1-9][0-9]{1,2})$")]
    pub tap_id: Option<String>,
}

impl Validate for KegPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            (self.state == KegMove::Tapped) == self.tap_id.is_some(),
            "tap_id",
            "is required for tapped, and only for tapped",
        );
        if let Some(tap) = &self.tap_id {
            c.check(
                TapId::try_from(tap.as_str()).is_ok(),
                "tap_id",
                "is not a tap id",
            );
        }
        c.finish()
    }
}

/// Moves a keg through its lifecycle (managers).
#[utoipa::path(patch, path = "/api/v1/kegs/{id}", tag = "kegs",
    params(("id" = String, Path, description = "Keg id")),
    request_body = KegPatch,
    responses((status = 200, body = KegView),
        (status = 409, description = "The move is not allowed from the keg's state, or the tap already has a keg", body = crate::error::Problem, content_type = "application/problem+json")),
)]
pub async fn update(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageKegs>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<KegPatch>,
) -> Result<Json<KegView>, ApiError> {
    let keg = visible_keg(&state, &caller, &id).await?;
    let now = state.now();
    let updated = match (patch.state, &patch.tap_id) {
        (KegMove::Tapped, Some(tap_raw)) => {
            let tap = visible_tap(&state, &caller, tap_raw)
                .await
                .map_err(|_| ApiError::field("tap_id", "no such tap"))?;
            if tap.location_id != keg.location_id {
                return Err(ApiError::field("tap_id", "a tap of another location"));
            }
            let keg = state
                .store
                .tap_keg(&caller.account, &keg.id, &tap.id, now)
                .await?;
            state
                .store
                .set_tap_beer(&caller.account, &tap.id, Some(&keg.beer_id))
                .await?;
            keg
        }
        (KegMove::Kicked, None) => state.store.kick_keg(&caller.account, &keg.id, now).await?,
        (KegMove::Removed, None) => {
            state
                .store
                .remove_keg(&caller.account, &keg.id, now)
                .await?
        }
        _ => return Err(ApiError::field("state", "not a move a keg can make")),
    };
    // Tapping puts the keg (and its beer) on a tap; kicking or removing a tapped keg frees it.
    let freed = (keg.state == KegState::Tapped).then_some(keg.tap_id.as_ref());
    if let Some(tap) = freed.flatten().or(updated
        .tap_id
        .as_ref()
        .filter(|_| updated.state == KegState::Tapped))
    {
        state.tap_changed(&keg.location_id, tap, &["keg_id", "beer_id"]);
    }
    let before = KegView::from(&keg);
    let after = KegView::from(&updated);
    audit(
        &state,
        &caller,
        "keg.update",
        &format!("keg:{}", keg.id),
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(Json(after))
}

/// `?state=&limit=&cursor=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KegListQuery {
    pub state: Option<KegStateName>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(max_length = 512)]
    pub cursor: Option<String>,
}

impl KegListQuery {
    fn page(&self) -> PageParams {
        PageParams {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

impl Validate for KegListQuery {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.page().validate()
    }
}

/// A location's kegs, newest first, optionally in one state.
#[utoipa::path(get, path = "/api/v1/locations/{id}/kegs", tag = "kegs",
    params(("id" = String, Path, description = "Location id"), KegListQuery),
    responses((status = 200, body = KegPage)),
)]
pub async fn list(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<KegListQuery>,
) -> Result<Json<KegPage>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let kegs = state
        .store
        .kegs(
            &caller.account,
            &location.id,
            query.state.map(KegState::from),
        )
        .await?;
    let key = |k: &scalesense_store::Keg| format!("{}{}", int_key(k.created_at), k.id);
    let mut kegs = kegs;
    kegs.sort_by_key(|k| std::cmp::Reverse(key(k)));
    let (items, next_cursor) = page_desc(kegs, &query.page(), key)?;
    Ok(Json(KegPage {
        items: items.iter().map(KegView::from).collect(),
        next_cursor,
    }))
}

/// `?start=&end=&limit=&cursor=`: a window of RFC 3339 instants.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadingsQuery {
    /// From (inclusive), RFC 3339; default: when the keg was created.
    #[param(format = DateTime)]
    pub start: Option<String>,
    /// To (exclusive), RFC 3339; default: now.
    #[param(format = DateTime)]
    pub end: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(max_length = 512)]
    pub cursor: Option<String>,
}

fn parse_instant(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_millisecond)
}

impl ReadingsQuery {
    fn page(&self) -> PageParams {
        PageParams {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

impl Validate for ReadingsQuery {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        for (field, value) in [("start", &self.start), ("end", &self.end)] {
            if let Some(v) = value {
                c.check(
                    v.len() <= 64 && parse_instant(v).is_some(),
                    field,
                    "must be an RFC 3339 instant, e.g. 2026-03-18T10:00:00Z",
                );
            }
        }
        if let Err(errors) = self.page().validate() {
            for e in errors {
                c.push(e);
            }
        }
        c.finish()
    }
}

/// The sort key of a reading: time, then its identity (unique per reading).
fn reading_key(r: &Reading) -> String {
    format!(
        "{}/{}/{}/{}",
        int_key(r.ts),
        r.device_id,
        int_key(r.boot),
        int_key(r.seq)
    )
}

/// The keg's raw readings, oldest first.
#[utoipa::path(get, path = "/api/v1/kegs/{id}/readings", tag = "kegs",
    params(("id" = String, Path, description = "Keg id"), ReadingsQuery),
    responses((status = 200, body = ReadingPage)),
)]
pub async fn readings(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReadingsQuery>,
) -> Result<Json<ReadingPage>, ApiError> {
    let keg = visible_keg(&state, &caller, &id).await?;
    let params = query.page();
    let limit = params.limit();
    let after = params.after()?;
    let mut start = query
        .start
        .as_deref()
        .and_then(parse_instant)
        .unwrap_or(keg.created_at);
    let end = query
        .end
        .as_deref()
        .and_then(parse_instant)
        .unwrap_or_else(|| state.now().saturating_add(1));
    // The cursor's time is where the next page starts; readings at that very millisecond that
    // were already returned are skipped by key below.
    if let Some(t) = after
        .as_deref()
        .and_then(|a| a.split('/').next())
        .and_then(|t| t.parse::<i64>().ok())
    {
        start = start.max(t);
    }
    let fetch = u32::try_from(limit * 2 + 16).unwrap_or(u32::MAX);
    let rows = state
        .store
        .readings(
            &caller.account,
            &Series::Keg(keg.id.clone()),
            start,
            end,
            fetch,
        )
        .await?;
    let mut rows: Vec<_> = rows
        .into_iter()
        .filter(|r| after.as_ref().is_none_or(|a| reading_key(r) > *a))
        .collect();
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| encode(&reading_key(r)))
    } else {
        None
    };
    Ok(Json(ReadingPage {
        keg_id: keg.id.to_string(),
        items: rows.iter().map(ReadingView::from).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn reading(ts: Millis, level_pct: f64, stable: bool) -> Reading {
        let keg = KegId::try_from("keg-1").unwrap();
        Reading {
            device_id: "SCALE-0001".try_into().unwrap(),
            boot: 1,
            seq: ts,
            series: Series::Keg(keg.clone()),
            tap_id: "loc-001#TAP#01".try_into().unwrap(),
            keg_id: Some(keg),
            ts,
            weight_kg: 14.0,
            level_pct,
            volume_l: None,
            battery_v: None,
            battery_pct: None,
            rssi: None,
            stable,
        }
    }

    fn series(levels: &[(Millis, f64)]) -> Vec<Reading> {
        levels.iter().map(|&(t, l)| reading(t, l, true)).collect()
    }

    #[test]
    fn a_keg_is_suspected_empty_only_after_ten_minutes_near_zero() {
        // Every minute at 2 %: nine minutes are not enough, ten are.
        let low: Vec<(Millis, f64)> = (0..=10).map(|m| (m * MIN, 2.0)).collect();
        assert!(!looks_empty(&series(&low[..10])));
        assert!(looks_empty(&series(&low)));
        // A reading above 3 % in between restarts the wait.
        let mut lifted = low.clone();
        lifted[5].1 = 40.0;
        assert!(!looks_empty(&series(&lifted)));
        // Exactly 3 % still counts as near zero; a pour going on (unstable) does not decide.
        let at_threshold: Vec<(Millis, f64)> = (0..=10).map(|m| (m * MIN, 3.0)).collect();
        assert!(looks_empty(&series(&at_threshold)));
        let mut pouring = series(&low);
        pouring.last_mut().unwrap().stable = false;
        assert!(!looks_empty(&pouring));
        assert!(!looks_empty(&[]));
    }
}
