//! Schema migrations, embedded in the binary and applied when a store opens. Each backend has
//! its own SQL files (types and identity columns differ) with the same versions and the same
//! tables, columns, keys and indexes; a new migration is added to both lists together. A
//! migration that has been committed is never edited: the stored checksum would no longer match
//! and every existing database would refuse to open (`StoreError::Corrupt`).

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One embedded migration: version, description, SQL.
pub(crate) type Embedded = (i64, &'static str, &'static str);

pub(crate) const SQLITE: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "hot rows",
        include_str!("../migrations/sqlite/0002_hot_rows.sql"),
    ),
    (
        3,
        "reports",
        include_str!("../migrations/sqlite/0003_reports.sql"),
    ),
];

pub(crate) const POSTGRES: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "hot rows",
        include_str!("../migrations/postgres/0002_hot_rows.sql"),
    ),
    (
        3,
        "reports",
        include_str!("../migrations/postgres/0003_reports.sql"),
    ),
];

pub(crate) fn migrator(embedded: &[Embedded]) -> Migrator {
    Migrator::with_migrations(
        embedded
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_versions() {
        let versions = |m: &[Embedded]| m.iter().map(|(v, d, _)| (*v, *d)).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
        assert_eq!(migrator(SQLITE).iter().count(), SQLITE.len());
    }
}
