//! The SQLite backend: one file, WAL journal, `synchronous = FULL`.
//!
//! Why FULL and not NORMAL: a reading is acknowledged to the scale or gateway only after its
//! commit, and the gateway then deletes its copy (BRIEF §5, §7). With NORMAL a WAL commit is not
//! fsynced, so a power cut can lose acknowledged readings that exist nowhere else. FULL fsyncs
//! the WAL at each commit; group commit in the pipeline makes that one fsync per batch.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, so it takes the write lock up front
//! and waits on `busy_timeout` instead of failing half-way when a read lock cannot be upgraded.
//! A lock still held after the timeout is `StoreError::Unavailable` and nothing is written.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use crate::migrations;

type Db = Sqlite;
type StoreImpl = SqliteStore;
const BACKEND: Backend = Backend::Sqlite;
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

include!("store_impl.rs");

/// Rows per multi-row statement: 1,000 rows × 16 columns stays under SQLite's 32,766 binds.
const ROWS_PER_STATEMENT: usize = 1000;

/// Tunables of a SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    /// How long a write waits for another writer's lock before giving up as `Unavailable`.
    pub busy_timeout: Duration,
    /// Connections in the pool (readers run in parallel under WAL; writers take turns).
    pub max_connections: u32,
    /// Page cache per connection, KiB. SQLite's default (2 MiB) is far smaller than the hot
    /// part of the readings indexes, and every miss is a system call.
    pub cache_kib: u32,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            max_connections: 4,
            cache_kib: 32 * 1024,
        }
    }
}

/// A store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &SqliteSettings::default()).await
    }

    /// [`SqliteStore::open`] with explicit settings.
    pub async fn open_with(path: &Path, settings: &SqliteSettings) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(settings.busy_timeout)
            .pragma("cache_size", format!("-{}", settings.cache_kib));
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .connect_with(options)
            .await?;
        migrations::migrator(migrations::SQLITE).run(&pool).await?;
        tracing::debug!(path = %path.display(), "SQLite store open");
        Ok(Self { pool })
    }

    /// The connection pool, for diagnostics, tests and benchmarks that must look under the
    /// trait. Writing through it bypasses every rule the store keeps.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// SQLite serialises writers with `BEGIN IMMEDIATE`, so there is nothing to lock row by row.
#[expect(
    clippy::unused_async,
    reason = "same signature as the PostgreSQL dialect"
)]
async fn lock_taps(_conn: &mut SqliteConnection, _device_ids: &[&str]) -> Result<()> {
    Ok(())
}

async fn device_contexts(
    conn: &mut SqliteConnection,
    device_ids: &[&str],
) -> Result<Vec<sqlx::sqlite::SqliteRow>> {
    let mut rows = Vec::with_capacity(device_ids.len());
    for chunk in device_ids.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(device_context_select!());
        q.push(" WHERE d.id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        rows.extend(q.build().fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// Inserts the candidates, skipping keys already stored; returns which were new.
///
/// The write lock is held (`BEGIN IMMEDIATE`), so the stored keys cannot change between the
/// look-up and the insert: one range probe per (device, boot) finds replays, and the insert
/// needs no `RETURNING` (which would stream every row back through the worker thread).
async fn insert_readings(
    conn: &mut SqliteConnection,
    candidates: &[Candidate],
) -> Result<Vec<bool>> {
    let mut ranges: BTreeMap<(&str, i64), (i64, i64)> = BTreeMap::new();
    for c in candidates {
        ranges
            .entry((c.device_id.as_str(), c.boot))
            .and_modify(|(lo, hi)| {
                *lo = (*lo).min(c.seq);
                *hi = (*hi).max(c.seq);
            })
            .or_insert((c.seq, c.seq));
    }
    let ranges: Vec<_> = ranges.into_iter().collect();
    let mut stored: HashSet<(String, i64, i64)> = HashSet::new();
    for chunk in ranges.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT device_id, boot, seq FROM readings WHERE ");
        let mut any = q.separated(" OR ");
        for ((device_id, boot), (lo, hi)) in chunk {
            any.push("(device_id = ")
                .push_bind_unseparated(*device_id)
                .push_unseparated(" AND boot = ")
                .push_bind_unseparated(*boot)
                .push_unseparated(" AND seq BETWEEN ")
                .push_bind_unseparated(*lo)
                .push_unseparated(" AND ")
                .push_bind_unseparated(*hi)
                .push_unseparated(")");
        }
        for row in q.build().fetch_all(&mut *conn).await? {
            stored.insert((
                row.try_get("device_id")?,
                row.try_get("boot")?,
                row.try_get("seq")?,
            ));
        }
    }
    let is_new: Vec<bool> = candidates
        .iter()
        .map(|c| stored.is_empty() || !stored.contains(&(c.device_id.clone(), c.boot, c.seq)))
        .collect();
    let fresh: Vec<&Candidate> = candidates
        .iter()
        .zip(&is_new)
        .filter_map(|(c, &n)| n.then_some(c))
        .collect();
    let mut written = 0;
    for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO readings (device_id, boot, seq, series, location_id, tap_id, keg_id, \
             ts, weight_kg, level_pct, volume_l, battery_v, battery_pct, rssi, stable) ",
        );
        q.push_values(chunk, |mut b, c| {
            b.push_bind(c.device_id.as_str())
                .push_bind(c.boot)
                .push_bind(c.seq)
                .push_bind(c.series.as_str())
                .push_bind(c.location_id.as_str())
                .push_bind(c.tap_id.as_str())
                .push_bind(c.keg_id.as_deref())
                .push_bind(c.ts)
                .push_bind(c.weight_kg)
                .push_bind(c.level_pct)
                .push_bind(c.volume_l)
                .push_bind(c.battery_v)
                .push_bind(c.battery_pct)
                .push_bind(c.rssi)
                .push_bind(c.stable);
        });
        q.push(" ON CONFLICT DO NOTHING");
        written += q.build().execute(&mut *conn).await?.rows_affected();
    }
    if written != fresh.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{} readings were new under the write lock but only {written} were inserted",
            fresh.len()
        )));
    }
    Ok(is_new)
}

async fn upsert_rollups(conn: &mut SqliteConnection, deltas: &[RollupDelta]) -> Result<()> {
    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(rollup_insert!());
        q.push_values(chunk, |mut b, d| {
            b.push_bind(d.series.as_str())
                .push_bind(d.bucket_ms)
                .push_bind(d.bucket_start)
                .push_bind(d.location_id.as_str())
                .push_bind(d.tap_id.as_str())
                .push_bind(d.n)
                .push_bind(d.level_sum)
                .push_bind(d.level_min)
                .push_bind(d.level_max)
                .push_bind(d.battery_sum)
                .push_bind(d.battery_n)
                .push_bind(d.first_ts)
                .push_bind(d.first_volume)
                .push_bind(d.last_ts)
                .push_bind(d.last_volume)
                .push_bind(d.poured_l);
        });
        q.push(rollup_merge!());
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn update_tap_states(conn: &mut SqliteConnection, taps: &[TapUpdate]) -> Result<()> {
    for chunk in taps.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "WITH u(tap_id, series, level_pct, volume_l, weight_kg, ts, tare_status, boot, seq, \
             ref_volume_l) AS (",
        );
        q.push_values(chunk, |mut b, t| {
            b.push_bind(t.tap_id.as_str())
                .push_bind(t.series.as_str())
                .push_bind(t.level_pct)
                .push_bind(t.volume_l)
                .push_bind(t.weight_kg)
                .push_bind(t.ts)
                .push_bind(t.tare_status.as_deref())
                .push_bind(t.boot)
                .push_bind(t.seq)
                .push_bind(t.ref_volume_l);
        });
        q.push(
            ") UPDATE tap_state SET series = u.series, level_pct = u.level_pct, \
             volume_l = u.volume_l, weight_kg = u.weight_kg, updated_at = u.ts, \
             tare_status = COALESCE(u.tare_status, tap_state.tare_status), \
             last_boot = u.boot, last_seq = u.seq, ref_volume_l = u.ref_volume_l \
             FROM u WHERE tap_state.tap_id = u.tap_id",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn update_devices(conn: &mut SqliteConnection, devices: &[DeviceUpdate]) -> Result<()> {
    for chunk in devices.chunks(ROWS_PER_STATEMENT) {
        for update in [
            ") UPDATE devices SET status = 'online', last_seen = CASE \
             WHEN devices.last_seen IS NULL OR devices.last_seen < u.ts THEN u.ts \
             ELSE devices.last_seen END FROM u WHERE devices.id = u.device_id",
            ") UPDATE telemetry SET battery_v = COALESCE(u.battery_v, telemetry.battery_v), \
             battery_pct = COALESCE(u.battery_pct, telemetry.battery_pct), \
             rssi = COALESCE(u.rssi, telemetry.rssi), updated_at = u.ts \
             FROM u WHERE telemetry.device_id = u.device_id \
             AND (telemetry.updated_at IS NULL OR telemetry.updated_at <= u.ts)",
        ] {
            let mut q = QueryBuilder::<Sqlite>::new(
                "WITH u(device_id, ts, battery_v, battery_pct, rssi) AS (",
            );
            q.push_values(chunk, |mut b, d| {
                b.push_bind(d.device_id.as_str())
                    .push_bind(d.ts)
                    .push_bind(d.battery_v)
                    .push_bind(d.battery_pct)
                    .push_bind(d.rssi);
            });
            q.push(update);
            q.build().execute(&mut *conn).await?;
        }
    }
    Ok(())
}
