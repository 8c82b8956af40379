//! The API's one error type and its rendering as `application/problem+json` (RFC 9457).
//!
//! Each variant has a stable `type` URI (`urn:scalesense:problem:<slug>`) that clients may match
//! on; `detail` is for people. A store error is classified here once, so handlers just use `?`.
//! This module must never put a secret, a password hash or another account's data in a
//! problem, and must never answer `500` for something the client did wrong.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scalesense_domain::roles::Action;
use scalesense_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request: `field` is a dotted path (`thresholds.battery_warning_pct`),
/// or `body` / `query` when the problem is not one field's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or credentials that are unknown, expired or revoked.
    #[error(
        "authentication required: log in, or send a valid API token as `Authorization: Bearer …`"
    )]
    Unauthenticated,
    /// Login failed. Same answer for an unknown user as for a wrong password.
    #[error("the e-mail or password is wrong")]
    InvalidCredentials,
    /// The caller's role may not take this action.
    #[error("your role may not {}", action_words(*.0))]
    Forbidden(Action),
    /// A cookie-authenticated write without the matching `X-CSRF-Token` header.
    #[error(
        "missing or wrong X-CSRF-Token header: send the csrf_token from login or GET /api/v1/auth/me"
    )]
    Csrf,
    /// Not there, or not the caller's to see (the two are indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(String),
    /// The route exists, but not with this method.
    #[error("this route does not take that method (see the Allow header)")]
    MethodNotAllowed,
    /// The body is not JSON, or not one JSON value.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// A write must be `application/json`.
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Well-formed, but a field is wrong.
    #[error("the request is invalid: {}", summary(.0))]
    Validation(Vec<FieldError>),
    /// The write collides with the current state (already tapped, duplicate e-mail, …).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Too many failed logins; retry after this many seconds.
    #[error("too many failed logins: try again in {0} s")]
    Throttled(u64),
    #[error("{0}")]
    NotImplemented(String),
    /// The database cannot answer now; retrying later is correct.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Our fault. The detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

fn action_words(action: Action) -> String {
    let name = serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{} (needs the {} role or higher)",
        name.replace('_', " "),
        action.least_role()
    )
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// A single-field validation error.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound(what.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable slug of the problem `type`.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid-credentials",
            Self::Forbidden(_) => "forbidden",
            Self::Csrf => "csrf",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::BadRequest(_) => "malformed-request",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::Validation(_) => "validation",
            Self::Conflict(_) => "conflict",
            Self::Throttled(_) => "too-many-logins",
            Self::NotImplemented(_) => "not-implemented",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The problem document this error renders as.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            r#type: format!("urn:scalesense:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match self {
                Self::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// Stable machine-readable kind, `urn:scalesense:problem:<slug>`: `unauthenticated`,
    /// `invalid-credentials`, `forbidden`, `csrf`, `not-found`, `malformed-request`,
    /// `method-not-allowed`, `unsupported-media-type`, `payload-too-large`, `validation`, `conflict`,
    /// `too-many-logins`, `not-implemented`, `unavailable`, `internal`.
    #[serde(rename = "type")]
    pub r#type: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// Field errors (validation problems only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(detail) => tracing::error!(%detail, "request failed"),
            Self::Unavailable(detail) => tracing::warn!(%detail, "database unavailable"),
            _ => {}
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            Self::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"scalesense\""),
                );
            }
            Self::Throttled(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { entity, id } => Self::NotFound(format!("{entity} {id}")),
            StoreError::Conflict { what } | StoreError::Constraint(what) => Self::Conflict(what),
            StoreError::Invalid(what) => Self::field("body", what),
            StoreError::Unavailable(what) => Self::Unavailable(what),
            StoreError::Corrupt(what) => Self::Internal(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_stable_types_and_field_errors() {
        let p = ApiError::field("thresholds.battery_warning_pct", "must be ≥ 0").problem();
        assert_eq!(p.r#type, "urn:scalesense:problem:validation");
        assert_eq!(p.status, 422);
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].field, "thresholds.battery_warning_pct");
        let forbidden = ApiError::Forbidden(Action::Calibrate).problem();
        assert_eq!(forbidden.status, 403);
        assert_eq!(
            forbidden.detail,
            "your role may not calibrate (needs the manager role or higher)"
        );
    }

    #[test]
    fn store_errors_classify() {
        let nf = ApiError::from(StoreError::NotFound {
            entity: "tap",
            id: "loc-001#TAP#07".into(),
        });
        assert_eq!(nf.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            ApiError::from(StoreError::Unavailable("gone".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(StoreError::Corrupt("bad".into())).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // The internal detail is logged, never sent.
        assert_eq!(
            ApiError::Internal("secret path".into()).problem().detail,
            "internal error"
        );
    }

    #[test]
    fn responses_are_problem_json_with_auth_headers() {
        let r = ApiError::Unauthenticated.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let t = ApiError::Throttled(8).into_response();
        assert_eq!(t.headers()[header::RETRY_AFTER], "8");
    }
}
