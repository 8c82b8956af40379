//! Request extractors that reject bad input as problem+json: JSON bodies (type, size, syntax,
//! unknown fields, then each type's own [`Validate`] rules), query strings, ids in the path and
//! the client's address.
//!
//! Nothing here may panic on any input; every rejection names the field it is about.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};
use crate::state::ApiState;

/// Rules a request body checks after it has parsed (ranges, cross-field rules).
pub trait Validate {
    fn validate(&self) -> Result<(), Vec<FieldError>>;
}

/// Collects field errors for [`Validate`] implementations.
#[derive(Debug, Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` for `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) -> &mut Self {
        if !ok {
            self.0.push(FieldError::new(field, message));
        }
        self
    }

    /// A finite number in `[min, max]`.
    pub fn range(&mut self, value: f64, min: f64, max: f64, field: &str) -> &mut Self {
        self.check(
            value.is_finite() && (min..=max).contains(&value),
            field,
            format!("must be a number from {min} to {max}"),
        )
    }

    /// Text of 1 to `max` characters with no control characters.
    pub fn text(&mut self, value: &str, max: usize, field: &str) -> &mut Self {
        self.check(
            !value.trim().is_empty()
                && value.chars().count() <= max
                && !value.chars().any(char::is_control),
            field,
            format!("must be 1 to {max} characters of text"),
        )
    }

    /// Like [`Self::text`], but may be empty.
    pub fn optional_text(&mut self, value: &str, max: usize, field: &str) -> &mut Self {
        if value.is_empty() {
            self
        } else {
            self.text(value, max, field)
        }
    }

    pub fn push(&mut self, error: FieldError) -> &mut Self {
        self.0.push(error);
        self
    }

    pub fn finish(&mut self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(std::mem::take(&mut self.0))
        }
    }
}

/// A JSON body: `415` unless `application/json`, `413` beyond the body limit, `400` unless one
/// JSON value, `422` for a wrong, missing or unknown field or a failed [`Validate`] rule.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|mime| {
            let mime = mime.to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// The only request fields that are JSON arrays. serde would also read a struct from an array
/// of its fields in order; every other array in a body is refused so that only the documented
/// object shapes are accepted.
const ARRAY_FIELDS: [&str; 4] = [
    "allowed_locations",
    // Notification channels: e-mail recipients and the alert filters.
    "recipients",
    "severities",
    "alert_types",
];

fn check_shapes(value: &serde_json::Value, path: &str) -> Result<(), ApiError> {
    match value {
        serde_json::Value::Object(map) => map.iter().try_for_each(|(key, v)| {
            let field = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if v.is_array() && !ARRAY_FIELDS.contains(&key.as_str()) {
                return Err(ApiError::field(field, "must not be an array"));
            }
            check_shapes(v, &field)
        }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_shapes(v, &format!("{path}.{i}"))),
        _ => Ok(()),
    }
}

/// Parses a JSON body (one JSON object), naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    check_shapes(&value, "")?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = strip_position(&err.into_inner().to_string());
        ApiError::field(field_of(&path, &message, "body"), message)
    })
}

/// The field an error is about: serde's path, extended by the name a "missing field `x`"
/// message carries (for a missing field the path stops at the enclosing object).
fn field_of(path: &str, message: &str, whole: &str) -> String {
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => whole.to_owned(),
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_owned(),
    }
}

/// serde_json appends " at line 1 column 42", which says nothing useful in an API error.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

impl<T> FromRequest<ApiState> for ApiJson<T>
where
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config.body_limit;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                ApiError::PayloadTooLarge(limit)
            }
            other => ApiError::BadRequest(other.body_text()),
        })?;
        let value: T = parse_json(&bytes)?;
        value.validate().map_err(ApiError::Validation)?;
        Ok(Self(value))
    }
}

/// A query string: `422` naming the parameter when it does not parse, then [`Validate`].
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value: T = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            ApiError::field(field_of(&path, &message, "query"), message)
        })?;
        value.validate().map_err(ApiError::Validation)?;
        Ok(Self(value))
    }
}

/// The client's address for login throttling: the peer address, or the last hop of
/// `X-Forwarded-For` when proxy headers are trusted. `unknown` when neither is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

impl FromRequestParts<ApiState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if state.config.trust_proxy_headers
            && let Some(hop) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        {
            return Ok(Self(hop.to_owned()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        Ok(Self(peer))
    }
}

/// Path parameters; a segment that is not valid UTF-8 after percent-decoding is `404`, like
/// any id that cannot exist (axum's own rejection is plain text).
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| ApiError::not_found(format!("resource ({})", e.body_text())))
    }
}

/// Parses an id from the path; an id that cannot exist is `404`, like one that does not.
pub fn path_id<T: for<'a> TryFrom<&'a str>>(raw: &str, what: &str) -> Result<T, ApiError> {
    T::try_from(raw).map_err(|_| ApiError::not_found(format!("{what} {raw:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        pct: f64,
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected validation, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert!(parse_json::<Body>(br#"{"name":"a","inner":{"pct":1}}"#).is_ok());
        let e = parse_json::<Body>(br#"{"name":"a","inner":{"pct":"x"}}"#).unwrap_err();
        assert_eq!(fields(e), ["inner.pct"]);
        let e = parse_json::<Body>(br#"{"name":"a","inner":{"pct":1},"extra":1}"#).unwrap_err();
        assert_eq!(fields(e), ["extra"]);
        let e = parse_json::<Body>(br#"{"name":"a"}"#).unwrap_err();
        assert_eq!(fields(e), ["inner"]);
        let e = parse_json::<Body>(br#"{"name":"a","inner":{}}"#).unwrap_err();
        assert_eq!(fields(e), ["inner.pct"]);
        let e = parse_json::<Body>(b"\"x\"").unwrap_err();
        assert_eq!(fields(e), ["body"]);
        // serde would read a struct from an array of its fields; the API does not.
        let e = parse_json::<Body>(br#"["a", {"pct": 1}]"#).unwrap_err();
        assert_eq!(fields(e), ["body"]);
        let e = parse_json::<Body>(br#"{"name":"a","inner":[1]}"#).unwrap_err();
        assert_eq!(fields(e), ["inner"]);
        assert!(matches!(
            parse_json::<Body>(b"{\"name\":"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Body>(br#"{"name":"a","inner":{"pct":1}} trailing"#),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
    }

    #[test]
    fn checks_collect() {
        let mut c = Checks::new();
        c.range(f64::NAN, 0.0, 1.0, "a")
            .range(0.5, 0.0, 1.0, "b")
            .text("", 10, "c")
            .text("ok", 10, "d")
            .optional_text("", 10, "e")
            .text("bad\u{7}", 10, "f");
        let errors = c.finish().unwrap_err();
        let names: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(names, ["a", "c", "f"]);
    }
}
