//! Store benchmark: ingest throughput and the long-range queries, on SQLite and PostgreSQL,
//! printed as one table with the targets. Not a test: run it in release with
//! `cargo bench -p scalesense-store` (PostgreSQL from `SCALESENSE_TEST_PG`, skipped if unset).
//!
//! Data: one location with 24 taps and 24 scales, one year long.
//! - The most recent `SCALESENSE_BENCH_RAW_DAYS` days (default 7; 365 gives the full 24 × 1 year
//!   × 1/min ≈ 12.6 M rows) are real readings, one a minute per tap, sent through
//!   `Store::ingest_batch` in batches of `SCALESENSE_BENCH_BATCH` (default 1,000) — that is the
//!   ingest measurement, and it builds the rollups the real way.
//! - Everything older is generated directly in the database by one SQL statement per table
//!   (weekly kegs per tap, and their 5-minute and hourly rollup rows for the whole year), so the
//!   tables have a full year's size while generation stays fast. The queries then run through
//!   the real `Store` methods over that data.
//! - Tap 1's current keg was tapped 100 days ago (a slow seller), so "90 days of one keg" exists;
//!   the other taps change kegs weekly, inside the raw window too.
//!
//! The raw-SQLite ceiling inserts the same rows into an empty copy of the same schema with one
//! prepared INSERT executed per row inside a single transaction.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use scalesense_store::{
    AccountId, BUCKET_1_HOUR, Beer, BeerId, DeviceId, IngestReading, KegId, LocationFields,
    LocationId, Millis, NewDevice, NewKeg, PgStore, ROLLUP_BUCKETS, Series, SqliteStore, Store,
    Units,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection};

const MIN: Millis = 60_000;
const DAY: Millis = 24 * BUCKET_1_HOUR;
/// 2027-03-18 00:00 UTC: "now" for the benchmark.
const NOW: Millis = 1_805_328_000_000;
const TAPS: u16 = 24;
const EMPTY_KG: f64 = 13.15;
const FULL_KG: f64 = 73.25;

struct Config {
    raw_days: i64,
    batch: usize,
}

impl Config {
    fn from_env() -> Self {
        let num = |name: &str, default: i64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        Self {
            raw_days: num("SCALESENSE_BENCH_RAW_DAYS", 7).clamp(1, 365),
            batch: num("SCALESENSE_BENCH_BATCH", 1000).clamp(1, 100_000) as usize,
        }
    }

    fn raw_start(&self) -> Millis {
        NOW - self.raw_days * DAY
    }

    /// When tap 1's current keg was tapped.
    fn tap1_start(&self) -> Millis {
        (NOW - 100 * DAY).min(self.raw_start())
    }
}

struct Row {
    metric: String,
    backend: &'static str,
    value: String,
    target: String,
    ok: Option<bool>,
}

fn account() -> AccountId {
    AccountId::try_from("acct-bench").unwrap()
}
fn location() -> LocationId {
    LocationId::try_from("loc-bench").unwrap()
}
fn device(n: u16) -> DeviceId {
    DeviceId::try_from(format!("SCALE-B{n:02}").as_str()).unwrap()
}
fn current_keg(n: u16) -> KegId {
    KegId::try_from(format!("keg-now-{n:02}").as_str()).unwrap()
}

/// Deterministic one-reading-a-minute data for every tap over the raw window, in time order.
struct Readings {
    rng: SmallRng,
    next_ts: Millis,
    end: Millis,
    seq: i64,
    weights: Vec<f64>,
}

impl Readings {
    fn new(cfg: &Config) -> Self {
        let mut weights = vec![FULL_KG; usize::from(TAPS)];
        weights[0] = 40.0;
        Self {
            rng: SmallRng::seed_from_u64(0x00be_ec5e),
            next_ts: cfg.raw_start(),
            end: NOW,
            seq: 0,
            weights,
        }
    }

    fn total(cfg: &Config) -> usize {
        (cfg.raw_days * DAY / MIN) as usize * usize::from(TAPS)
    }

    fn next_batch(&mut self, size: usize) -> Vec<IngestReading> {
        let mut batch = Vec::with_capacity(size);
        while batch.len() + usize::from(TAPS) <= size.max(usize::from(TAPS))
            && self.next_ts < self.end
        {
            let hour = (self.next_ts / BUCKET_1_HOUR) % 24;
            let open = !(1..16).contains(&hour);
            for tap in 1..=TAPS {
                let w = &mut self.weights[usize::from(tap - 1)];
                if open && self.rng.random_bool(0.15) {
                    *w -= self.rng.random_range(0.3..0.6);
                }
                if *w < EMPTY_KG + 1.0 {
                    *w = FULL_KG;
                }
                let noise = self.rng.random_range(-0.03..0.03);
                batch.push(IngestReading {
                    device_id: device(tap),
                    boot: 1,
                    seq: self.seq,
                    ts: self.next_ts,
                    weight_kg: *w + noise,
                    level_pct: (*w - EMPTY_KG) / (FULL_KG - EMPTY_KG) * 100.0,
                    battery_v: Some(3.9),
                    battery_pct: Some(80.0 - self.seq as f64 * 1e-5),
                    rssi: Some(-60),
                    stable: true,
                    tare_status: Some("ok".into()),
                });
            }
            self.seq += 1;
            self.next_ts += MIN;
        }
        batch
    }
}

/// Creates the account, location, taps, scales, beer and current kegs through the store.
async fn setup(store: &dyn Store, cfg: &Config) {
    let a = account();
    let l = location();
    store
        .create_account(&a, "Bench Bars", NOW - 400 * DAY)
        .await
        .unwrap();
    store
        .create_location(
            &a,
            &l,
            &LocationFields {
                name: "Bench".into(),
                address: "1 Bench St".into(),
                time_zone: "UTC".into(),
                units: Units::Metric,
                settings: serde_json::json!({"raw_retention_days": 400}),
            },
            NOW - 400 * DAY,
        )
        .await
        .unwrap();
    let beer = BeerId::try_from("loc-bench#house").unwrap();
    store
        .create_custom_beer(
            &a,
            &Beer {
                id: beer.clone(),
                location_id: Some(l.clone()),
                name: "House".into(),
                brewery: "Bench".into(),
                style: "Lager".into(),
                abv: 4.5,
                specific_gravity: 1.0,
            },
        )
        .await
        .unwrap();
    for n in 1..=TAPS {
        let tap = store
            .create_tap(&a, &l, n, &format!("Tap {n}"))
            .await
            .unwrap();
        store
            .register_device(
                &a,
                &NewDevice {
                    id: device(n),
                    location_id: Some(l.clone()),
                    fw_version: Some("1.0.0".into()),
                    created_at: NOW - 400 * DAY,
                },
            )
            .await
            .unwrap();
        store
            .assign_device(&a, &device(n), Some(&tap.id))
            .await
            .unwrap();
        let tapped_at = if n == 1 {
            cfg.tap1_start()
        } else {
            cfg.raw_start()
        };
        store
            .create_keg(
                &a,
                &NewKeg {
                    id: current_keg(n),
                    location_id: l.clone(),
                    beer_id: beer.clone(),
                    keg_type: "half_barrel".into(),
                    full_kg: FULL_KG,
                    empty_kg: EMPTY_KG,
                    specific_gravity: 1.0,
                    created_at: tapped_at,
                },
            )
            .await
            .unwrap();
        store
            .tap_keg(&a, &current_keg(n), &tap.id, tapped_at)
            .await
            .unwrap();
    }
}

/// Weekly kegs for every tap from a year ago until its current keg. Portable SQL.
const HISTORIC_KEGS: &str = "\
WITH RECURSIVE w(tap_id, n, start_ts, end_ts) AS ( \
    SELECT t.id, 0, $1 + t.number * 3600000, \
           CASE WHEN t.number = 1 THEN $4 ELSE $3 END \
    FROM taps t WHERE t.location_id = $2 \
    UNION ALL \
    SELECT tap_id, n + 1, start_ts + $5, end_ts FROM w WHERE start_ts + 2 * $5 <= end_ts \
) \
INSERT INTO kegs (id, location_id, beer_id, keg_type, full_kg, empty_kg, specific_gravity, \
                  tap_id, state, created_at, tapped_at, kicked_at, removed_at) \
SELECT 'keg-h-' || substr(tap_id, length(tap_id) - 1, 2) || '-' || n, $2, 'loc-bench#house', \
       'half_barrel', 73.25, 13.15, 1.0, tap_id, 'removed', start_ts, start_ts, \
       start_ts + $5 - 3600000, start_ts + $5 \
FROM w WHERE start_ts + $5 <= end_ts";

/// Rollup rows for every keg's life before the raw window, one statement per bucket size.
/// Levels fall linearly over a keg's life; pours happen 16:00–01:00 UTC. Portable SQL.
const HISTORIC_ROLLUPS: &str = "\
WITH RECURSIVE r(series, tap_id, t, life_start, life_end) AS ( \
    SELECT k.id, k.tap_id, k.tapped_at - (k.tapped_at % $3), k.tapped_at, \
           CASE WHEN k.kicked_at IS NULL OR k.kicked_at > $2 THEN $2 ELSE k.kicked_at END \
    FROM kegs k WHERE k.location_id = $1 AND k.tapped_at < $2 \
    UNION ALL \
    SELECT series, tap_id, t + $3, life_start, life_end FROM r WHERE t + $3 < life_end \
) \
INSERT INTO rollups (series, bucket_ms, bucket_start, location_id, tap_id, n, level_sum, \
                     level_min, level_max, battery_sum, battery_n, first_ts, first_volume, \
                     last_ts, last_volume, poured_l) \
SELECT series, $3, t, $1, tap_id, $3 / 60000, \
       ($3 / 60000) * (100.0 * (life_end - t) / (life_end - life_start)), \
       100.0 * (life_end - t - $3) / (life_end - life_start), \
       100.0 * (life_end - t) / (life_end - life_start), \
       ($3 / 60000) * 80.0, $3 / 60000, t, 60.1 * (life_end - t) / (life_end - life_start), \
       t + $3 - 60000, 60.1 * (life_end - t - $3) / (life_end - life_start), \
       CASE WHEN $3 >= 86400000 THEN ((t / $3 * 7919) % 100) * 9 / 40.0 \
            WHEN (t / 3600000) % 24 >= 16 OR (t / 3600000) % 24 < 1 \
            THEN ((t / $3 * 7919) % 100) * $3 / 3600000 / 40.0 ELSE 0.0 END \
FROM r";

/// Fills the pre-window year with kegs and rollups, through raw SQL on either pool.
macro_rules! generate_history {
    ($pool:expr, $cfg:expr) => {{
        let pool = $pool;
        let started = Instant::now();
        let kegs = sqlx::query(HISTORIC_KEGS)
            .bind(NOW - 365 * DAY)
            .bind(location().as_str())
            .bind($cfg.raw_start())
            .bind($cfg.tap1_start())
            .bind(7 * DAY)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected();
        let mut rollups = 0;
        for bucket in ROLLUP_BUCKETS {
            rollups += sqlx::query(HISTORIC_ROLLUPS)
                .bind(location().as_str())
                .bind($cfg.raw_start())
                .bind(bucket)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected();
        }
        eprintln!(
            "  generated {kegs} historic kegs and {rollups} rollup rows in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }};
}

/// Sends the raw window through `ingest_batch`, timing only those calls. Taps 2–24 get a new
/// keg every week (kicked, replaced and tapped through the store between batches), so the
/// window holds real keg changes; tap 1 keeps its slow keg.
async fn ingest_all(store: &dyn Store, cfg: &Config) -> (usize, Duration) {
    let a = account();
    let l = location();
    let beer = BeerId::try_from("loc-bench#house").unwrap();
    let mut current: Vec<KegId> = (1..=TAPS).map(current_keg).collect();
    let mut swap_at: Vec<Millis> = (1..=TAPS)
        .map(|n| cfg.raw_start() + 7 * DAY + i64::from(n) * BUCKET_1_HOUR)
        .collect();
    let mut source = Readings::new(cfg);
    let mut stored = 0;
    let mut elapsed = Duration::ZERO;
    loop {
        let batch = source.next_batch(cfg.batch);
        let Some(first) = batch.first() else { break };
        for n in 2..=TAPS {
            let i = usize::from(n - 1);
            if first.ts < swap_at[i] {
                continue;
            }
            let at = swap_at[i];
            store.kick_keg(&a, &current[i], at).await.unwrap();
            let next = KegId::try_from(format!("keg-r-{n:02}-{at}").as_str()).unwrap();
            store
                .create_keg(
                    &a,
                    &NewKeg {
                        id: next.clone(),
                        location_id: l.clone(),
                        beer_id: beer.clone(),
                        keg_type: "half_barrel".into(),
                        full_kg: FULL_KG,
                        empty_kg: EMPTY_KG,
                        specific_gravity: 1.0,
                        created_at: at,
                    },
                )
                .await
                .unwrap();
            let tap = scalesense_store::TapId::new(&l, n).unwrap();
            store.tap_keg(&a, &next, &tap, at).await.unwrap();
            current[i] = next;
            swap_at[i] += 7 * DAY;
        }
        let started = Instant::now();
        let out = store.ingest_batch(&batch).await.unwrap();
        elapsed += started.elapsed();
        stored += out.stored();
    }
    (stored, elapsed)
}

/// The ceiling: the same rows, one prepared INSERT per row, one transaction.
async fn raw_sqlite_ceiling(cfg: &Config) -> (usize, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ceiling.db"))
        .await
        .unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let mut source = Readings::new(cfg);
    let loc = location();
    let taps: Vec<String> = (1..=TAPS)
        .map(|n| format!("loc-bench#TAP#{n:02}"))
        .collect();
    let kegs: Vec<KegId> = (1..=TAPS).map(current_keg).collect();
    let mut rows = 0;
    let mut elapsed = Duration::ZERO;
    let mut tx = conn.begin().await.unwrap();
    loop {
        let batch = source.next_batch(cfg.batch);
        if batch.is_empty() {
            break;
        }
        let started = Instant::now();
        for r in &batch {
            let tap = usize::from(r.device_id.as_str()[7..].parse::<u16>().unwrap() - 1);
            let keg = &kegs[tap];
            sqlx::query(
                "INSERT INTO readings (device_id, boot, seq, series, location_id, tap_id, \
                 keg_id, ts, weight_kg, level_pct, volume_l, battery_v, battery_pct, rssi, \
                 stable) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(r.device_id.as_str())
            .bind(r.boot)
            .bind(r.seq)
            .bind(keg.as_str())
            .bind(loc.as_str())
            .bind(taps[tap].as_str())
            .bind(keg.as_str())
            .bind(r.ts)
            .bind(r.weight_kg)
            .bind(r.level_pct)
            .bind(r.weight_kg - EMPTY_KG)
            .bind(r.battery_v)
            .bind(r.battery_pct)
            .bind(r.rssi)
            .bind(r.stable)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        elapsed += started.elapsed();
        rows += batch.len();
    }
    let started = Instant::now();
    tx.commit().await.unwrap();
    elapsed += started.elapsed();
    (rows, elapsed)
}

/// p50 and p99 of `runs` calls, after one warm-up call.
async fn latency<F, Fut, T>(runs: usize, mut call: F) -> (Duration, Duration, T)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut last = call().await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        last = call().await;
        times.push(started.elapsed());
    }
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (pick(0.50), pick(0.99), last)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn queries(store: &dyn Store, backend: &'static str, table: &mut Vec<Row>) {
    let a = account();
    let l = location();
    let keg1 = Series::Keg(current_keg(1));
    for (days, bin) in [(7, BUCKET_1_HOUR), (90, 6 * BUCKET_1_HOUR)] {
        let (p50, p99, h) =
            latency(200, || store.history(&a, &keg1, NOW - days * DAY, NOW, bin)).await;
        let h = h.unwrap();
        table.push(Row {
            metric: format!(
                "history {days} d of one keg ({} points, {:?}) p50 / p99",
                h.points.len(),
                h.source
            ),
            backend,
            value: format!("{} / {}", ms(p50), ms(p99)),
            target: "p99 < 10 ms".into(),
            ok: Some(p99 < Duration::from_millis(10)),
        });
    }
    let (a_ref, l_ref) = (&a, &l);
    let (p50, p99, hours) = latency(50, move || async move {
        let hourly = store
            .pour_by_hour(a_ref, l_ref, NOW - 30 * DAY, NOW)
            .await
            .unwrap();
        // Fold into hour of day (UTC here; the domain crate uses the location's zone).
        let mut by_hour = [0.0_f64; 24];
        for h in &hourly {
            by_hour[((h.hour_start / BUCKET_1_HOUR) % 24) as usize] += h.poured_l;
        }
        (hourly.len(), by_hour)
    })
    .await;
    table.push(Row {
        metric: format!(
            "pour by hour of day, 30 d, 24 taps ({} hours) p50 / p99",
            hours.0
        ),
        backend,
        value: format!("{} / {}", ms(p50), ms(p99)),
        target: "< 50 ms".into(),
        ok: Some(p99 < Duration::from_millis(50)),
    });
    let (p50, p99, report) = latency(20, || store.keg_report(&a, &l, NOW - 365 * DAY, NOW)).await;
    let report = report.unwrap();
    let poured: f64 = report.iter().map(|r| r.poured_l).sum();
    table.push(Row {
        metric: format!(
            "one-year keg report ({} kegs, {:.0} L) p50 / p99",
            report.len(),
            poured
        ),
        backend,
        value: format!("{} / {}", ms(p50), ms(p99)),
        target: "< 200 ms".into(),
        ok: Some(p99 < Duration::from_millis(200)),
    });
}

async fn bench_sqlite(cfg: &Config, table: &mut Vec<Row>) {
    eprintln!("SQLite: setting up");
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db"))
        .await
        .unwrap();
    setup(&store, cfg).await;
    generate_history!(store.pool(), cfg);
    eprintln!("SQLite: ingesting {} readings", Readings::total(cfg));
    let (stored, took) = ingest_all(&store, cfg).await;
    let rate = stored as f64 / took.as_secs_f64();
    eprintln!("SQLite: raw ceiling");
    let (rows, ceiling_took) = raw_sqlite_ceiling(cfg).await;
    let ceiling = rows as f64 / ceiling_took.as_secs_f64();
    table.push(Row {
        metric: format!("raw SQLite ceiling, {rows} rows, prepared INSERT, 1 transaction"),
        backend: "SQLite",
        value: format!("{ceiling:.0} rows/s"),
        target: "baseline".into(),
        ok: None,
    });
    table.push(Row {
        metric: format!(
            "ingest_batch, {stored} readings in batches of {} (ratio to ceiling {:.2})",
            cfg.batch,
            rate / ceiling
        ),
        backend: "SQLite",
        value: format!("{rate:.0} readings/s"),
        target: "≥ 50 % of ceiling".into(),
        ok: Some(rate >= 0.5 * ceiling),
    });
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    queries(&store, "SQLite", table).await;
    store.close().await;
}

async fn bench_pg(url: &str, cfg: &Config, table: &mut Vec<Row>) {
    eprintln!("PostgreSQL: setting up");
    let schema = format!("bench_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let store = PgStore::connect_with(options, 4).await.unwrap();
    setup(&store, cfg).await;
    generate_history!(store.pool(), cfg);
    eprintln!("PostgreSQL: ingesting {} readings", Readings::total(cfg));
    let (stored, took) = ingest_all(&store, cfg).await;
    let rate = stored as f64 / took.as_secs_f64();
    table.push(Row {
        metric: format!(
            "ingest_batch, {stored} readings in batches of {}",
            cfg.batch
        ),
        backend: "PostgreSQL",
        value: format!("{rate:.0} readings/s"),
        target: "≥ 50 000 readings/s".into(),
        ok: Some(rate >= 50_000.0),
    });
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    queries(&store, "PostgreSQL", table).await;
    store.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cfg = Config::from_env();
    eprintln!(
        "scalesense-store bench: {} taps, {} raw days ({} readings), batches of {}",
        TAPS,
        cfg.raw_days,
        Readings::total(&cfg),
        cfg.batch
    );
    let mut table = Vec::new();
    bench_sqlite(&cfg, &mut table).await;
    match std::env::var("SCALESENSE_TEST_PG") {
        Ok(url) => bench_pg(&url, &cfg, &mut table).await,
        Err(_) => eprintln!("PostgreSQL: skipped (SCALESENSE_TEST_PG not set)"),
    }
    let width = table
        .iter()
        .map(|r| r.metric.chars().count())
        .max()
        .unwrap_or(10);
    println!();
    println!(
        "| {:<width$} | {:<10} | {:>22} | {:<20} | ok |",
        "measurement", "backend", "result", "target"
    );
    println!(
        "|{}|{}|{}|{}|----|",
        "-".repeat(width + 2),
        "-".repeat(12),
        "-".repeat(24),
        "-".repeat(22)
    );
    for r in &table {
        let ok = match r.ok {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "",
        };
        println!(
            "| {:<width$} | {:<10} | {:>22} | {:<20} | {:<2} |",
            r.metric, r.backend, r.value, r.target, ok
        );
    }
}
