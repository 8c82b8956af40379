//! The PostgreSQL backend, for `scalesense serve` replicas sharing one database.
//!
//! Bulk paths use `UNNEST` over typed arrays. The ingest transaction locks the hot `tap_state`
//! rows it will update (`FOR UPDATE`, in tap id order so two replicas never deadlock) before
//! reading the pour reference, so concurrent batches for the same tap from different replicas
//! count every litre once.
//!
//! Statement size matters here: sqlx 0.9.0 does not set TCP_NODELAY (upstream sqlx issue 4335,
//! fixed after 0.9.0), so a message the kernel does not take in one `write` — Linux starts a
//! socket's send buffer at 16 KiB — leaves its tail waiting ~40 ms for the server's delayed ACK.
//! Measured on loopback: 14 KB statements never stalled, 25 KB ones stalled every time. Bulk
//! statements are therefore cut to stay under ~14 KB; raise the limits once sqlx sets
//! TCP_NODELAY again.

use std::str::FromStr;

use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::migrations;

type Db = Postgres;
type StoreImpl = PgStore;
const BACKEND: Backend = Backend::Postgres;
const BEGIN_WRITE: &str = "BEGIN";

/// Readings per insert: ≈ 125 bytes of arrays each (the per-scale text columns are sent once per
/// scale, not per reading).
const READINGS_PER_STATEMENT: usize = 100;
/// Rollup, tap-state and telemetry rows per statement: ≈ 190 bytes each.
const ROWS_PER_STATEMENT: usize = 72;
/// Ids per `= ANY($1)` look-up.
const IDS_PER_STATEMENT: usize = 256;

include!("store_impl.rs");

/// A store in a PostgreSQL database (the schema on the connection's `search_path`).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
        Self::connect_with(options, 10).await
    }

    /// Connects with explicit options (e.g. a `search_path`) and pool size.
    pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        migrations::migrator(migrations::POSTGRES)
            .run(&pool)
            .await?;
        tracing::debug!("PostgreSQL store open");
        Ok(Self { pool })
    }

    /// The connection pool, for diagnostics, tests and benchmarks that must look under the
    /// trait. Writing through it bypasses every rule the store keeps.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn lock_taps(conn: &mut PgConnection, device_ids: &[&str]) -> Result<()> {
    for chunk in device_ids.chunks(IDS_PER_STATEMENT) {
        sqlx::query(
            "SELECT s.tap_id FROM tap_state s JOIN devices d ON d.tap_id = s.tap_id \
             WHERE d.id = ANY($1) ORDER BY s.tap_id FOR UPDATE OF s",
        )
        .bind(chunk)
        .fetch_all(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn device_contexts(
    conn: &mut PgConnection,
    device_ids: &[&str],
) -> Result<Vec<sqlx::postgres::PgRow>> {
    let mut rows = Vec::with_capacity(device_ids.len());
    for chunk in device_ids.chunks(IDS_PER_STATEMENT) {
        rows.extend(
            sqlx::query(concat!(device_context_select!(), " WHERE d.id = ANY($1)"))
                .bind(chunk)
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(rows)
}

/// Inserts the candidates, skipping keys already stored; returns which were new.
///
/// The columns that are the same for every reading of a scale in a batch (device, series,
/// location, tap, keg) travel once per scale and are joined back by position.
async fn insert_readings(conn: &mut PgConnection, candidates: &[Candidate]) -> Result<Vec<bool>> {
    let mut inserted: Vec<(String, i64, i64)> = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(READINGS_PER_STATEMENT) {
        let mut position: HashMap<&str, i32> = HashMap::new();
        let mut scales: Vec<&Candidate> = Vec::new();
        let scale_of: Vec<i32> = chunk
            .iter()
            .map(|c| {
                *position.entry(c.device_id.as_str()).or_insert_with(|| {
                    scales.push(c);
                    i32::try_from(scales.len()).unwrap_or(i32::MAX)
                })
            })
            .collect();
        let rows = sqlx::query(
            "INSERT INTO readings (device_id, boot, seq, series, location_id, tap_id, keg_id, \
             ts, weight_kg, level_pct, volume_l, battery_v, battery_pct, rssi, stable) \
             SELECT c.device_id, r.boot, r.seq, c.series, c.location_id, c.tap_id, c.keg_id, \
             r.ts, r.weight_kg, r.level_pct, r.volume_l, r.battery_v, r.battery_pct, r.rssi, \
             r.stable \
             FROM UNNEST($1::int4[], $2::int8[], $3::int8[], $4::int8[], $5::float8[], \
             $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::int8[], $11::bool[]) \
             AS r(scale, boot, seq, ts, weight_kg, level_pct, volume_l, battery_v, \
             battery_pct, rssi, stable) \
             JOIN UNNEST($12::text[], $13::text[], $14::text[], $15::text[], $16::text[]) \
             WITH ORDINALITY AS c(device_id, series, location_id, tap_id, keg_id, scale) \
             ON c.scale = r.scale \
             ON CONFLICT DO NOTHING RETURNING device_id, boot, seq",
        )
        .bind(&scale_of)
        .bind(chunk.iter().map(|c| c.boot).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.seq).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.ts).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.weight_kg).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.level_pct).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.volume_l).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.battery_v).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.battery_pct).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.rssi).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.stable).collect::<Vec<_>>())
        .bind(
            scales
                .iter()
                .map(|c| c.device_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(scales.iter().map(|c| c.series.as_str()).collect::<Vec<_>>())
        .bind(
            scales
                .iter()
                .map(|c| c.location_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(scales.iter().map(|c| c.tap_id.as_str()).collect::<Vec<_>>())
        .bind(
            scales
                .iter()
                .map(|c| c.keg_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            inserted.push((
                row.try_get("device_id")?,
                row.try_get("boot")?,
                row.try_get("seq")?,
            ));
        }
    }
    let by_key: HashMap<(&str, i64, i64), usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.device_id.as_str(), c.boot, c.seq), i))
        .collect();
    let mut is_new = vec![false; candidates.len()];
    for (device_id, boot, seq) in &inserted {
        if let Some(&i) = by_key.get(&(device_id.as_str(), *boot, *seq)) {
            is_new[i] = true;
        }
    }
    Ok(is_new)
}

async fn upsert_rollups(conn: &mut PgConnection, deltas: &[RollupDelta]) -> Result<()> {
    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        sqlx::query(concat!(
            rollup_insert!(),
            "SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], \
             $6::int8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::int8[], \
             $12::int8[], $13::float8[], $14::int8[], $15::float8[], $16::float8[])",
            rollup_merge!()
        ))
        .bind(chunk.iter().map(|d| d.series.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.bucket_ms).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.bucket_start).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|d| d.location_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|d| d.tap_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.n).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.level_sum).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.level_min).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.level_max).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.battery_sum).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.battery_n).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.first_ts).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.first_volume).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.last_ts).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.last_volume).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.poured_l).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn update_tap_states(conn: &mut PgConnection, taps: &[TapUpdate]) -> Result<()> {
    for chunk in taps.chunks(ROWS_PER_STATEMENT) {
        sqlx::query(
            "UPDATE tap_state AS s SET series = u.series, level_pct = u.level_pct, \
             volume_l = u.volume_l, weight_kg = u.weight_kg, updated_at = u.ts, \
             tare_status = COALESCE(u.tare_status, s.tare_status), last_boot = u.boot, \
             last_seq = u.seq, ref_volume_l = u.ref_volume_l \
             FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], $5::float8[], \
             $6::int8[], $7::text[], $8::int8[], $9::int8[], $10::float8[]) \
             AS u(tap_id, series, level_pct, volume_l, weight_kg, ts, tare_status, boot, seq, \
             ref_volume_l) \
             WHERE s.tap_id = u.tap_id",
        )
        .bind(chunk.iter().map(|t| t.tap_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|t| t.series.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|t| t.level_pct).collect::<Vec<_>>())
        .bind(chunk.iter().map(|t| t.volume_l).collect::<Vec<_>>())
        .bind(chunk.iter().map(|t| t.weight_kg).collect::<Vec<_>>())
        .bind(chunk.iter().map(|t| t.ts).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|t| t.tare_status.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|t| t.boot).collect::<Vec<_>>())
        .bind(chunk.iter().map(|t| t.seq).collect::<Vec<_>>())
        .bind(chunk.iter().map(|t| t.ref_volume_l).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// `last_seen` and telemetry of the scales in a batch, in one statement per chunk (a
/// data-modifying CTE updates `devices`, the main statement `telemetry`).
async fn update_devices(conn: &mut PgConnection, devices: &[DeviceUpdate]) -> Result<()> {
    for chunk in devices.chunks(ROWS_PER_STATEMENT) {
        sqlx::query(
            "WITH u AS (SELECT * FROM UNNEST($1::text[], $2::int8[], $3::float8[], \
                 $4::float8[], $5::int8[]) AS u(device_id, ts, battery_v, battery_pct, rssi)), \
             seen AS (UPDATE devices AS d SET status = 'online', last_seen = CASE \
                 WHEN d.last_seen IS NULL OR d.last_seen < u.ts THEN u.ts ELSE d.last_seen END \
                 FROM u WHERE d.id = u.device_id RETURNING d.id) \
             UPDATE telemetry AS m SET battery_v = COALESCE(u.battery_v, m.battery_v), \
             battery_pct = COALESCE(u.battery_pct, m.battery_pct), \
             rssi = COALESCE(u.rssi, m.rssi), updated_at = u.ts \
             FROM u WHERE m.device_id = u.device_id \
             AND (m.updated_at IS NULL OR m.updated_at <= u.ts)",
        )
        .bind(
            chunk
                .iter()
                .map(|d| d.device_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|d| d.ts).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.battery_v).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.battery_pct).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.rssi).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
