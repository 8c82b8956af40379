//! Scale Sense persistence: the full data model (BRIEF §4) behind one [`Store`] trait, with a
//! SQLite implementation for `scalesense up` and the bar edge and a PostgreSQL implementation
//! for replicated production. One conformance suite (`tests/conformance.rs`) runs against both.
//!
//! What this crate must never do: apply a domain rule (levels, pour detection, alert logic,
//! unit conversion for display) — it stores SI numbers and returns them; return a row of
//! another account (every customer query filters on the account in SQL); or write part of a
//! batch (every multi-row write is one transaction). The only derived values it keeps are the
//! ones that must be computed inside the ingest transaction: litres left from the keg's tare
//! weights and the pour counts in the rollups (see `ingest.rs` for the rule).

mod error;
mod ids;
mod ingest;
mod migrations;
mod model;
mod postgres;
mod sql;
mod sqlite;
mod store;

use std::path::Path;
use std::sync::Arc;

pub use error::{Result, StoreError};
pub use ids::{AccountId, BeerId, KegId, RecordId, Series, StoreIdError, UserId};
pub use model::*;
pub use postgres::PgStore;
pub use scalesense_proto::{CommandId, DeviceId, GatewayId, LocationId, TapId};
pub use sqlite::{SqliteSettings, SqliteStore};
pub use store::{Backend, Store};

/// Opens the store a URL names: `postgres://…` or `postgresql://…` → PostgreSQL;
/// `sqlite://path`, `sqlite:path` or a plain file path → SQLite (created if missing).
/// Migrations are applied before it returns.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::connect(url).await?));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::Invalid(format!(
            "cannot tell which database {url:?} names: use postgres://… or a SQLite file path"
        )));
    }
    Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
}
