//! Who is calling, and may they: the one place where credentials are resolved and the domain
//! crate's permission matrix is consulted.
//!
//! Credentials, in order: `Authorization: Bearer <api token>`, else the session cookie. A
//! cookie-authenticated request that is not `GET`/`HEAD`/`OPTIONS` must also carry
//! `X-CSRF-Token` equal to the session's CSRF token (a value derived from the cookie that a
//! cross-site page cannot read); a bearer token needs no CSRF token because browsers never
//! attach one by themselves.
//!
//! Handlers take [`Authorized<P>`] (the action is known from the route) or [`Caller`] and call
//! [`Caller::authorize`] (the action depends on the body, e.g. which command). Location scope
//! ([`Caller::check_location`]) answers `404`, like a resource of another account. This module
//! must never decide a permission itself: [`permits`] does.

pub mod password;
pub mod secrets;
pub mod throttle;

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use scalesense_domain::roles::{Action, Role, permits};
use scalesense_proto::{CommandName, LocationId};
use scalesense_store::{AccountId, RecordId, UserId};

use crate::error::ApiError;
use crate::state::{ApiState, SecureCookies};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "scalesense_session";
/// The header that must echo the session's CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The store's copy of a role, as the domain's (the one the matrix speaks).
pub fn domain_role(role: scalesense_store::Role) -> Role {
    match role {
        scalesense_store::Role::Staff => Role::Staff,
        scalesense_store::Role::Manager => Role::Manager,
        scalesense_store::Role::Admin => Role::Admin,
    }
}

/// The domain's role, as the store writes it.
pub fn store_role(role: Role) -> scalesense_store::Role {
    match role {
        Role::Staff => scalesense_store::Role::Staff,
        Role::Manager => scalesense_store::Role::Manager,
        Role::Admin => scalesense_store::Role::Admin,
    }
}

/// The action a command to a scale needs (seed 001: tare and maintenance for everyone,
/// calibration for managers; the API's additions decided in the domain crate).
pub fn command_action(name: CommandName) -> Action {
    match name {
        CommandName::TareEmpty | CommandName::TareFull => Action::Tare,
        CommandName::MaintenanceEnter | CommandName::MaintenanceExit => Action::Maintenance,
        CommandName::Identify => Action::Identify,
        CommandName::Calibrate => Action::Calibrate,
        CommandName::SetConfig => Action::SetConfig,
        CommandName::Reboot => Action::Reboot,
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A dashboard user with a session cookie.
    Session {
        user: UserId,
        email: String,
        token_hash: String,
        csrf_token: String,
        expires_at: i64,
    },
    /// An integration with an API token.
    Token { id: RecordId, name: String },
}

/// A resolved, authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account: AccountId,
    pub role: Role,
    /// `None`: every location of the account.
    pub allowed_locations: Option<Vec<LocationId>>,
    pub principal: Principal,
}

impl Caller {
    /// `403` unless the domain's matrix lets this caller's role take `action`.
    pub fn authorize(&self, action: Action) -> Result<(), ApiError> {
        if permits(self.role, action) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(action))
        }
    }

    /// Whether the caller may see `location` (it is assumed to be of the caller's account; the
    /// store checks that).
    pub fn sees(&self, location: &LocationId) -> bool {
        self.allowed_locations
            .as_ref()
            .is_none_or(|allowed| allowed.contains(location))
    }

    /// `404` for a location the caller may not see, so it cannot be told from a missing one.
    pub fn check_location(&self, location: &LocationId) -> Result<(), ApiError> {
        if self.sees(location) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("location {location}")))
        }
    }

    /// As [`Self::check_location`] for a resource that may be on no location yet (a device
    /// not placed anywhere): only callers who see every location see it.
    pub fn check_optional_location(
        &self,
        location: Option<&LocationId>,
        what: impl std::fmt::Display,
    ) -> Result<(), ApiError> {
        let visible = match location {
            Some(l) => self.sees(l),
            None => self.allowed_locations.is_none(),
        };
        if visible {
            Ok(())
        } else {
            Err(ApiError::not_found(what))
        }
    }

    /// Who did it, for the audit log and `issued_by`.
    pub fn actor(&self) -> String {
        match &self.principal {
            Principal::Session { user, email, .. } => format!("user:{user} ({email})"),
            Principal::Token { id, name } => format!("token:{id} ({name})"),
        }
    }

    /// Resolves the caller from the request's credentials.
    pub async fn resolve(
        state: &ApiState,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Self, ApiError> {
        let now = state.now();
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= 256)
                .ok_or(ApiError::Unauthenticated)?;
            let found = state
                .store
                .api_token(&secrets::token_hash(token), now)
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            return Ok(Self {
                account: found.account_id,
                role: domain_role(found.role),
                allowed_locations: None,
                principal: Principal::Token {
                    id: found.id,
                    name: found.name,
                },
            });
        }
        let token = session_cookie(headers).ok_or(ApiError::Unauthenticated)?;
        let token_hash = secrets::token_hash(token);
        let session = state
            .store
            .session(&token_hash, now)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        let csrf_token = secrets::csrf_token(token);
        if !is_safe(method) {
            let presented = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !secrets::csrf_matches(&csrf_token, presented) {
                return Err(ApiError::Csrf);
            }
        }
        let user = match state
            .store
            .user(&session.account_id, &session.user_id)
            .await
        {
            Ok(user) => user,
            Err(scalesense_store::StoreError::NotFound { .. }) => {
                return Err(ApiError::Unauthenticated);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            account: session.account_id,
            role: domain_role(user.role),
            allowed_locations: user.allowed_locations,
            principal: Principal::Session {
                user: user.id,
                email: user.email,
                token_hash,
                csrf_token,
                expires_at: session.expires_at,
            },
        })
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session token from the `Cookie` header(s), if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether the request came over HTTPS as far as we can tell.
fn over_https(state: &ApiState, headers: &HeaderMap, uri: &Uri) -> bool {
    let forwarded = state.config.trust_proxy_headers
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    forwarded || uri.scheme_str() == Some("https")
}

/// Whether a session cookie set in answer to this request carries `Secure`.
pub fn cookie_secure(state: &ApiState, headers: &HeaderMap, uri: &Uri) -> bool {
    match state.config.secure_cookies {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => over_https(state, headers, uri),
    }
}

/// `Set-Cookie` for a new session (`max_age_s` > 0) or for clearing it (`None`).
pub fn session_set_cookie(token: Option<&str>, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match token {
        Some(token) => format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    // Tokens are base64url: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        Self::resolve(state, &parts.method, &parts.headers).await
    }
}

/// A route's permission: the action it needs, from the domain's list.
pub trait Permission: Send + Sync + 'static {
    const ACTION: Action;
}

macro_rules! permissions {
    ($($name:ident),* $(,)?) => {
        /// One marker type per [`Action`], for [`Authorized`].
        pub mod perm {
            use super::{Action, Permission};
            $(
                #[doc = concat!("Needs `Action::", stringify!($name), "`.")]
                #[derive(Debug, Clone, Copy)]
                pub struct $name;
                impl Permission for $name {
                    const ACTION: Action = Action::$name;
                }
            )*
        }
    };
}

permissions!(
    ViewTaps,
    AssignBeerKeg,
    ViewReports,
    ManageSettings,
    Calibrate,
    ManageUsers,
    AcknowledgeAlert,
    ManageBeers,
    ManageKegs,
    ManageDevices,
    RegisterDevice,
    ViewAuditLog,
    ManageTokens,
);

/// An authenticated caller whose role may take `P::ACTION`; else `401`/`403`.
#[derive(Debug, Clone)]
pub struct Authorized<P: Permission>(pub Caller, pub PhantomData<P>);

impl<P: Permission> FromRequestParts<ApiState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = Caller::resolve(state, &parts.method, &parts.headers).await?;
        caller.authorize(P::ACTION)?;
        Ok(Self(caller, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_the_matrix() {
        // Seed 001: tare and maintenance for everyone, calibrate for managers.
        for name in CommandName::ALL {
            let staff = permits(Role::Staff, command_action(name));
            let manager = permits(Role::Manager, command_action(name));
            let expected_staff = matches!(
                name,
                CommandName::TareEmpty
                    | CommandName::TareFull
                    | CommandName::MaintenanceEnter
                    | CommandName::MaintenanceExit
                    | CommandName::Identify
            );
            assert_eq!(staff, expected_staff, "{name}");
            assert!(manager, "{name}");
        }
    }

    #[test]
    fn cookies_parse_and_render() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; scalesense_session=tok123 ; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("tok123"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("scalesense_session="),
        );
        assert_eq!(session_cookie(&h), None);
        let set = session_set_cookie(Some("abc"), 60, true);
        assert_eq!(
            set,
            "scalesense_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        let clear = session_set_cookie(None, 0, false);
        assert!(clear.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn roles_convert_both_ways() {
        for r in Role::ALL {
            assert_eq!(domain_role(store_role(r)), r);
        }
    }
}
