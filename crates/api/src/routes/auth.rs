//! `POST /auth/login`, `POST /auth/logout`, `GET /auth/me`.
//!
//! Login answers the same `401` for an unknown account, an unknown e-mail and a wrong password,
//! after the same Argon2 work (a dummy hash stands in for a missing user), and is throttled per
//! e-mail and per client address before any hashing. It must never log a password or a token.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use scalesense_store::{AccountId, NewSession};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::password::MAX_PASSWORD_BYTES;
use crate::auth::throttle::AttemptKeys;
use crate::auth::{Caller, Principal, cookie_secure, secrets, session_set_cookie};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, Checks, ClientAddr, Validate};
use crate::routes::audit;
use crate::state::ApiState;
use crate::views::{RoleName, UserView, ts};

/// Credentials.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The customer account; may be omitted on a single-account install.
    #[schema(example = "demo", max_length = 64)]
    pub account: Option<String>,
    #[schema(example = "admin@demo.local", min_length = 1, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
}

impl Validate for LoginRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Checks::new()
            .check(
                !self.email.is_empty() && self.email.len() <= 254,
                "email",
                "must be 1 to 254 characters",
            )
            .check(
                !self.password.is_empty() && self.password.len() <= MAX_PASSWORD_BYTES,
                "password",
                format!("must be 1 to {MAX_PASSWORD_BYTES} bytes"),
            )
            .check(
                self.account.as_ref().is_none_or(|a| a.len() <= 64),
                "account",
                "must be at most 64 characters",
            )
            .finish()
    }
}

/// A new session. The session token itself is only in the `HttpOnly` cookie.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserView,
    /// Send as `X-CSRF-Token` on every cookie-authenticated write.
    pub csrf_token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Who the caller is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Me {
    /// `session` (cookie) or `token` (API token).
    pub kind: String,
    pub account_id: String,
    pub role: RoleName,
    /// The user (sessions) or the token (API tokens).
    pub id: String,
    /// The user's e-mail, or the token's name.
    pub name: String,
    /// `null`: every location of the account.
    pub allowed_locations: Option<Vec<String>>,
    /// Sessions only: send as `X-CSRF-Token` on writes.
    pub csrf_token: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// Logs in with e-mail and password; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie` carries the session", body = LoginResponse),
        (status = 401, description = "Unknown account, unknown e-mail or wrong password (one answer for all)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this e-mail or address", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn login(
    State(state): State<ApiState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    uri: Uri,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let now = state.now();
    let account_raw = match (&body.account, &state.config.default_account) {
        (Some(a), _) => a.clone(),
        (None, Some(default)) => default.to_string(),
        (None, None) => return Err(ApiError::field("account", "is required")),
    };
    let email = body.email.trim().to_lowercase();
    let keys = AttemptKeys {
        email: format!("{account_raw}/{email}"),
        address,
    };
    state
        .throttle
        .check(&keys, now)
        .map_err(ApiError::Throttled)?;
    let user = match AccountId::try_from(account_raw.as_str()) {
        Ok(account) => state.store.user_by_email(&account, &email).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let passwords = state.passwords.clone();
    let password = body.password;
    let verified =
        tokio::task::spawn_blocking(move || passwords.verify(&password, hash.as_deref()))
            .await
            .map_err(|e| ApiError::Internal(format!("password check did not finish: {e}")))?;
    let user = match user {
        Some(user) if verified => user,
        _ => {
            state.throttle.record_failure(&keys, now);
            tracing::info!(account = %account_raw, "failed login");
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.throttle.record_success(&keys);
    let token = secrets::new_session_token();
    let ttl_ms = i64::try_from(state.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let session = state
        .store
        .create_session(
            &user.account_id,
            &NewSession {
                token_hash: secrets::token_hash(&token),
                user_id: user.id.clone(),
                created_at: now,
                expires_at: now.saturating_add(ttl_ms),
            },
        )
        .await?;
    let caller = Caller {
        account: user.account_id.clone(),
        role: crate::auth::domain_role(user.role),
        allowed_locations: user.allowed_locations.clone(),
        principal: Principal::Session {
            user: user.id.clone(),
            email: user.email.clone(),
            token_hash: session.token_hash.clone(),
            csrf_token: String::new(),
            expires_at: session.expires_at,
        },
    };
    audit::<(), ()>(
        &state,
        &caller,
        "auth.login",
        &format!("user:{}", user.id),
        None,
        None,
    )
    .await;
    let cookie = session_set_cookie(
        Some(&token),
        ttl_ms / 1000,
        cookie_secure(&state, &headers, &uri),
    );
    let body = LoginResponse {
        user: UserView::from(&user),
        csrf_token: secrets::csrf_token(&token),
        expires_at: ts(session.expires_at),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Ends the session and clears its cookie. (API tokens are revoked with `DELETE /tokens/{id}`;
/// for a token this answers `204` and changes nothing.)
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out")),
)]
pub async fn logout(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    if let Principal::Session { token_hash, .. } = &caller.principal {
        state.store.revoke_session(token_hash, state.now()).await?;
        audit::<(), ()>(&state, &caller, "auth.logout", &caller.actor(), None, None).await;
    }
    let clear = session_set_cookie(None, 0, cookie_secure(&state, &headers, &uri));
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

/// The caller: user or token, role, locations, and (sessions) the CSRF token.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me)),
)]
pub async fn me(caller: Caller) -> Json<Me> {
    let (kind, id, name, csrf_token, expires_at) = match &caller.principal {
        Principal::Session {
            user,
            email,
            csrf_token,
            expires_at,
            ..
        } => (
            "session",
            user.to_string(),
            email.clone(),
            Some(csrf_token.clone()),
            Some(ts(*expires_at)),
        ),
        Principal::Token { id, name } => ("token", id.to_string(), name.clone(), None, None),
    };
    Json(Me {
        kind: kind.to_owned(),
        account_id: caller.account.to_string(),
        role: crate::auth::store_role(caller.role).into(),
        id,
        name,
        allowed_locations: caller
            .allowed_locations
            .as_ref()
            .map(|l| l.iter().map(ToString::to_string).collect()),
        csrf_token,
        expires_at,
    })
}
