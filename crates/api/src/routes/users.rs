//! Users and API tokens of the caller's account (admins).
//!
//! Passwords are hashed here (Argon2id, on a blocking thread) and never stored, logged or
//! returned; a token's secret is returned once, at creation, and stored only as its hash. A
//! token's role can never exceed its creator's.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use scalesense_proto::LocationId;
use scalesense_store::{NewApiToken, NewUser, RecordId, Role, StoreError, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::password::check_new_password;
use crate::auth::{Authorized, Caller, domain_role, perm, secrets};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Checks, Validate, path_id};
use crate::pagination::{PageParams, page};
use crate::routes::{WithLocation, audit, created_at};
use crate::state::ApiState;
use crate::views::{NewTokenView, RoleName, TokenPage, TokenView, UserPage, UserView};

/// A user to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    #[schema(
        example = "sam@bar.example",
        max_length = 254,
        pattern = "^[^@\\s]+@[^\\s]*\\.[^\\s]*$"
    )]
    pub email: String,
    /// At least 10 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    pub role: RoleName,
    /// Locations the user may see; absent or `null`: all of the account's.
    pub allowed_locations: Option<Vec<String>>,
}

impl Validate for NewUserRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        let email = self.email.trim();
        c.check(
            email.len() <= 254
                && email
                    .split_once('@')
                    .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
                && !email
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch.is_control()),
            "email",
            "must be an e-mail address",
        );
        if let Err(message) = check_new_password(&self.password) {
            c.check(false, "password", message);
        }
        if let Some(locations) = &self.allowed_locations {
            check_locations(&mut c, locations);
        }
        c.finish()
    }
}

/// Checks that every id names a location of the caller's account; a bad one is a `422` on its
/// own field (not a `404`: the user is what the path names).
async fn account_locations(
    state: &ApiState,
    caller: &Caller,
    raw: &[String],
) -> Result<Vec<LocationId>, ApiError> {
    let mut ids = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        let field = format!("allowed_locations.{i}");
        let id = LocationId::try_from(l.as_str())
            .map_err(|e| ApiError::field(field.clone(), e.to_string()))?;
        match state.store.location(&caller.account, &id).await {
            Ok(_) => ids.push(id),
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::field(field, "no such location"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ids)
}

/// Checks the shape of an allowed-locations list (at most 1000 well-formed ids).
fn check_locations(c: &mut Checks, locations: &[String]) {
    c.check(
        locations.len() <= 1_000,
        "allowed_locations",
        "at most 1000",
    );
    for (i, l) in locations.iter().enumerate() {
        c.check(
            LocationId::try_from(l.as_str()).is_ok(),
            &format!("allowed_locations.{i}"),
            "is not a location id",
        );
    }
}

/// The account's users, by id.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    params(PageParams),
    responses((status = 200, body = UserPage)),
)]
pub async fn list(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageUsers>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<UserPage>, ApiError> {
    let mut users = state.store.users(&caller.account).await?;
    users.sort_by(|a, b| a.id.cmp(&b.id));
    let (items, next_cursor) = page(users, &params, |u| u.id.to_string())?;
    Ok(Json(UserPage {
        items: items.iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// Creates a user (admins).
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = NewUserRequest,
    responses((status = 201, body = UserView, headers(("Location" = String))),
        (status = 409, description = "The e-mail is taken in this account", body = crate::error::Problem, content_type = "application/problem+json")),
)]
pub async fn create(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageUsers>,
    ApiJson(body): ApiJson<NewUserRequest>,
) -> Result<WithLocation<UserView>, ApiError> {
    let allowed = match &body.allowed_locations {
        Some(raw) => Some(account_locations(&state, &caller, raw).await?),
        None => None,
    };
    let passwords = state.passwords.clone();
    let password = body.password.clone();
    let hash = tokio::task::spawn_blocking(move || passwords.hash(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("hashing did not finish: {e}")))?
        .map_err(ApiError::Internal)?;
    let id = UserId::try_from(format!("usr-{}", secrets::random_suffix(8)).as_str())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let user = state
        .store
        .create_user(
            &caller.account,
            &NewUser {
                id,
                email: body.email.trim().to_lowercase(),
                password_hash: hash,
                role: body.role.into(),
                allowed_locations: allowed,
                created_at: state.now(),
            },
        )
        .await?;
    let view = UserView::from(&user);
    audit::<(), _>(
        &state,
        &caller,
        "user.create",
        &format!("user:{}", user.id),
        None,
        Some(&view),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        created_at(&format!("/api/v1/users/{}", user.id)),
        Json(view),
    ))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserView)),
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageUsers>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UserView>, ApiError> {
    let id: UserId = path_id(&id, "user")?;
    Ok(Json(UserView::from(
        &state.store.user(&caller.account, &id).await?,
    )))
}

/// Changes a user's role and/or allowed locations. Absent fields are left alone.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// At most the caller's own role.
    pub role: Option<RoleName>,
    /// Locations the user may see; `null`: all of the account's.
    #[serde(default, deserialize_with = "crate::routes::taps::double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_locations: Option<Option<Vec<String>>>,
}

impl Validate for UserPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        c.check(
            self.role.is_some() || self.allowed_locations.is_some(),
            "body",
            "give role and/or allowed_locations",
        );
        if let Some(Some(locations)) = &self.allowed_locations {
            check_locations(&mut c, locations);
        }
        c.finish()
    }
}

/// Changes a user's role and/or allowed locations (admins). A role above the caller's own is
/// refused, and so is demoting the account's last admin (the account would be unmanageable).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = UserPatch,
    responses((status = 200, body = UserView),
        (status = 409, description = "The user is the account's last admin", body = crate::error::Problem, content_type = "application/problem+json")),
)]
pub async fn update(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageUsers>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    let id: UserId = path_id(&id, "user")?;
    let user = state.store.user(&caller.account, &id).await?;
    let role = patch.role.map(Role::from);
    if let Some(role) = role {
        if caller.role < domain_role(role) {
            return Err(ApiError::field("role", "cannot exceed your own role"));
        }
        if user.role == Role::Admin && role != Role::Admin {
            let admins = state
                .store
                .users(&caller.account)
                .await?
                .iter()
                .filter(|u| u.role == Role::Admin)
                .count();
            if admins <= 1 {
                return Err(ApiError::Conflict(format!(
                    "user {id} is the account's last admin"
                )));
            }
        }
    }
    let allowed = match &patch.allowed_locations {
        Some(Some(raw)) => Some(Some(account_locations(&state, &caller, raw).await?)),
        Some(None) => Some(None),
        None => None,
    };
    let updated = state
        .store
        .update_user(&caller.account, &user.id, role, allowed)
        .await?;
    let before = UserView::from(&user);
    let after = UserView::from(&updated);
    audit(
        &state,
        &caller,
        "user.update",
        &format!("user:{}", user.id),
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(Json(after))
}

/// How many sessions were ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}

/// Ends every session of a user (log out everywhere).
#[utoipa::path(delete, path = "/api/v1/users/{id}/sessions", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = Revoked)),
)]
pub async fn revoke_sessions(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageUsers>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Revoked>, ApiError> {
    let id: UserId = path_id(&id, "user")?;
    let user = state.store.user(&caller.account, &id).await?;
    let revoked = state
        .store
        .revoke_user_sessions(&caller.account, &user.id, state.now())
        .await?;
    let result = Revoked { revoked };
    audit::<(), _>(
        &state,
        &caller,
        "user.revoke_sessions",
        &format!("user:{}", user.id),
        None,
        Some(&result),
    )
    .await;
    Ok(Json(result))
}

/// An API token to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    #[schema(example = "home-assistant")]
    pub name: String,
    /// At most the creator's own role.
    pub role: RoleName,
}

impl Validate for NewTokenRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Checks::new().text(&self.name, 80, "name").finish()
    }
}

/// The account's API tokens (never their secrets), by id.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    params(PageParams),
    responses((status = 200, body = TokenPage)),
)]
pub async fn list_tokens(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageTokens>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<TokenPage>, ApiError> {
    let mut tokens = state.store.api_tokens(&caller.account).await?;
    tokens.sort_by(|a, b| a.id.cmp(&b.id));
    let (items, next_cursor) = page(tokens, &params, |t| t.id.to_string())?;
    Ok(Json(TokenPage {
        items: items.iter().map(TokenView::from).collect(),
        next_cursor,
    }))
}

/// Creates an API token; its secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    request_body = NewTokenRequest,
    responses((status = 201, body = NewTokenView)),
)]
pub async fn create_token(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageTokens>,
    ApiJson(body): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<NewTokenView>), ApiError> {
    if caller.role < domain_role(body.role.into()) {
        return Err(ApiError::field("role", "cannot exceed your own role"));
    }
    let secret = secrets::new_api_token();
    let id = RecordId::try_from(format!("tok-{}", secrets::random_suffix(8)).as_str())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let token = state
        .store
        .create_api_token(
            &caller.account,
            &NewApiToken {
                id,
                token_hash: secrets::token_hash(&secret),
                name: body.name.trim().to_owned(),
                role: body.role.into(),
                created_at: state.now(),
            },
        )
        .await?;
    let view = TokenView::from(&token);
    audit::<(), _>(
        &state,
        &caller,
        "token.create",
        &format!("token:{}", token.id),
        None,
        Some(&view),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(NewTokenView {
            token: view,
            secret,
        }),
    ))
}

/// Revokes an API token at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, body = TokenView)),
)]
pub async fn revoke_token(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageTokens>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenView>, ApiError> {
    let id: RecordId = path_id(&id, "token")?;
    let token = state
        .store
        .revoke_api_token(&caller.account, &id, state.now())
        .await?;
    let view = TokenView::from(&token);
    audit::<(), _>(
        &state,
        &caller,
        "token.revoke",
        &format!("token:{}", token.id),
        None,
        Some(&view),
    )
    .await;
    Ok(Json(view))
}
