//! Loss and duplicate accounting: after a run, the rows in the database are compared with what
//! the publishers sent, reading by reading, keyed by `(device, boot, seq)`.
//!
//! Every published reading must be there exactly once. Rows with keys nobody published in this
//! run (another client on a shared broker using the same device names) are counted apart and
//! never hide a missing reading. What this module must never do: infer the outcome from
//! counters the code under test keeps; it reads the database file itself.

use std::collections::HashMap;
use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::BenchError;

/// One reading's identity within a run (the boot is the run's).
pub type Key = (String, i64);

/// The outcome of comparing published readings with stored rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Readings the publishers had acknowledged by their broker.
    pub published: u64,
    /// Published readings found exactly once (a duplicated one is counted in `duplicates`).
    pub exactly_once: u64,
    /// Published readings not found at all.
    pub missing: u64,
    /// Extra copies of published readings (a reading stored three times counts 2).
    pub duplicates: u64,
    /// Rows of this run's boot that no publisher sent.
    pub unexpected: u64,
}

impl Accounting {
    /// Compares `published` keys with `stored` rows (key and how many rows carry it).
    pub fn compare(
        published: impl IntoIterator<Item = Key>,
        stored: impl IntoIterator<Item = (Key, u64)>,
    ) -> Self {
        let mut counts: HashMap<Key, u64> = stored.into_iter().collect();
        let mut result = Self::default();
        for key in published {
            result.published += 1;
            match counts.remove(&key) {
                Some(1) => result.exactly_once += 1,
                Some(0) | None => result.missing += 1,
                Some(n) => result.duplicates += n - 1,
            }
        }
        result.unexpected = counts.values().sum();
        result
    }

    /// Adds another run's accounting to this one.
    pub fn add(&mut self, other: Self) {
        self.published += other.published;
        self.exactly_once += other.exactly_once;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.unexpected += other.unexpected;
    }

    /// Every published reading is stored exactly once.
    pub fn is_exact(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.exactly_once == self.published
    }
}

/// Which table layout the database file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The Scale Sense store (`readings(device_id, boot, seq, …)`).
    Store,
    /// The Python baseline's table (`readings(device, boot, seq, …)`).
    Baseline,
}

/// Rows of boot `boot` in the database at `path`, counted per `(device, seq)`.
pub async fn stored_counts(
    path: &Path,
    layout: Layout,
    boot: i64,
) -> Result<Vec<(Key, u64)>, BenchError> {
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| BenchError::Database(format!("{}: {e}", path.display())))?;
    let sql = match layout {
        Layout::Store => {
            "SELECT device_id, seq, COUNT(*) FROM readings WHERE boot = ? GROUP BY device_id, seq"
        }
        Layout::Baseline => {
            "SELECT device, seq, COUNT(*) FROM readings WHERE boot = ? GROUP BY device, seq"
        }
    };
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(sql)
        .bind(boot)
        .fetch_all(&pool)
        .await
        .map_err(|e| BenchError::Database(format!("{}: {e}", path.display())))?;
    pool.close().await;
    Ok(rows
        .into_iter()
        .map(|(device, seq, count)| ((device, seq), count.max(0) as u64))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(device: &str, seq: i64) -> Key {
        (device.to_owned(), seq)
    }

    #[test]
    fn missing_duplicated_and_foreign_rows_are_each_counted() {
        let published = vec![key("A", 1), key("A", 2), key("B", 1), key("B", 2)];
        let stored = vec![
            (key("A", 1), 1),
            (key("A", 2), 3),
            (key("B", 2), 1),
            (key("C", 9), 2),
        ];
        let result = Accounting::compare(published, stored);
        assert_eq!(
            result,
            Accounting {
                published: 4,
                exactly_once: 2,
                missing: 1,
                duplicates: 2,
                unexpected: 2,
            }
        );
        assert!(!result.is_exact());
    }

    #[test]
    fn a_complete_run_is_exact() {
        let published = vec![key("A", 1), key("A", 2)];
        let stored = vec![(key("A", 1), 1), (key("A", 2), 1)];
        let result = Accounting::compare(published, stored);
        assert!(result.is_exact(), "{result:?}");
    }
}
