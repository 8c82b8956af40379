//! The one error type every store method returns, and the mapping from sqlx errors into it.
//!
//! Callers decide what to do from the variant alone (retry on `Unavailable`, 404 on `NotFound`,
//! 409 on `Conflict`, page the operator on `Corrupt`), so the mapping must classify by the
//! database's own error code, never by matching message text. It must never hide the database's
//! message: operators need it.

use std::borrow::Cow;

/// What went wrong, classified so the caller can react without parsing messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The entity does not exist, or exists in another account (the two are indistinguishable on
    /// purpose: a caller must not learn that another account's id exists).
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// The write collides with existing state: a duplicate key, a second tapped keg on a tap, a
    /// second active alert, a state transition that is no longer allowed.
    #[error("conflict: {what}")]
    Conflict { what: String },
    /// A foreign key, NOT NULL or CHECK constraint refused the write.
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// The database cannot be reached or cannot take the write now (gone, locked, busy, I/O,
    /// connection lost). Nothing was written; retrying later is correct.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database file or its contents are damaged, or hold values this code cannot read.
    #[error("database corrupt: {0}")]
    Corrupt(String),
    /// The request itself is wrong (bad URL, out-of-range argument, non-finite number).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub(crate) fn not_found<D: std::fmt::Display + ?Sized>(entity: &'static str, id: &D) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    /// True when retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

// SQLite primary result codes (the low byte of an extended code), from sqlite3.h.
const SQLITE_PERM: i32 = 3;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_MISMATCH: i32 = 20;
const SQLITE_RANGE: i32 = 25;
const SQLITE_NOTADB: i32 = 26;

fn from_sqlite_code(extended: i32, kind: &sqlx::error::ErrorKind, message: String) -> StoreError {
    use sqlx::error::ErrorKind;
    match kind {
        ErrorKind::UniqueViolation => return StoreError::Conflict { what: message },
        ErrorKind::ForeignKeyViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::CheckViolation => return StoreError::Constraint(message),
        _ => {}
    }
    match extended & 0xff {
        SQLITE_BUSY | SQLITE_LOCKED => {
            StoreError::Unavailable(format!("database is locked by another writer: {message}"))
        }
        SQLITE_CORRUPT | SQLITE_NOTADB => StoreError::Corrupt(format!(
            "the SQLite file is damaged or is not a database ({message}); restore it from a \
             backup or move it aside"
        )),
        SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN | SQLITE_READONLY | SQLITE_PERM
        | SQLITE_NOMEM | SQLITE_PROTOCOL => StoreError::Unavailable(message),
        SQLITE_TOOBIG | SQLITE_MISMATCH | SQLITE_RANGE => StoreError::Invalid(message),
        SQLITE_CONSTRAINT => StoreError::Constraint(message),
        _ => StoreError::Invalid(format!("SQLite error {extended}: {message}")),
    }
}

fn from_pg_state(state: &str, kind: &sqlx::error::ErrorKind, message: String) -> StoreError {
    use sqlx::error::ErrorKind;
    match kind {
        ErrorKind::UniqueViolation | ErrorKind::ExclusionViolation => {
            return StoreError::Conflict { what: message };
        }
        ErrorKind::ForeignKeyViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::CheckViolation => return StoreError::Constraint(message),
        _ => {}
    }
    let class = state.get(..2).unwrap_or("");
    match (class, state) {
        // Connection exceptions, shutdown/termination, too many connections, disk full,
        // serialization failures and deadlocks: all say "try again later", none wrote anything.
        ("08" | "53" | "57" | "58" | "40", _) => {
            StoreError::Unavailable(format!("{state}: {message}"))
        }
        ("XX", "XX001" | "XX002") => StoreError::Corrupt(format!("{state}: {message}")),
        ("23", _) => StoreError::Constraint(message),
        _ => StoreError::Invalid(format!("{state}: {message}")),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) => {
                let message = db.message().to_owned();
                let kind = db.kind();
                let code: Option<Cow<'_, str>> = db.code();
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    let extended = code.and_then(|c| c.parse::<i32>().ok()).unwrap_or(1);
                    from_sqlite_code(extended, &kind, message)
                } else {
                    let state = code.map(Cow::into_owned).unwrap_or_default();
                    from_pg_state(&state, &kind, message)
                }
            }
            sqlx::Error::Io(e) => {
                Self::Unavailable(format!("I/O error talking to the database: {e}"))
            }
            sqlx::Error::Tls(e) => Self::Unavailable(format!("TLS error: {e}")),
            sqlx::Error::Protocol(e) => Self::Unavailable(format!("protocol error: {e}")),
            sqlx::Error::PoolTimedOut => {
                Self::Unavailable("timed out waiting for a database connection".into())
            }
            sqlx::Error::PoolClosed => Self::Unavailable("the connection pool is closed".into()),
            sqlx::Error::WorkerCrashed => {
                Self::Unavailable("the SQLite worker thread crashed".into())
            }
            sqlx::Error::BeginFailed => Self::Unavailable("could not begin a transaction".into()),
            sqlx::Error::RowNotFound => Self::NotFound {
                entity: "row",
                id: String::new(),
            },
            sqlx::Error::ColumnDecode { index, source } => {
                Self::Corrupt(format!("cannot read column {index}: {source}"))
            }
            sqlx::Error::Decode(e) => Self::Corrupt(format!("cannot decode a value: {e}")),
            sqlx::Error::Migrate(e) => Self::from(*e),
            other => Self::Invalid(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError;
        match err {
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => Self::from(e),
            MigrateError::VersionMissing(v) | MigrateError::VersionMismatch(v) => Self::Corrupt(
                format!("schema migration {v} in the database does not match this binary"),
            ),
            MigrateError::VersionTooNew(v, latest) => Self::Corrupt(format!(
                "the database was migrated by a newer binary (migration {latest} > {v})"
            )),
            MigrateError::Dirty(v) => {
                Self::Corrupt(format!("schema migration {v} was left partially applied"))
            }
            other => Self::Invalid(format!("migrations: {other}")),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        Self::Corrupt(format!("stored JSON cannot be read: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::error::ErrorKind;

    #[test]
    fn sqlite_codes_classify() {
        assert!(matches!(
            from_sqlite_code(5, &ErrorKind::Other, "busy".into()),
            StoreError::Unavailable(_)
        ));
        // SQLITE_BUSY_SNAPSHOT is an extended BUSY code.
        assert!(matches!(
            from_sqlite_code(517, &ErrorKind::Other, "busy".into()),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_sqlite_code(6, &ErrorKind::Other, "locked".into()),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_sqlite_code(26, &ErrorKind::Other, "file is not a database".into()),
            StoreError::Corrupt(m) if m.contains("file is not a database")
        ));
        assert!(matches!(
            from_sqlite_code(11, &ErrorKind::Other, "malformed".into()),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            from_sqlite_code(2067, &ErrorKind::UniqueViolation, "UNIQUE".into()),
            StoreError::Conflict { .. }
        ));
        assert!(matches!(
            from_sqlite_code(787, &ErrorKind::ForeignKeyViolation, "FK".into()),
            StoreError::Constraint(_)
        ));
    }

    #[test]
    fn postgres_states_classify() {
        assert!(matches!(
            from_pg_state("57P01", &ErrorKind::Other, "terminating connection".into()),
            StoreError::Unavailable(m) if m.contains("57P01")
        ));
        assert!(matches!(
            from_pg_state("08006", &ErrorKind::Other, "connection failure".into()),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_pg_state("23505", &ErrorKind::UniqueViolation, "dup".into()),
            StoreError::Conflict { .. }
        ));
        assert!(matches!(
            from_pg_state("XX001", &ErrorKind::Other, "bad page".into()),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            from_pg_state("22P02", &ErrorKind::Other, "bad input".into()),
            StoreError::Invalid(_)
        ));
    }

    #[test]
    fn io_errors_are_unavailable() {
        let e = StoreError::from(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert!(e.is_retryable());
        assert!(!StoreError::conflict("x").is_retryable());
    }
}
