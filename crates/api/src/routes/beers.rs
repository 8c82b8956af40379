//! Beers: search (`?q=`) over the global library plus the caller's locations' custom beers, one
//! beer with its keg weights, and creating or editing a location's custom beer.
//!
//! The global library is the operator's (it spans accounts); tenants add custom beers to their
//! own locations only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use scalesense_domain::units::SpecificGravity;
use scalesense_proto::LocationId;
use scalesense_store::{Beer, BeerId};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Authorized, perm, secrets};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Checks, Validate};
use crate::pagination::{PageParams, page};
use crate::routes::{
    WithLocation, audit, created_at, encode_segment, visible_beer, visible_location,
};
use crate::state::ApiState;
use crate::views::{BeerPage, BeerView, KegWeightView};

/// Most matches one search considers (pages are cut from these).
const MAX_MATCHES: u32 = 1_000;

/// `?q=&location_id=&limit=&cursor=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BeerQuery {
    /// Case-insensitive substring of name, brewery or style; empty: everything.
    #[param(max_length = 100)]
    pub q: Option<String>,
    /// Only this location's custom beers (plus the library); default: every location's.
    pub location_id: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(max_length = 512)]
    pub cursor: Option<String>,
}

impl BeerQuery {
    fn page(&self) -> PageParams {
        PageParams {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

impl Validate for BeerQuery {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            self.q.as_ref().is_none_or(|q| q.chars().count() <= 100),
            "q",
            "must be at most 100 characters",
        );
        if let Err(errors) = self.page().validate() {
            for e in errors {
                c.push(e);
            }
        }
        c.finish()
    }
}

/// Searches beers: the library and the custom beers of the caller's locations, by id.
#[utoipa::path(get, path = "/api/v1/beers", tag = "beers",
    params(BeerQuery),
    responses((status = 200, body = BeerPage)),
)]
pub async fn search(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiQuery(query): ApiQuery<BeerQuery>,
) -> Result<Json<BeerPage>, ApiError> {
    let location = match &query.location_id {
        Some(raw) => Some(visible_location(&state, &caller, raw).await?.id),
        None => None,
    };
    let mut beers = state
        .store
        .search_beers(
            &caller.account,
            location.as_ref(),
            query.q.as_deref().unwrap_or(""),
            MAX_MATCHES,
        )
        .await?;
    beers.retain(|b| b.location_id.as_ref().is_none_or(|l| caller.sees(l)));
    beers.sort_by(|a, b| a.id.cmp(&b.id));
    let (items, next_cursor) = page(beers, &query.page(), |b| b.id.to_string())?;
    Ok(Json(BeerPage {
        items: items.iter().map(BeerView::from).collect(),
        next_cursor,
    }))
}

/// One beer with its weights per keg type (this account's measurements, else the library's).
#[utoipa::path(get, path = "/api/v1/beers/{id}", tag = "beers",
    params(("id" = String, Path, description = "Beer id, e.g. `guinness-draught` or `loc-001#house-ipa` (`#` as `%23`)")),
    responses((status = 200, body = BeerView)),
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BeerView>, ApiError> {
    let beer = visible_beer(&state, &caller, &id).await?;
    let weights = state
        .store
        .beer_keg_weights(&caller.account, &beer.id)
        .await?;
    let mut view = BeerView::from(&beer);
    view.keg_weights = Some(weights.iter().map(KegWeightView::from).collect());
    Ok(Json(view))
}

/// A location's custom beer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBeerRequest {
    #[schema(example = "loc-001")]
    pub location_id: String,
    #[schema(example = "House IPA")]
    pub name: String,
    #[serde(default)]
    pub brewery: String,
    #[serde(default)]
    pub style: String,
    /// Percent, 0–100.
    pub abv: f64,
    /// 0.9–1.2; default 1.0 (water).
    pub specific_gravity: Option<f64>,
}

impl Validate for NewBeerRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            LocationId::try_from(self.location_id.as_str()).is_ok(),
            "location_id",
            "is not a location id",
        )
        .text(&self.name, 120, "name")
        .optional_text(&self.brewery, 120, "brewery")
        .optional_text(&self.style, 60, "style")
        .range(self.abv, 0.0, 100.0, "abv");
        if let Some(sg) = self.specific_gravity {
            c.check(
                SpecificGravity::try_from(sg).is_ok(),
                "specific_gravity",
                format!(
                    "must be from {} to {}",
                    SpecificGravity::MIN,
                    SpecificGravity::MAX
                ),
            );
        }
        c.finish()
    }
}

/// A url-safe slug of a name: lowercase letters, digits and dashes, at most 40 characters.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "beer".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Adds a custom beer to one of the caller's locations (managers). Its id is
/// `{location}#{slug}-{random}`.
#[utoipa::path(post, path = "/api/v1/beers", tag = "beers",
    request_body = NewBeerRequest,
    responses((status = 201, body = BeerView, headers(("Location" = String)))),
)]
pub async fn create(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageBeers>,
    ApiJson(body): ApiJson<NewBeerRequest>,
) -> Result<WithLocation<BeerView>, ApiError> {
    let location = visible_location(&state, &caller, &body.location_id).await?;
    let id = BeerId::try_from(
        format!(
            "{}#{}-{}",
            location.id,
            slug(&body.name),
            secrets::random_suffix(3)
        )
        .as_str(),
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let beer = state
        .store
        .create_custom_beer(
            &caller.account,
            &Beer {
                id,
                location_id: Some(location.id.clone()),
                name: body.name.trim().to_owned(),
                brewery: body.brewery.trim().to_owned(),
                style: body.style.trim().to_owned(),
                abv: body.abv,
                specific_gravity: body
                    .specific_gravity
                    .unwrap_or(SpecificGravity::WATER.get()),
            },
        )
        .await?;
    let view = BeerView::from(&beer);
    audit::<(), _>(
        &state,
        &caller,
        "beer.create",
        &format!("beer:{}", beer.id),
        None,
        Some(&view),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        created_at(&format!(
            "/api/v1/beers/{}",
            encode_segment(beer.id.as_str())
        )),
        Json(view),
    ))
}

/// Changes a custom beer. Absent fields are left alone; the location never changes.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeerPatch {
    #[schema(example = "Hazy House IPA", min_length = 1, max_length = 120)]
    pub name: Option<String>,
    /// Empty: unknown.
    #[schema(max_length = 120)]
    pub brewery: Option<String>,
    /// Empty: unknown.
    #[schema(max_length = 60)]
    pub style: Option<String>,
    /// Percent, 0–100.
    #[schema(minimum = 0.0, maximum = 100.0)]
    pub abv: Option<f64>,
    /// 0.9–1.2.
    #[schema(minimum = 0.9, maximum = 1.2)]
    pub specific_gravity: Option<f64>,
}

impl Validate for BeerPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            self.name.is_some()
                || self.brewery.is_some()
                || self.style.is_some()
                || self.abv.is_some()
                || self.specific_gravity.is_some(),
            "body",
            "give at least one of name, brewery, style, abv, specific_gravity",
        );
        if let Some(name) = &self.name {
            c.text(name, 120, "name");
        }
        if let Some(brewery) = &self.brewery {
            c.optional_text(brewery, 120, "brewery");
        }
        if let Some(style) = &self.style {
            c.optional_text(style, 60, "style");
        }
        if let Some(abv) = self.abv {
            c.range(abv, 0.0, 100.0, "abv");
        }
        if let Some(sg) = self.specific_gravity {
            c.check(
                SpecificGravity::try_from(sg).is_ok(),
                "specific_gravity",
                format!(
                    "must be from {} to {}",
                    SpecificGravity::MIN,
                    SpecificGravity::MAX
                ),
            );
        }
        c.finish()
    }
}

/// Edits one of the caller's locations' custom beers (managers). Library beers are shared by
/// every account and answer `409`.
#[utoipa::path(patch, path = "/api/v1/beers/{id}", tag = "beers",
    params(("id" = String, Path, description = "Beer id, e.g. `loc-001#house-ipa` (`#` as `%23`)")),
    request_body = BeerPatch,
    responses((status = 200, body = BeerView),
        (status = 409, description = "A library beer cannot be edited", body = crate::error::Problem, content_type = "application/problem+json")),
)]
pub async fn update(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageBeers>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<BeerPatch>,
) -> Result<Json<BeerView>, ApiError> {
    let beer = visible_beer(&state, &caller, &id).await?;
    let edited = Beer {
        id: beer.id.clone(),
        location_id: beer.location_id.clone(),
        name: patch
            .name
            .as_deref()
            .map_or_else(|| beer.name.clone(), |n| n.trim().to_owned()),
        brewery: patch
            .brewery
            .as_deref()
            .map_or_else(|| beer.brewery.clone(), |b| b.trim().to_owned()),
        style: patch
            .style
            .as_deref()
            .map_or_else(|| beer.style.clone(), |s| s.trim().to_owned()),
        abv: patch.abv.unwrap_or(beer.abv),
        specific_gravity: patch.specific_gravity.unwrap_or(beer.specific_gravity),
    };
    let updated = state.store.update_beer(&caller.account, &edited).await?;
    let before = BeerView::from(&beer);
    let after = BeerView::from(&updated);
    audit(
        &state,
        &caller,
        "beer.update",
        &format!("beer:{}", beer.id),
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(Json(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("House IPA"), "house-ipa");
        assert_eq!(slug("  Pier Kölsch!! "), "pier-k-lsch");
        assert_eq!(slug("!!!"), "beer");
        assert!(slug(&"a".repeat(100)).len() <= 40);
        assert!(BeerId::try_from(format!("loc-001#{}-abc123", slug("Ünïcödé ☃")).as_str()).is_ok());
    }
}
