//! Taps: the per-location list (with `ETag`), one tap, assigning beer and keg, the history chart
//! and the tap report.
//!
//! History bins and ranges come from the domain crate (`parse_range`, `bin_for_range`), the pour
//! rate from its drops-only rule; this module only fetches and shapes. The chart follows the
//! tap's current keg (seed 002: readings are keyed by keg), or the tap when no keg is tapped.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scalesense_domain::history::{bin_for_range, parse_range};
use scalesense_domain::pour::{PourSample, pour_rate};
use scalesense_domain::units::{EpochMs, Litres};
use scalesense_proto::LocationId;
use scalesense_store::{BeerId, HistorySource, KegId, KegState, Series, Tap, TapState};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::auth::{Authorized, Caller, perm};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Checks, Validate, path_id};
use crate::pagination::{PageParams, int_key, page};
use crate::routes::locations::pour_rate_config;
use crate::routes::{audit, kegs, visible_tap};
use crate::state::ApiState;
use crate::views::{TapPage, TapView, UnitsName, gallons, ts};

/// Longest raw-reading window a report reads for the pour rate.
const MAX_POUR_SAMPLES: u32 = 20_000;

/// Deserializes a field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// A strong `ETag` for a JSON body.
fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", crate::auth::secrets::hex(&digest[..16]))
}

/// Whether `If-None-Match` names `tag` (weak comparison, as RFC 9110 asks for GET).
fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

/// The taps of a location with their live state, by tap number. Answers `304` when
/// `If-None-Match` carries the current `ETag`.
#[utoipa::path(get, path = "/api/v1/locations/{id}/taps", tag = "taps",
    params(("id" = String, Path, description = "Location id, e.g. `loc-001`"), PageParams,
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer")),
    responses(
        (status = 200, body = TapPage, headers(("ETag" = String, description = "Changes whenever the page does"))),
        (status = 304, description = "Unchanged since the `ETag` sent"),
    ),
)]
pub async fn list(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let location_id: LocationId = path_id(&id, "location")?;
    caller.check_location(&location_id)?;
    // The dashboard's hottest read: both queries at once.
    let (location, taps) = tokio::try_join!(
        state.store.location(&caller.account, &location_id),
        state.store.taps(&caller.account, &location_id),
    )?;
    let (items, next_cursor) = page(taps, &params, |t| int_key(i64::from(t.tap.number)))?;
    let mut views = Vec::with_capacity(items.len());
    for v in &items {
        let suspected = suspected(&state, &caller, &v.tap, &v.state).await?;
        views.push(TapView::new(&v.tap, &v.state, location.units).with_kick_suspected(suspected));
    }
    let body = TapPage {
        location_id: location.id.to_string(),
        units: location.units.into(),
        items: views,
        next_cursor,
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let tag = etag(&bytes);
    let tag_header = HeaderValue::from_str(&tag).map_err(|e| ApiError::Internal(e.to_string()))?;
    if not_modified(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag_header)]).into_response());
    }
    Ok((
        [
            (header::ETAG, tag_header),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn tap_view(state: &ApiState, caller: &Caller, tap: &Tap) -> Result<TapView, ApiError> {
    let tap_state = state.store.tap_state(&caller.account, &tap.id).await?;
    let location = state
        .store
        .location(&caller.account, &tap.location_id)
        .await?;
    let suspected = suspected(state, caller, tap, &tap_state).await?;
    Ok(TapView::new(tap, &tap_state, location.units).with_kick_suspected(suspected))
}

/// The "Kicked?" suspicion for the keg on `tap` (see [`kegs::kick_suspected`]).
async fn suspected(
    state: &ApiState,
    caller: &Caller,
    tap: &Tap,
    tap_state: &TapState,
) -> Result<bool, ApiError> {
    let Some(keg) = &tap.keg_id else {
        return Ok(false);
    };
    Ok(kegs::kick_suspected(
        state.store.as_ref(),
        &caller.account,
        keg,
        tap_state.level_pct,
        tap_state.updated_at,
    )
    .await?)
}

/// One tap with its live state.
#[utoipa::path(get, path = "/api/v1/taps/{id}", tag = "taps",
    params(("id" = String, Path, description = "Tap id, e.g. `loc-001#TAP#07` (`#` as `%23`)")),
    responses((status = 200, body = TapView)),
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TapView>, ApiError> {
    let tap = visible_tap(&state, &caller, &id).await?;
    Ok(Json(tap_view(&state, &caller, &tap).await?))
}

/// Assigns or unassigns the tap's beer and keg. Absent fields are left alone; `null` unassigns.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TapPatch {
    /// A library beer or one of this location's custom beers; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub beer_id: Option<Option<String>>,
    /// A keg of this location in state `created`, to tap here (the tap's beer follows the keg's
    /// unless `beer_id` is given); `null` kicks the keg on the tap.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub keg_id: Option<Option<String>>,
}

impl Validate for TapPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            self.beer_id.is_some() || self.keg_id.is_some(),
            "body",
            "give beer_id and/or keg_id",
        );
        if let Some(Some(b)) = &self.beer_id {
            c.check(
                BeerId::try_from(b.as_str()).is_ok(),
                "beer_id",
                "is not a beer id",
            );
        }
        if let Some(Some(k)) = &self.keg_id {
            c.check(
                KegId::try_from(k.as_str()).is_ok(),
                "keg_id",
                "is not a keg id",
            );
        }
        c.finish()
    }
}

/// Assigns or unassigns beer and keg (managers).
#[utoipa::path(patch, path = "/api/v1/taps/{id}", tag = "taps",
    params(("id" = String, Path, description = "Tap id (`#` as `%23`)")),
    request_body = TapPatch,
    responses((status = 200, body = TapView)),
)]
pub async fn update(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::AssignBeerKeg>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<TapPatch>,
) -> Result<Json<TapView>, ApiError> {
    let tap = visible_tap(&state, &caller, &id).await?;
    let before = tap_view(&state, &caller, &tap).await?;
    let now = state.now();
    let mut beer_after_keg: Option<BeerId> = None;
    match &patch.keg_id {
        Some(Some(raw)) => {
            let keg_id = KegId::try_from(raw.as_str())
                .map_err(|e| ApiError::field("keg_id", e.to_string()))?;
            let keg = match state.store.keg(&caller.account, &keg_id).await {
                Ok(keg) => keg,
                Err(scalesense_store::StoreError::NotFound { .. }) => {
                    return Err(ApiError::field("keg_id", "no such keg"));
                }
                Err(e) => return Err(e.into()),
            };
            if keg.location_id != tap.location_id {
                return Err(ApiError::field("keg_id", "the keg is at another location"));
            }
            if keg.state != KegState::Created {
                return Err(ApiError::Conflict(format!(
                    "keg {keg_id} is {}: only a new keg can be tapped",
                    keg.state.as_str()
                )));
            }
            state
                .store
                .tap_keg(&caller.account, &keg_id, &tap.id, now)
                .await?;
            beer_after_keg = Some(keg.beer_id);
        }
        Some(None) => {
            if let Some(keg_id) = &tap.keg_id {
                state.store.kick_keg(&caller.account, keg_id, now).await?;
            }
        }
        None => {}
    }
    match &patch.beer_id {
        Some(Some(raw)) => {
            let beer_id = BeerId::try_from(raw.as_str())
                .map_err(|e| ApiError::field("beer_id", e.to_string()))?;
            let beer = match state.store.beer(&caller.account, &beer_id).await {
                Ok(beer) => beer,
                Err(scalesense_store::StoreError::NotFound { .. }) => {
                    return Err(ApiError::field("beer_id", "no such beer"));
                }
                Err(e) => return Err(e.into()),
            };
            if beer
                .location_id
                .as_ref()
                .is_some_and(|l| *l != tap.location_id)
            {
                return Err(ApiError::field(
                    "beer_id",
                    "a custom beer of another location",
                ));
            }
            state
                .store
                .set_tap_beer(&caller.account, &tap.id, Some(&beer_id))
                .await?;
        }
        Some(None) => {
            state
                .store
                .set_tap_beer(&caller.account, &tap.id, None)
                .await?;
        }
        None => {
            if let Some(beer_id) = &beer_after_keg {
                state
                    .store
                    .set_tap_beer(&caller.account, &tap.id, Some(beer_id))
                    .await?;
            }
        }
    }
    let tap = state.store.tap(&caller.account, &tap.id).await?;
    let after = tap_view(&state, &caller, &tap).await?;
    announce(&state, &tap, &before, &after);
    audit(
        &state,
        &caller,
        "tap.update",
        &format!("tap:{}", tap.id),
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(Json(after))
}

/// Tells the dashboards which of the tap's assignments a write changed, if any.
fn announce(state: &ApiState, tap: &Tap, before: &TapView, after: &TapView) {
    let changed: Vec<&str> = [
        ("beer_id", before.beer_id != after.beer_id),
        ("keg_id", before.keg_id != after.keg_id),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect();
    if !changed.is_empty() {
        state.tap_changed(&tap.location_id, &tap.id, &changed);
    }
}

/// `?range=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// A whole number and a unit (`m`, `h`, `d`, `w`, `y`), 5 minutes to 1 year, e.g. `2h`,
    /// `24h`, `7d`, `30d`. Default `24h`.
    #[param(pattern = "^[0-9]{1,6}[mhdwy]$", example = "7d")]
    pub range: Option<String>,
}

impl Validate for HistoryParams {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        match self.range.as_deref().map(parse_range) {
            Some(Err(e)) => Err(vec![FieldError::new("range", e.to_string())]),
            _ => Ok(()),
        }
    }
}

/// One bin of the level series.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LevelPoint {
    /// Start of the bin.
    #[schema(format = DateTime)]
    pub t: String,
    pub level_pct: f64,
    pub level_min_pct: f64,
    pub level_max_pct: f64,
    /// Beer poured in the bin (from rollups; `null` when answered from raw readings).
    pub poured_l: Option<f64>,
    pub poured_gal: Option<f64>,
}

/// One bin of the battery series.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatteryPoint {
    #[schema(format = DateTime)]
    pub t: String,
    pub battery_pct: f64,
}

/// A tap's history chart: level and battery series (seed 002's `data` and `battery_data`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryView {
    pub tap_id: String,
    /// The readings charted: the current keg's (`keg_id` set) or the tap's.
    pub keg_id: Option<String>,
    pub range: String,
    /// Bin width (seed: ≤ 2 h → 5 min, ≤ 24 h → 15 min, ≤ 7 d → 1 h, longer → 6 h).
    pub bin_secs: u64,
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
    /// `raw`, `rollup_5min`, `rollup_1h` or `rollup_1d`.
    pub source: String,
    pub data: Vec<LevelPoint>,
    pub battery_data: Vec<BatteryPoint>,
}

fn series_of(tap: &Tap) -> Series {
    tap.keg_id
        .clone()
        .map_or_else(|| Series::Tap(tap.id.clone()), Series::Keg)
}

/// The tap's level and battery history over `range`, binned by the seed's rule.
#[utoipa::path(get, path = "/api/v1/taps/{id}/history", tag = "taps",
    params(("id" = String, Path, description = "Tap id (`#` as `%23`)"), HistoryParams),
    responses((status = 200, body = HistoryView)),
)]
pub async fn history(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<HistoryView>, ApiError> {
    let range_text = params.range.unwrap_or_else(|| "24h".to_owned());
    let range = parse_range(&range_text).map_err(|e| ApiError::field("range", e.to_string()))?;
    let tap = visible_tap(&state, &caller, &id).await?;
    let bin = bin_for_range(range);
    let end = state.now();
    let start = EpochMs(end).minus(range).0;
    let bin_ms = i64::try_from(bin.as_millis()).unwrap_or(i64::MAX);
    let history = state
        .store
        .history(&caller.account, &series_of(&tap), start, end, bin_ms)
        .await?;
    let source = match history.source {
        HistorySource::Raw => "raw",
        HistorySource::Rollup5Min => "rollup_5min",
        HistorySource::Rollup1Hour => "rollup_1h",
        HistorySource::Rollup1Day => "rollup_1d",
    };
    Ok(Json(HistoryView {
        tap_id: tap.id.to_string(),
        keg_id: tap.keg_id.as_ref().map(ToString::to_string),
        range: range_text,
        bin_secs: bin.as_secs(),
        start: ts(start),
        end: ts(end),
        source: source.to_owned(),
        battery_data: history
            .points
            .iter()
            .filter_map(|p| {
                p.battery_avg.map(|b| BatteryPoint {
                    t: ts(p.t),
                    battery_pct: b,
                })
            })
            .collect(),
        data: history
            .points
            .iter()
            .map(|p| LevelPoint {
                t: ts(p.t),
                level_pct: p.level_avg,
                level_min_pct: p.level_min,
                level_max_pct: p.level_max,
                poured_l: p.poured_l,
                poured_gal: p.poured_l.map(gallons),
            })
            .collect(),
    }))
}

/// How fast the current keg is poured (domain drops-only rule over the location's window).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PourRateView {
    pub litres_per_hour: f64,
    pub gallons_per_hour: f64,
    /// `null` when nothing was poured over the window (the keg is not running out).
    pub hours_remaining: Option<f64>,
    pub poured_l: f64,
    pub volume_now_l: f64,
    pub volume_now_gal: f64,
    pub span_secs: u64,
    pub samples: usize,
}

/// The current keg's life on the tap so far.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KegLifeView {
    pub keg_id: String,
    pub beer_id: String,
    #[schema(format = DateTime)]
    pub tapped_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_reading: Option<String>,
    pub lifespan_secs: u64,
    pub poured_l: f64,
    pub poured_gal: f64,
    pub readings: i64,
}

/// A tap's report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TapReport {
    pub tap_id: String,
    pub keg_id: Option<String>,
    pub beer_id: Option<String>,
    pub units: UnitsName,
    #[schema(format = DateTime)]
    pub generated_at: String,
    /// The pour-rate window, seconds (location setting, default 6 h).
    pub window_secs: u64,
    /// `null`: not enough data for a rate ("unknown", never a division by zero).
    pub pour_rate: Option<PourRateView>,
    /// `null`: no keg tapped.
    pub keg: Option<KegLifeView>,
    /// Poured on this tap (every keg) over the last 24 hours and 7 days.
    pub poured_24h_l: f64,
    pub poured_24h_gal: f64,
    pub poured_7d_l: f64,
    pub poured_7d_gal: f64,
    /// Earlier kegs on this tap over the last 90 days, newest first.
    pub past_kegs: Vec<PastKegView>,
}

/// An earlier keg's life on the tap.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PastKegView {
    pub keg_id: String,
    pub beer_id: String,
    #[schema(format = DateTime)]
    pub tapped_at: Option<String>,
    /// The kick, or the last reading when it was removed without one.
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    pub kicked: bool,
    pub lifespan_secs: Option<u64>,
    pub poured_l: f64,
    pub poured_gal: f64,
}

/// The tap's earlier kegs (not `current`, not still tapped), newest tapping first.
fn past_kegs(
    rows: Vec<scalesense_store::KegReportRow>,
    current: Option<&KegId>,
) -> Vec<PastKegView> {
    let mut past: Vec<PastKegView> = rows
        .into_iter()
        .filter(|r| Some(&r.keg_id) != current && r.state != KegState::Tapped)
        .map(|r| {
            let ended = r.kicked_at.or(r.last_reading);
            PastKegView {
                keg_id: r.keg_id.to_string(),
                beer_id: r.beer_id.to_string(),
                tapped_at: r.tapped_at.map(ts),
                ended_at: ended.map(ts),
                kicked: r.kicked_at.is_some(),
                lifespan_secs: r
                    .tapped_at
                    .zip(ended)
                    .and_then(|(t, e)| u64::try_from((e - t) / 1000).ok()),
                poured_l: r.poured_l,
                poured_gal: gallons(r.poured_l),
            }
        })
        .collect();
    past.sort_by(|a, b| b.tapped_at.cmp(&a.tapped_at));
    past
}

/// Litres poured on `tap` in `[start, end)`, and its kegs' rows (from the rollups).
async fn tap_kegs(
    state: &ApiState,
    caller: &Caller,
    tap: &Tap,
    start: i64,
    end: i64,
) -> Result<(f64, Vec<scalesense_store::KegReportRow>), ApiError> {
    let rows: Vec<_> = state
        .store
        .keg_report(&caller.account, &tap.location_id, start, end)
        .await?
        .into_iter()
        .filter(|r| r.tap_id.as_ref() == Some(&tap.id))
        .collect();
    Ok((rows.iter().map(|r| r.poured_l).sum(), rows))
}

/// Pour rate, hours remaining and the current keg's life. Everyone who sees the tap may read
/// it: "what runs out tonight" is the bar staff's question (BRIEF §1); the location-wide
/// reports and exports stay with managers.
#[utoipa::path(get, path = "/api/v1/taps/{id}/report", tag = "taps",
    params(("id" = String, Path, description = "Tap id (`#` as `%23`)")),
    responses((status = 200, body = TapReport)),
)]
pub async fn report(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TapReport>, ApiError> {
    let tap = visible_tap(&state, &caller, &id).await?;
    let location = state
        .store
        .location(&caller.account, &tap.location_id)
        .await?;
    let config = pour_rate_config(&location);
    let now = state.now();
    let series = series_of(&tap);
    let start = EpochMs(now).minus(config.window()).0;
    let readings = state
        .store
        .readings(
            &caller.account,
            &series,
            start,
            now.saturating_add(1),
            MAX_POUR_SAMPLES,
        )
        .await?;
    let samples: Vec<PourSample<String>> = readings
        .iter()
        .filter_map(|r| {
            r.volume_l.map(|v| PourSample {
                at: EpochMs(r.ts),
                volume: Litres(v),
                keg: r.series.to_string(),
                in_maintenance: false,
            })
        })
        .collect();
    let rate = pour_rate(&samples, EpochMs(now), &config).map(|r| PourRateView {
        litres_per_hour: r.litres_per_hour,
        gallons_per_hour: gallons(r.litres_per_hour),
        hours_remaining: r.hours_remaining,
        poured_l: r.poured.0,
        volume_now_l: r.volume_now.0,
        volume_now_gal: gallons(r.volume_now.0),
        span_secs: r.span_secs,
        samples: r.samples,
    });
    let keg = match &tap.keg_id {
        Some(keg_id) => {
            let keg = state.store.keg(&caller.account, keg_id).await?;
            let from = keg.tapped_at.unwrap_or(keg.created_at);
            let rows = state
                .store
                .keg_report(
                    &caller.account,
                    &tap.location_id,
                    from,
                    now.saturating_add(1),
                )
                .await?;
            let row = rows.into_iter().find(|r| r.keg_id == *keg_id);
            let poured = row.as_ref().map_or(0.0, |r| r.poured_l);
            let last = row.as_ref().and_then(|r| r.last_reading);
            let end = keg.kicked_at.or(last).unwrap_or(from).max(from);
            Some(KegLifeView {
                keg_id: keg_id.to_string(),
                beer_id: keg.beer_id.to_string(),
                tapped_at: keg.tapped_at.map(ts),
                last_reading: last.map(ts),
                lifespan_secs: u64::try_from((end - from) / 1000).unwrap_or(0),
                poured_l: poured,
                poured_gal: gallons(poured),
                readings: row.map_or(0, |r| r.readings),
            })
        }
        None => None,
    };
    let end = now.saturating_add(1);
    let (poured_24h, _) = tap_kegs(&state, &caller, &tap, end - 86_400_000, end).await?;
    let (poured_7d, _) = tap_kegs(&state, &caller, &tap, end - 7 * 86_400_000, end).await?;
    let (_, history) = tap_kegs(&state, &caller, &tap, end - 90 * 86_400_000, end).await?;
    let past_kegs = past_kegs(history, tap.keg_id.as_ref());
    Ok(Json(TapReport {
        poured_24h_l: poured_24h,
        poured_24h_gal: gallons(poured_24h),
        poured_7d_l: poured_7d,
        poured_7d_gal: gallons(poured_7d),
        past_kegs,
        tap_id: tap.id.to_string(),
        keg_id: tap.keg_id.as_ref().map(ToString::to_string),
        beer_id: tap.beer_id.as_ref().map(ToString::to_string),
        units: location.units.into(),
        generated_at: ts(now),
        window_secs: config.window_secs,
        pour_rate: rate,
        keg,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly_and_with_lists() {
        let tag = etag(b"{}");
        assert_eq!(tag.len(), 34);
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            format!("\"other\", W/{tag}").parse().unwrap(),
        );
        assert!(not_modified(&h, &tag));
        h.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(not_modified(&h, &tag));
        assert_ne!(etag(b"{}"), etag(b"[]"));
    }

    #[test]
    fn patch_fields_distinguish_absent_and_null() {
        let p: TapPatch = crate::extract::parse_json(br#"{"beer_id":null}"#).unwrap();
        assert_eq!(p.beer_id, Some(None));
        assert_eq!(p.keg_id, None);
        assert!(p.validate().is_ok());
        let empty: TapPatch = crate::extract::parse_json(b"{}").unwrap();
        assert!(empty.validate().is_err());
        let bad: TapPatch = crate::extract::parse_json(br#"{"keg_id":"a#b"}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err()[0].field, "keg_id");
    }
}
