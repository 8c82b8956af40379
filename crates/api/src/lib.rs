//! The Scale Sense REST API (BRIEF §5, seed 001's routes) under `/api/v1`, its OpenAPI 3.1
//! document at `/api/v1/openapi.json` and a docs page at `/api/docs`.
//!
//! The server merges [`router`] into its own router; this crate never depends on the server.
//! What lives in the server (publishing a command to the broker, the clock it runs on) is reached
//! through the small traits in [`state`].
//!
//! Invariants this crate keeps, and must never break:
//! - **Authorisation in one place**: every handler takes an [`auth::Authorized`] extractor (or
//!   calls [`auth::Caller::authorize`] when the action depends on the request body), and both go
//!   through the domain crate's [`scalesense_domain::roles::permits`]. No handler compares roles.
//! - **Tenancy**: every store call passes the caller's account; a resource of another account,
//!   or of a location the caller may not see, answers `404` exactly like one that does not exist.
//! - **Errors** are `application/problem+json` ([`error::ApiError`]); no input panics.
//! - **Every write is audited** (who, what, when, before and after) before the answer is sent.

pub mod admin;
pub mod auth;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod pagination;
pub mod routes;
pub mod state;
pub mod views;

pub use error::{ApiError, FieldError};
pub use state::{
    ApiConfig, ApiState, Clock, CommandSink, CommandSinkError, FixedClock, PublishedCommand,
    RecordingCommandSink, SecureCookies, StateError, SystemClock,
};

/// The API's router: every route under `/api/v1`, the OpenAPI document and the docs page.
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so login throttling sees
/// the client address (without it, every client shares one address bucket).
pub fn router(state: ApiState) -> axum::Router {
    routes::router(state)
}
