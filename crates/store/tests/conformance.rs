//! The store conformance suite: every test is written once against `&dyn Store` and runs on
//! SQLite (a file in a temp dir) and on PostgreSQL (`SCALESENSE_TEST_PG`, one fresh schema per
//! test, dropped afterwards even when the test panics). PostgreSQL tests are named `pg_*`.
//!
//! Without `SCALESENSE_TEST_PG` the PostgreSQL tests print `skipped: SCALESENSE_TEST_PG not set`
//! and pass — except under `CI=true`, where they fail so CI can never silently skip a backend.
// Tests read better with `s` (store), `h` (harness), `a`/`b` (accounts and bars), exact float
// comparisons where a value must round-trip unchanged, and result-checking helpers that take
// the result by value so calls stay one line.
#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::float_cmp,
    clippy::needless_pass_by_value
)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scalesense_store::{
    AccountId, Alert, AlertChange, AlertKey, AlertState, BUCKET_1_DAY, BUCKET_1_HOUR, BUCKET_5_MIN,
    Backend, Beer, BeerId, ChannelKind, CommandId, CommandState, DEAD_LETTER_PAYLOAD_CAP, DeviceId,
    DeviceStatus, DeviceStatusUpdate, Grace, HistorySource, IngestReading, KegId, KegState,
    LocationFields, LocationId, Millis, NewApiToken, NewAuditEntry, NewCalibration, NewChannel,
    NewCommand, NewDevice, NewKeg, NewNotification, NewSession, NewTare, NewUser, OutboxStatus,
    PgStore, ReadingOutcome, RecordId, Role, Series, Severity, SqliteSettings, SqliteStore, Store,
    StoreError, TapId, TareKind, Units, UserId, WeightSource,
};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};

/// 2026-03-18 00:00 UTC.
const T0: Millis = 1_773_792_000_000;
const MIN: Millis = 60_000;
const DAY: Millis = 24 * BUCKET_1_HOUR;

// --- harness ------------------------------------------------------------------------------

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(PgPool),
}

struct Harness {
    store: Arc<dyn Store>,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<SchemaGuard>,
}

impl Harness {
    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(p)
                .await
                .unwrap(),
            Raw::Pg(p) => sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(p)
                .await
                .unwrap(),
        }
    }
}

/// Drops the test's schema when the test ends, also on panic.
struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // Drop cannot await; a short-lived runtime on its own thread does the cleanup.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

async fn sqlite() -> Harness {
    sqlite_with(&SqliteSettings::default()).await
}

async fn sqlite_with(settings: &SqliteSettings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(&dir.path().join("store.db"), settings)
        .await
        .unwrap();
    Harness {
        raw: Raw::Sqlite(store.pool().clone()),
        store: Arc::new(store),
        _dir: Some(dir),
        _schema: None,
    }
}

fn unique_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let seed =
        nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut rng = StdRng::seed_from_u64(seed);
    format!("t_{:016x}", rng.random::<u64>())
}

/// A PostgreSQL harness in a fresh schema, or `None` (printed) when PostgreSQL is not
/// configured outside CI.
async fn pg() -> Option<Harness> {
    let Ok(url) = std::env::var("SCALESENSE_TEST_PG") else {
        assert!(
            !ci(),
            "CI=true but SCALESENSE_TEST_PG is not set: the PostgreSQL conformance tests must run \
             in CI (export SCALESENSE_TEST_PG=postgres://user@host:port/db)"
        );
        println!("skipped: SCALESENSE_TEST_PG not set");
        return None;
    };
    let admin = match PgPoolOptions::new().max_connections(2).connect(&url).await {
        Ok(pool) => pool,
        Err(e) => {
            assert!(
                !ci(),
                "CI=true and PostgreSQL at SCALESENSE_TEST_PG is unreachable: {e}"
            );
            println!("skipped: PostgreSQL at SCALESENSE_TEST_PG is unreachable: {e}");
            return None;
        }
    };
    let schema = unique_schema();
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())])
        .application_name(&schema);
    let store = PgStore::connect_with(options.clone(), 5).await.unwrap();
    let raw = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    admin.close().await;
    Some(Harness {
        store: Arc::new(store),
        raw: Raw::Pg(raw),
        _dir: None,
        _schema: Some(guard),
    })
}

/// Instantiates each conformance test for both backends.
macro_rules! conformance {
    ($($test:ident => $sqlite:ident, $pg:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $sqlite() {
                let h = sqlite().await;
                assert_eq!(h.store.backend(), Backend::Sqlite);
                $test(&h).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $pg() {
                let Some(h) = pg().await else { return };
                assert_eq!(h.store.backend(), Backend::Postgres);
                $test(&h).await;
            }
        )*
    };
}

conformance! {
    locations_and_taps => sqlite_locations_and_taps, pg_locations_and_taps;
    tenancy => sqlite_tenancy, pg_tenancy;
    devices_status_and_telemetry => sqlite_devices_status_and_telemetry, pg_devices_status_and_telemetry;
    calibrations => sqlite_calibrations, pg_calibrations;
    beers_search_and_keg_weights => sqlite_beers_search_and_keg_weights, pg_beers_search_and_keg_weights;
    keg_lifecycle => sqlite_keg_lifecycle, pg_keg_lifecycle;
    tare_dual_write => sqlite_tare_dual_write, pg_tare_dual_write;
    ingest_outcomes_and_hot_rows => sqlite_ingest_outcomes_and_hot_rows, pg_ingest_outcomes_and_hot_rows;
    ingest_is_idempotent => sqlite_ingest_is_idempotent, pg_ingest_is_idempotent;
    rollups_equal_raw_aggregates => sqlite_rollups_equal_raw_aggregates, pg_rollups_equal_raw_aggregates;
    history_picks_its_source => sqlite_history_picks_its_source, pg_history_picks_its_source;
    pour_by_hour_and_keg_report => sqlite_pour_by_hour_and_keg_report, pg_pour_by_hour_and_keg_report;
    retention => sqlite_retention, pg_retention;
    alerts => sqlite_alerts, pg_alerts;
    commands => sqlite_commands, pg_commands;
    users_sessions_tokens => sqlite_users_sessions_tokens, pg_users_sessions_tokens;
    outbox => sqlite_outbox, pg_outbox;
    channel_edits => sqlite_channel_edits, pg_channel_edits;
    dead_letters => sqlite_dead_letters, pg_dead_letters;
    audit_log => sqlite_audit_log, pg_audit_log;
    user_edits => sqlite_user_edits, pg_user_edits;
    beer_edits => sqlite_beer_edits, pg_beer_edits;
    reports_queries => sqlite_reports_queries, pg_reports_queries;
}

// --- fixtures -----------------------------------------------------------------------------

fn acct(s: &str) -> AccountId {
    AccountId::try_from(s).unwrap()
}
fn loc(s: &str) -> LocationId {
    LocationId::try_from(s).unwrap()
}
fn dev(s: &str) -> DeviceId {
    DeviceId::try_from(s).unwrap()
}
fn keg(s: &str) -> KegId {
    KegId::try_from(s).unwrap()
}
fn beer_id(s: &str) -> BeerId {
    BeerId::try_from(s).unwrap()
}

fn fields(name: &str) -> LocationFields {
    LocationFields {
        name: name.into(),
        address: "1 Main St".into(),
        time_zone: "Europe/Dublin".into(),
        units: Units::Metric,
        settings: json!({"low_keg_warning_pct": 20}),
    }
}

fn beer(id: &str, location: Option<&str>, name: &str, brewery: &str, style: &str) -> Beer {
    Beer {
        id: beer_id(id),
        location_id: location.map(loc),
        name: name.into(),
        brewery: brewery.into(),
        style: style.into(),
        abv: 4.2,
        specific_gravity: 1.0,
    }
}

/// One account with a location, two taps, a scale on tap 1, a beer and a keg on tap 1.
struct Bar {
    account: AccountId,
    location: LocationId,
    tap1: TapId,
    tap2: TapId,
    device: DeviceId,
    keg: KegId,
    beer: BeerId,
}

async fn bar(s: &dyn Store, name: &str) -> Bar {
    let account = acct(&format!("acct-{name}"));
    let location = loc(&format!("loc-{name}"));
    s.create_account(&account, name, T0).await.unwrap();
    s.create_location(&account, &location, &fields(name), T0)
        .await
        .unwrap();
    let tap1 = s
        .create_tap(&account, &location, 1, "Tap 1")
        .await
        .unwrap()
        .id;
    let tap2 = s
        .create_tap(&account, &location, 2, "Tap 2")
        .await
        .unwrap()
        .id;
    let device = dev(&format!("SCALE-{name}"));
    s.register_device(
        &account,
        &NewDevice {
            id: device.clone(),
            location_id: Some(location.clone()),
            fw_version: Some("1.0.0".into()),
            created_at: T0,
        },
    )
    .await
    .unwrap();
    s.assign_device(&account, &device, Some(&tap1))
        .await
        .unwrap();
    let beer = beer_id(&format!("{location}#house"));
    s.create_custom_beer(
        &account,
        &beer_with_sg(beer.as_str(), Some(location.as_str()), 1.0),
    )
    .await
    .unwrap();
    let keg = keg(&format!("keg-{name}-1"));
    s.create_keg(&account, &new_keg(&keg, &location, &beer))
        .await
        .unwrap();
    s.tap_keg(&account, &keg, &tap1, T0).await.unwrap();
    Bar {
        account,
        location,
        tap1,
        tap2,
        device,
        keg,
        beer,
    }
}

fn beer_with_sg(id: &str, location: Option<&str>, sg: f64) -> Beer {
    Beer {
        specific_gravity: sg,
        ..beer(id, location, "House Lager", "Our Brewery", "Lager")
    }
}

fn new_keg(id: &KegId, location: &LocationId, beer: &BeerId) -> NewKeg {
    NewKeg {
        id: id.clone(),
        location_id: location.clone(),
        beer_id: beer.clone(),
        keg_type: "half_barrel".into(),
        full_kg: 73.25,
        empty_kg: 13.15,
        specific_gravity: 1.0,
        created_at: T0,
    }
}

fn reading(device: &DeviceId, seq: i64, ts: Millis, weight_kg: f64, level: f64) -> IngestReading {
    IngestReading {
        device_id: device.clone(),
        boot: 1,
        seq,
        ts,
        weight_kg,
        level_pct: level,
        battery_v: Some(3.9),
        battery_pct: Some(80.0),
        rssi: Some(-61),
        stable: true,
        tare_status: Some("ok".into()),
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::NotFound { .. }))
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

// --- tests --------------------------------------------------------------------------------

async fn locations_and_taps(h: &Harness) {
    let s = &*h.store;
    let a = acct("acct-1");
    s.create_account(&a, "Bars Ltd", T0).await.unwrap();
    assert_eq!(s.account(&a).await.unwrap().name, "Bars Ltd");
    assert!(is_conflict(s.create_account(&a, "again", T0).await));
    let l = loc("loc-001");
    let created = s
        .create_location(&a, &l, &fields("The Anchor"), T0)
        .await
        .unwrap();
    assert_eq!(created.units, Units::Metric);
    assert_eq!(created.settings["low_keg_warning_pct"], 20);
    assert!(is_not_found(
        s.create_location(&acct("nobody"), &loc("loc-x"), &fields("x"), T0)
            .await
    ));

    let mut changed = fields("The Anchor");
    changed.units = Units::Imperial;
    changed.settings = json!({"raw_retention_days": 7, "quiet_hours": ["23:00", "10:00"]});
    let updated = s.update_location(&a, &l, &changed).await.unwrap();
    assert_eq!(updated.units, Units::Imperial);
    assert_eq!(
        s.location(&a, &l).await.unwrap().settings["raw_retention_days"],
        7
    );
    assert_eq!(s.locations(&a).await.unwrap().len(), 1);

    let t7 = s.create_tap(&a, &l, 7, "Stout").await.unwrap();
    assert_eq!(t7.id.as_str(), "loc-001#TAP#07");
    s.create_tap(&a, &l, 2, "Lager").await.unwrap();
    assert!(is_conflict(s.create_tap(&a, &l, 7, "dup").await));
    assert!(is_not_found(
        s.create_tap(&a, &loc("loc-404"), 1, "x").await
    ));
    let taps = s.taps(&a, &l).await.unwrap();
    assert_eq!(
        taps.iter().map(|t| t.tap.number).collect::<Vec<_>>(),
        vec![2, 7],
        "dashboard order is by tap number"
    );
    assert_eq!(taps[1].state.level_pct, None);
    assert!(!taps[1].state.maintenance);
    assert_eq!(s.tap(&a, &t7.id).await.unwrap().name, "Stout");
    assert_eq!(s.tap_state(&a, &t7.id).await.unwrap().tap_id, t7.id);

    s.create_library_beer(&beer(
        "guinness-draught",
        None,
        "Guinness Draught",
        "Guinness",
        "Stout",
    ))
    .await
    .unwrap();
    let with_beer = s
        .set_tap_beer(&a, &t7.id, Some(&beer_id("guinness-draught")))
        .await
        .unwrap();
    assert_eq!(with_beer.beer_id, Some(beer_id("guinness-draught")));
    assert!(is_not_found(
        s.set_tap_beer(&a, &t7.id, Some(&beer_id("nope"))).await
    ));
    assert_eq!(
        s.set_tap_beer(&a, &t7.id, None).await.unwrap().beer_id,
        None
    );
}

async fn tenancy(h: &Harness) {
    let s = &*h.store;
    let a = bar(s, "a").await;
    let b = bar(s, "b").await;
    s.ingest_batch(&[reading(&a.device, 1, T0 + MIN, 50.0, 60.0)])
        .await
        .unwrap();
    let key = AlertKey {
        location_id: a.location.clone(),
        kind: "low_keg".into(),
        entity: a.tap1.as_str().into(),
    };
    s.fire_alert(&a.account, &alert(&key, T0)).await.unwrap();
    s.create_user(&a.account, &user("u-a", "owner@a.example", Role::Admin))
        .await
        .unwrap();
    let cmd = CommandId::try_from("cmd-a-1").unwrap();
    s.create_command(&a.account, &command(&cmd, &a.device, T0))
        .await
        .unwrap();
    s.record_audit(&a.account, &audit("created tap", T0))
        .await
        .unwrap();

    // Reads by B of A's rows are NotFound or empty.
    let bb = &b.account;
    assert!(is_not_found(s.location(bb, &a.location).await));
    assert_eq!(s.locations(bb).await.unwrap().len(), 1);
    assert!(s.taps(bb, &a.location).await.unwrap().is_empty());
    assert!(is_not_found(s.tap(bb, &a.tap1).await));
    assert!(is_not_found(s.tap_state(bb, &a.tap1).await));
    assert!(is_not_found(s.beer(bb, &a.beer).await));
    assert!(
        s.search_beers(bb, None, "house", 50)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != a.beer)
    );
    assert!(is_not_found(s.keg(bb, &a.keg).await));
    assert!(s.kegs(bb, &a.location, None).await.unwrap().is_empty());
    assert!(is_not_found(s.device(bb, &a.device).await));
    assert!(s.devices(bb, &a.location).await.unwrap().is_empty());
    assert!(is_not_found(s.telemetry(bb, &a.device).await));
    assert!(
        s.low_battery_devices(bb, &a.location, 101.0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.active_alerts(bb, &a.location).await.unwrap().is_empty());
    assert!(
        s.alert_history(bb, &a.location, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.users(bb).await.unwrap().is_empty());
    assert!(is_not_found(
        s.user(bb, &UserId::try_from("u-a").unwrap()).await
    ));
    assert!(
        s.user_by_email(bb, "owner@a.example")
            .await
            .unwrap()
            .is_none()
    );
    assert!(is_not_found(s.command(bb, &cmd).await));
    assert!(s.commands(bb, &a.device, 10).await.unwrap().is_empty());
    assert!(s.audit_log(bb, 10).await.unwrap().is_empty());
    let a_series = Series::Keg(a.keg.clone());
    assert!(
        s.readings(bb, &a_series, T0, T0 + DAY, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.rollups(bb, &a_series, BUCKET_5_MIN, T0, T0 + DAY)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.history(bb, &a_series, T0, T0 + DAY, BUCKET_1_HOUR)
            .await
            .unwrap()
            .points
            .is_empty()
    );
    assert!(is_not_found(
        s.pour_by_hour(bb, &a.location, T0, T0 + DAY).await
    ));
    assert!(is_not_found(
        s.keg_report(bb, &a.location, T0, T0 + DAY).await
    ));
    assert!(is_not_found(s.beer_keg_weights(bb, &a.beer).await));
    assert!(is_not_found(s.calibration(bb, &a.device).await));
    assert!(is_not_found(s.tare_records(bb, &a.keg).await));
    assert!(s.grace(bb, &key).await.unwrap().is_none());

    // Writes by B to A's rows are refused and change nothing.
    assert!(is_not_found(s.set_tap_beer(bb, &a.tap1, None).await));
    assert!(is_not_found(s.assign_device(bb, &a.device, None).await));
    assert!(is_not_found(
        s.assign_device(bb, &b.device, Some(&a.tap2)).await
    ));
    assert!(is_not_found(s.set_maintenance(bb, &a.device, true).await));
    assert!(is_not_found(s.kick_keg(bb, &a.keg, T0).await));
    assert!(is_not_found(s.remove_keg(bb, &a.keg, T0).await));
    assert!(is_not_found(s.tap_keg(bb, &b.keg, &a.tap2, T0).await));
    assert!(is_not_found(
        s.create_keg(bb, &new_keg(&keg("keg-sneaky"), &a.location, &b.beer))
            .await
    ));
    assert!(is_not_found(
        s.create_keg(bb, &new_keg(&keg("keg-sneaky"), &b.location, &a.beer))
            .await
    ));
    assert!(is_not_found(
        s.record_tare(bb, &tare(&a.keg, &a.device, TareKind::Empty, T0))
            .await
    ));
    assert!(is_not_found(
        s.record_tare(bb, &tare(&b.keg, &a.device, TareKind::Empty, T0))
            .await
    ));
    assert!(is_not_found(s.fire_alert(bb, &alert(&key, T0)).await));
    assert!(is_not_found(
        s.change_alert(bb, &key, &change(AlertState::Acknowledged, T0))
            .await
    ));
    assert!(is_not_found(s.resolve_alert(bb, &key, T0, None).await));
    assert!(!s.clear_grace(bb, &key).await.unwrap());
    assert!(is_not_found(
        s.create_command(
            bb,
            &command(&CommandId::try_from("cmd-b").unwrap(), &a.device, T0)
        )
        .await
    ));
    assert!(is_not_found(
        s.record_calibration(bb, &calibration(&a.device, T0, 0.5))
            .await
    ));
    assert!(is_not_found(
        s.create_custom_beer(bb, &beer("loc-a#evil", Some("loc-a"), "x", "y", "z"))
            .await
    ));

    // A still sees its own rows, unchanged.
    let aa = &a.account;
    assert_eq!(
        s.tap(aa, &a.tap1).await.unwrap().keg_id,
        Some(a.keg.clone())
    );
    assert_eq!(s.keg(aa, &a.keg).await.unwrap().state, KegState::Tapped);
    assert!(!s.device(aa, &a.device).await.unwrap().maintenance);
    assert_eq!(s.active_alerts(aa, &a.location).await.unwrap().len(), 1);
    assert!(s.tare_records(aa, &a.keg).await.unwrap().is_empty());
    assert_eq!(
        s.readings(aa, &a_series, T0, T0 + DAY, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn devices_status_and_telemetry(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "d").await;
    let a = &b.account;
    let second = dev("SCALE-9");
    s.register_device(
        a,
        &NewDevice {
            id: second.clone(),
            location_id: None,
            fw_version: None,
            created_at: T0,
        },
    )
    .await
    .unwrap();
    assert!(is_conflict(
        s.register_device(
            a,
            &NewDevice {
                id: second.clone(),
                location_id: None,
                fw_version: None,
                created_at: T0
            }
        )
        .await
    ));
    assert!(is_conflict(
        s.assign_device(a, &second, Some(&b.tap1)).await
    ));
    let moved = s.assign_device(a, &second, Some(&b.tap2)).await.unwrap();
    assert_eq!(moved.tap_id, Some(b.tap2.clone()));
    assert_eq!(moved.location_id, Some(b.location.clone()));
    assert_eq!(
        s.tap(a, &b.tap2).await.unwrap().device_id,
        Some(second.clone())
    );
    assert_eq!(s.devices(a, &b.location).await.unwrap().len(), 2);

    let on = s.set_maintenance(a, &b.device, true).await.unwrap();
    assert!(on.maintenance);
    assert!(s.tap_state(a, &b.tap1).await.unwrap().maintenance);

    let status = DeviceStatusUpdate {
        status: DeviceStatus::Online,
        fw_version: Some("1.2.0".into()),
        maintenance: Some(false),
        battery_v: Some(3.6),
        battery_pct: Some(15.0),
        rssi: Some(-70),
        at: T0 + 5 * MIN,
    };
    let after = s
        .record_device_status(&b.device, &status)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, DeviceStatus::Online);
    assert_eq!(after.fw_version.as_deref(), Some("1.2.0"));
    assert_eq!(after.last_seen, Some(T0 + 5 * MIN));
    assert!(!after.maintenance);
    assert!(!s.tap_state(a, &b.tap1).await.unwrap().maintenance);
    assert!(
        s.record_device_status(&dev("SCALE-404"), &status)
            .await
            .unwrap()
            .is_none()
    );

    let offline = DeviceStatusUpdate {
        status: DeviceStatus::Offline,
        fw_version: None,
        maintenance: None,
        battery_v: None,
        battery_pct: None,
        rssi: None,
        at: T0 + 9 * MIN,
    };
    let lwt = s
        .record_device_status(&b.device, &offline)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lwt.status, DeviceStatus::Offline);
    assert_eq!(
        lwt.fw_version.as_deref(),
        Some("1.2.0"),
        "missing fields keep their value"
    );
    assert_eq!(
        lwt.last_seen,
        Some(T0 + 5 * MIN),
        "an LWT is not a sign of life"
    );

    let t = s.telemetry(a, &b.device).await.unwrap();
    assert_eq!(t.battery_pct, Some(15.0));
    assert_eq!(t.rssi, Some(-70));
    let low = s.low_battery_devices(a, &b.location, 20.0).await.unwrap();
    assert_eq!(low.len(), 1);
    assert_eq!(low[0].0.id, b.device);
    assert!(
        s.low_battery_devices(a, &b.location, 10.0)
            .await
            .unwrap()
            .is_empty()
    );

    let silent = s.silent_devices(T0 + 4 * MIN).await.unwrap();
    assert_eq!(
        silent.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![second.clone()],
        "never seen counts as silent; seen after the cut-off does not"
    );
    let off = s.assign_device(a, &second, None).await.unwrap();
    assert_eq!(off.tap_id, None);
    assert_eq!(s.tap(a, &b.tap2).await.unwrap().device_id, None);
}

fn calibration(device: &DeviceId, at: Millis, drift: f64) -> NewCalibration {
    NewCalibration {
        device_id: device.clone(),
        scale_factor: 21_000.5,
        zero_offset: 8_400_000,
        method: "known_weight".into(),
        known_weight_kg: Some(20.0),
        drift_pct: Some(drift),
        by: "manager@bar".into(),
        at,
    }
}

async fn calibrations(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "c").await;
    let a = &b.account;
    assert!(s.calibration(a, &b.device).await.unwrap().is_none());
    s.record_calibration(a, &calibration(&b.device, T0, 0.0))
        .await
        .unwrap();
    s.record_calibration(a, &calibration(&b.device, T0 + DAY, 2.5))
        .await
        .unwrap();
    let current = s.calibration(a, &b.device).await.unwrap().unwrap();
    assert_eq!(current.at, T0 + DAY);
    assert_eq!(current.drift_pct, Some(2.5));
    let history = s.calibration_history(a, &b.device, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|c| c.at).collect::<Vec<_>>(),
        vec![T0 + DAY, T0]
    );
    assert!(is_not_found(
        s.record_calibration(a, &calibration(&dev("SCALE-404"), T0, 0.0))
            .await
    ));
}

async fn beers_search_and_keg_weights(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "e").await;
    let other = bar(s, "f").await;
    let a = &b.account;
    s.create_library_beer(&beer(
        "guinness-draught",
        None,
        "Guinness Draught",
        "Guinness",
        "Stout",
    ))
    .await
    .unwrap();
    s.create_library_beer(&beer(
        "modelo",
        None,
        "Modelo Especial",
        "Grupo Modelo",
        "Lager",
    ))
    .await
    .unwrap();
    assert!(is_conflict(
        s.create_library_beer(&beer("modelo", None, "Modelo", "x", "y"))
            .await
    ));
    assert!(matches!(
        s.create_library_beer(&beer("x", Some("loc-e"), "x", "y", "z"))
            .await,
        Err(StoreError::Invalid(_))
    ));
    let second_loc = loc("loc-e2");
    s.create_location(a, &second_loc, &fields("second"), T0)
        .await
        .unwrap();
    s.create_custom_beer(
        a,
        &beer("loc-e2#stout", Some("loc-e2"), "Night STOUT", "Us", "Stout"),
    )
    .await
    .unwrap();

    let names = |v: Vec<Beer>| v.into_iter().map(|b| b.id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(
            s.search_beers(a, Some(&b.location), "STOUT", 10)
                .await
                .unwrap()
        ),
        vec!["guinness-draught"],
        "by style, case-insensitive, only this location's custom beers"
    );
    assert_eq!(
        names(s.search_beers(a, None, "stout", 10).await.unwrap()),
        vec!["guinness-draught", "loc-e2#stout"]
    );
    assert_eq!(
        names(s.search_beers(a, None, "grupo", 10).await.unwrap()),
        vec!["modelo"],
        "by brewery"
    );
    assert_eq!(
        names(s.search_beers(a, None, "%", 10).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        s.search_beers(a, None, "", 2).await.unwrap().len(),
        2,
        "limit applies"
    );
    assert!(
        names(
            s.search_beers(&other.account, None, "stout", 10)
                .await
                .unwrap()
        )
        .iter()
        .all(|n| n != "loc-e2#stout")
    );

    let g = beer_id("guinness-draught");
    s.set_default_keg_weight(&g, "half_barrel", 73.25, 13.15)
        .await
        .unwrap();
    let w = s.beer_keg_weights(a, &g).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].source, WeightSource::Default);
    assert_eq!(w[0].measured_count, 0);

    // A full tare on a Guinness keg sets the weight for this account only.
    let k = keg("keg-g-1");
    s.create_keg(
        a,
        &NewKeg {
            beer_id: g.clone(),
            ..new_keg(&k, &b.location, &g)
        },
    )
    .await
    .unwrap();
    let first = s
        .record_tare(
            a,
            &NewTare {
                weight_kg: 74.0,
                ..tare(&k, &b.device, TareKind::Full, T0)
            },
        )
        .await
        .unwrap()
        .beer_weight
        .unwrap();
    assert_eq!(first.source, WeightSource::Set);
    assert!((first.full_kg - 74.0).abs() < 1e-9);
    assert!(
        (first.empty_kg - 13.15).abs() < 1e-9,
        "empty weight kept from the default"
    );
    let second = s
        .record_tare(
            a,
            &NewTare {
                weight_kg: 75.0,
                ..tare(&k, &b.device, TareKind::Full, T0 + DAY)
            },
        )
        .await
        .unwrap()
        .beer_weight
        .unwrap();
    assert_eq!(second.source, WeightSource::Calculated);
    assert_eq!(second.measured_count, 2);
    assert!((second.full_kg - 74.5).abs() < 1e-9, "running average");
    assert_eq!(second.measured_at, Some(T0 + DAY));
    let seen_by_a = s.beer_keg_weights(a, &g).await.unwrap();
    assert_eq!(seen_by_a, vec![second]);
    let seen_by_other = s.beer_keg_weights(&other.account, &g).await.unwrap();
    assert_eq!(
        seen_by_other[0].source,
        WeightSource::Default,
        "measurements are per account"
    );
    assert!((seen_by_other[0].full_kg - 73.25).abs() < 1e-9);
}

async fn keg_lifecycle(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "k").await;
    let a = &b.account;
    assert_eq!(s.tap(a, &b.tap1).await.unwrap().keg_id, Some(b.keg.clone()));
    assert_eq!(
        s.tap(a, &b.tap1).await.unwrap().beer_id,
        Some(b.beer.clone())
    );
    assert_eq!(
        s.tap_state(a, &b.tap1)
            .await
            .unwrap()
            .tare_status
            .as_deref(),
        Some("pending"),
        "a fresh keg waits for its tare"
    );
    let k2 = keg("keg-k-2");
    s.create_keg(a, &new_keg(&k2, &b.location, &b.beer))
        .await
        .unwrap();
    assert!(is_conflict(
        s.create_keg(a, &new_keg(&k2, &b.location, &b.beer)).await
    ));
    assert!(
        is_conflict(s.tap_keg(a, &k2, &b.tap1, T0 + MIN).await),
        "a second tapped keg on a tap is refused"
    );
    assert_eq!(
        s.keg(a, &k2).await.unwrap().state,
        KegState::Created,
        "nothing changed"
    );
    assert!(
        is_conflict(s.kick_keg(a, &k2, T0).await),
        "created cannot be kicked"
    );

    let kicked = s.kick_keg(a, &b.keg, T0 + DAY).await.unwrap();
    assert_eq!(kicked.state, KegState::Kicked);
    assert_eq!(kicked.kicked_at, Some(T0 + DAY));
    assert_eq!(
        s.tap(a, &b.tap1).await.unwrap().keg_id,
        None,
        "kicking frees the tap"
    );
    assert!(
        is_conflict(s.tap_keg(a, &b.keg, &b.tap1, T0).await),
        "kicked cannot be re-tapped"
    );

    let tapped = s.tap_keg(a, &k2, &b.tap1, T0 + DAY + MIN).await.unwrap();
    assert_eq!(tapped.state, KegState::Tapped);
    assert_eq!(tapped.tap_id, Some(b.tap1.clone()));
    assert_eq!(
        s.kegs(a, &b.location, Some(KegState::Tapped))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.kegs(a, &b.location, None).await.unwrap().len(), 2);

    let removed = s.remove_keg(a, &b.keg, T0 + 2 * DAY).await.unwrap();
    assert_eq!(removed.state, KegState::Removed);
    assert!(is_conflict(s.remove_keg(a, &b.keg, T0 + 2 * DAY).await));

    let elsewhere = loc("loc-k2");
    s.create_location(a, &elsewhere, &fields("other"), T0)
        .await
        .unwrap();
    let far = s.create_tap(a, &elsewhere, 1, "far").await.unwrap();
    let k3 = keg("keg-k-3");
    s.create_keg(a, &new_keg(&k3, &b.location, &b.beer))
        .await
        .unwrap();
    assert!(matches!(
        s.tap_keg(a, &k3, &far.id, T0).await,
        Err(StoreError::Invalid(_))
    ));
}

fn tare(k: &KegId, d: &DeviceId, kind: TareKind, at: Millis) -> NewTare {
    NewTare {
        keg_id: k.clone(),
        device_id: d.clone(),
        kind,
        raw: 8_388_123,
        weight_kg: 13.2,
        by: "staff@bar".into(),
        at,
    }
}

async fn tare_dual_write(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "t").await;
    let a = &b.account;
    let empty = s
        .record_tare(a, &tare(&b.keg, &b.device, TareKind::Empty, T0 + MIN))
        .await
        .unwrap();
    assert_eq!(empty.beer_weight, None);
    assert_eq!(empty.record.kind, TareKind::Empty);
    let t = s.telemetry(a, &b.device).await.unwrap();
    assert_eq!(t.tare_empty_raw, Some(8_388_123));
    assert_eq!(t.tare_at, Some(T0 + MIN));
    assert_eq!(t.tare_full_kg, None);

    let full = s
        .record_tare(
            a,
            &NewTare {
                weight_kg: 73.0,
                ..tare(&b.keg, &b.device, TareKind::Full, T0 + 2 * MIN)
            },
        )
        .await
        .unwrap();
    let weight = full.beer_weight.unwrap();
    assert_eq!(weight.keg_type, "half_barrel");
    assert!(
        (weight.empty_kg - 13.15).abs() < 1e-9,
        "no default: the keg's empty weight"
    );
    let t = s.telemetry(a, &b.device).await.unwrap();
    assert_eq!(t.tare_full_kg, Some(73.0));
    assert_eq!(t.tare_empty_raw, Some(8_388_123), "the empty copy stays");
    let records = s.tare_records(a, &b.keg).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.kind).collect::<Vec<_>>(),
        vec![TareKind::Empty, TareKind::Full]
    );

    // A tare naming an unknown device writes neither copy.
    assert!(is_not_found(
        s.record_tare(
            a,
            &tare(&b.keg, &dev("SCALE-404"), TareKind::Empty, T0 + 3 * MIN)
        )
        .await
    ));
    assert_eq!(s.tare_records(a, &b.keg).await.unwrap().len(), 2);
    assert_eq!(h.count("tare_records").await, 2);
}

async fn ingest_outcomes_and_hot_rows(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "i").await;
    let a = &b.account;
    let spare = dev("SCALE-SPARE");
    s.register_device(
        a,
        &NewDevice {
            id: spare.clone(),
            location_id: None,
            fw_version: None,
            created_at: T0,
        },
    )
    .await
    .unwrap();
    let mut bad = reading(&b.device, 9, T0, 1.0, 1.0);
    bad.level_pct = f64::INFINITY;
    let batch = vec![
        reading(&b.device, 1, T0 + MIN, 63.15, 80.0),
        reading(&dev("SCALE-404"), 1, T0 + MIN, 50.0, 50.0),
        reading(&spare, 1, T0 + MIN, 0.0, 0.0),
        reading(&b.device, 2, T0 + 2 * MIN, 62.15, 78.0),
        reading(&b.device, 2, T0 + 2 * MIN, 62.15, 78.0),
        bad,
    ];
    let out = s.ingest_batch(&batch).await.unwrap();
    assert_eq!(out.readings.len(), 6);
    let ReadingOutcome::Stored(first) = &out.readings[0] else {
        panic!("{:?}", out.readings[0])
    };
    assert_eq!(first.account_id, b.account);
    assert_eq!(first.location_id, b.location);
    assert_eq!(first.tap_id, b.tap1);
    assert_eq!(first.keg_id, Some(b.keg.clone()));
    assert_eq!(first.series, Series::Keg(b.keg.clone()));
    assert!(
        (first.volume_l.unwrap() - 50.0).abs() < 1e-9,
        "(63.15 − 13.15) / 1.0"
    );
    assert_eq!(out.readings[1], ReadingOutcome::UnknownDevice);
    assert_eq!(out.readings[2], ReadingOutcome::Unassigned);
    assert!(matches!(out.readings[3], ReadingOutcome::Stored(_)));
    assert_eq!(out.readings[4], ReadingOutcome::Duplicate);
    assert!(matches!(out.readings[5], ReadingOutcome::Invalid(_)));
    assert_eq!((out.stored(), out.duplicates()), (2, 1));

    let state = s.tap_state(a, &b.tap1).await.unwrap();
    assert_eq!(state.series, Some(Series::Keg(b.keg.clone())));
    assert_eq!(state.level_pct, Some(78.0));
    assert!((state.volume_l.unwrap() - 49.0).abs() < 1e-9);
    assert_eq!(state.weight_kg, Some(62.15));
    assert_eq!(state.updated_at, Some(T0 + 2 * MIN));
    assert_eq!(state.tare_status.as_deref(), Some("ok"));
    assert_eq!((state.last_boot, state.last_seq), (Some(1), Some(2)));
    let device = s.device(a, &b.device).await.unwrap();
    assert_eq!(device.last_seen, Some(T0 + 2 * MIN));
    assert_eq!(device.status, DeviceStatus::Online);
    assert_eq!(
        s.telemetry(a, &b.device).await.unwrap().battery_pct,
        Some(80.0)
    );
    let spare_t = s.telemetry(a, &spare).await.unwrap();
    assert_eq!(
        spare_t.updated_at,
        Some(T0 + MIN),
        "unassigned scales still report health"
    );
    assert_eq!(h.count("readings").await, 2);

    // An older reading arriving late does not move the hot row back.
    s.ingest_batch(&[reading(&b.device, 3, T0, 70.0, 99.0)])
        .await
        .unwrap();
    assert_eq!(s.tap_state(a, &b.tap1).await.unwrap().level_pct, Some(78.0));

    // With no keg tapped, readings fall back to the tap series and carry no volume.
    s.kick_keg(a, &b.keg, T0 + 3 * MIN).await.unwrap();
    let out = s
        .ingest_batch(&[reading(&b.device, 4, T0 + 4 * MIN, 14.0, 2.0)])
        .await
        .unwrap();
    let ReadingOutcome::Stored(fallback) = &out.readings[0] else {
        panic!()
    };
    assert_eq!(fallback.series, Series::Tap(b.tap1.clone()));
    assert_eq!(fallback.volume_l, None);
    let by_tap = s
        .readings(a, &Series::Tap(b.tap1.clone()), T0, T0 + DAY, 10)
        .await
        .unwrap();
    assert_eq!(by_tap.len(), 1);
    assert_eq!(by_tap[0].keg_id, None);
    let by_keg = s
        .readings(a, &Series::Keg(b.keg.clone()), T0, T0 + DAY, 10)
        .await
        .unwrap();
    assert_eq!(
        by_keg.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 1, 2],
        "time order"
    );
    assert!(s.ingest_batch(&[]).await.unwrap().readings.is_empty());
}

async fn ingest_is_idempotent(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "p").await;
    let a = &b.account;
    let batch: Vec<IngestReading> = (0..50)
        .map(|i| {
            reading(
                &b.device,
                i,
                T0 + i * MIN,
                70.0 - i as f64 * 0.3,
                90.0 - i as f64,
            )
        })
        .collect();
    let first = s.ingest_batch(&batch).await.unwrap();
    assert_eq!(first.stored(), 50);
    let series = Series::Keg(b.keg.clone());
    let rollups_before = s
        .rollups(a, &series, BUCKET_5_MIN, T0, T0 + DAY)
        .await
        .unwrap();
    let hourly_before = s
        .rollups(a, &series, BUCKET_1_HOUR, T0, T0 + DAY)
        .await
        .unwrap();
    let state_before = s.tap_state(a, &b.tap1).await.unwrap();

    let again = s.ingest_batch(&batch).await.unwrap();
    assert_eq!((again.stored(), again.duplicates()), (0, 50));
    assert_eq!(h.count("readings").await, 50);
    assert_eq!(
        s.rollups(a, &series, BUCKET_5_MIN, T0, T0 + DAY)
            .await
            .unwrap(),
        rollups_before
    );
    assert_eq!(
        s.rollups(a, &series, BUCKET_1_HOUR, T0, T0 + DAY)
            .await
            .unwrap(),
        hourly_before
    );
    assert_eq!(s.tap_state(a, &b.tap1).await.unwrap(), state_before);

    // A batch mixing replays and new readings stores only the new ones.
    let mixed: Vec<IngestReading> = (45..55)
        .map(|i| {
            reading(
                &b.device,
                i,
                T0 + i * MIN,
                70.0 - i as f64 * 0.3,
                90.0 - i as f64,
            )
        })
        .collect();
    let out = s.ingest_batch(&mixed).await.unwrap();
    assert_eq!((out.stored(), out.duplicates()), (5, 5));
    let total: i64 = s
        .rollups(a, &series, BUCKET_1_HOUR, T0, T0 + DAY)
        .await
        .unwrap()
        .iter()
        .map(|r| r.count)
        .sum();
    assert_eq!(total, 55);
}

/// The pour rule of `ingest.rs`, restated independently for the test.
fn model_pours(volumes: &[(Millis, f64)]) -> Vec<(Millis, f64)> {
    let mut reference: Option<f64> = None;
    let mut out = Vec::new();
    for &(ts, v) in volumes {
        let mut poured = 0.0;
        match reference {
            None => reference = Some(v),
            Some(r) if r - v > scalesense_store::POUR_NOISE_FLOOR_L => {
                poured = r - v;
                reference = Some(v);
            }
            Some(r) if v > r => reference = Some(v),
            Some(_) => {}
        }
        out.push((ts, poured));
    }
    out
}

async fn rollups_equal_raw_aggregates(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "r").await;
    let a = &b.account;
    let mut rng = StdRng::seed_from_u64(0x5ca1e);
    // Four hours of readings at random intervals, a keg draining with noise and pours.
    let mut readings = Vec::new();
    let mut ts = T0 + 7 * MIN + 13_000;
    let mut weight = 73.0;
    for seq in 0..600 {
        ts += rng.random_range(5_000..45_000);
        if rng.random_bool(0.2) {
            weight -= rng.random_range(0.2..0.6);
        }
        let noise = rng.random_range(-0.04..0.04);
        let mut r = reading(
            &b.device,
            seq,
            ts,
            weight + noise,
            rng.random_range(0.0..100.0),
        );
        r.battery_pct = rng.random_bool(0.9).then(|| rng.random_range(10.0..100.0));
        readings.push(r);
    }
    // Send in random-sized batches, in order, replaying a few readings in each.
    let mut i = 0;
    while i < readings.len() {
        let n = rng.random_range(1..80).min(readings.len() - i);
        let mut batch = readings[i..i + n].to_vec();
        if i > 0 {
            for _ in 0..rng.random_range(0..5) {
                batch.push(readings[rng.random_range(0..i)].clone());
            }
        }
        s.ingest_batch(&batch).await.unwrap();
        i += n;
    }

    let series = Series::Keg(b.keg.clone());
    let raw = s.readings(a, &series, T0, T0 + DAY, 10_000).await.unwrap();
    assert_eq!(raw.len(), readings.len());
    let pours = model_pours(
        &raw.iter()
            .map(|r| (r.ts, r.volume_l.unwrap()))
            .collect::<Vec<_>>(),
    );
    for bucket in [BUCKET_5_MIN, BUCKET_1_HOUR, BUCKET_1_DAY] {
        let rollups = s.rollups(a, &series, bucket, T0, T0 + DAY).await.unwrap();
        let mut covered = 0;
        for r in &rollups {
            let rows: Vec<_> = raw
                .iter()
                .filter(|x| x.ts >= r.bucket_start && x.ts < r.bucket_start + bucket)
                .collect();
            covered += rows.len();
            assert_eq!(r.count, rows.len() as i64);
            let sum: f64 = rows.iter().map(|x| x.level_pct).sum();
            assert!(
                (r.level_sum - sum).abs() < 1e-6,
                "level sum {} vs {sum}",
                r.level_sum
            );
            let min = rows
                .iter()
                .map(|x| x.level_pct)
                .fold(f64::INFINITY, f64::min);
            let max = rows
                .iter()
                .map(|x| x.level_pct)
                .fold(f64::NEG_INFINITY, f64::max);
            assert_eq!((r.level_min, r.level_max), (min, max));
            let batteries: Vec<f64> = rows.iter().filter_map(|x| x.battery_pct).collect();
            assert_eq!(r.battery_count, batteries.len() as i64);
            assert!((r.battery_sum - batteries.iter().sum::<f64>()).abs() < 1e-6);
            assert_eq!(r.first_ts, rows[0].ts);
            assert_eq!(r.first_volume_l, rows[0].volume_l);
            assert_eq!(r.last_ts, rows[rows.len() - 1].ts);
            assert_eq!(r.last_volume_l, rows[rows.len() - 1].volume_l);
            let poured: f64 = pours
                .iter()
                .filter(|(t, _)| *t >= r.bucket_start && *t < r.bucket_start + bucket)
                .map(|(_, p)| p)
                .sum();
            assert!(
                (r.poured_l - poured).abs() < 1e-6,
                "poured {} vs {poured}",
                r.poured_l
            );
        }
        assert_eq!(covered, raw.len(), "every reading is in exactly one bucket");
    }
}

async fn history_picks_its_source(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "h").await;
    let a = &b.account;
    // Ten days, one reading every 10 minutes, level falling 0.1 % per reading.
    let batch: Vec<IngestReading> = (0..1440)
        .map(|i| {
            reading(
                &b.device,
                i,
                T0 + i * 10 * MIN,
                70.0,
                100.0 - i as f64 * 0.05,
            )
        })
        .collect();
    s.ingest_batch(&batch).await.unwrap();
    let series = Series::Keg(b.keg.clone());

    let short = s
        .history(a, &series, T0, T0 + 2 * BUCKET_1_HOUR, BUCKET_5_MIN)
        .await
        .unwrap();
    assert_eq!(short.source, HistorySource::Rollup5Min);
    assert_eq!(
        short.points.len(),
        12,
        "one point per reading every 10 minutes"
    );
    assert_eq!(short.points[0].t, T0);
    assert_eq!(short.points[1].t, T0 + 10 * MIN);
    assert_eq!(short.points[0].level_avg, 100.0);
    assert_eq!(short.points[0].battery_avg, Some(80.0));

    let day = s.history(a, &series, T0, T0 + DAY, 15 * MIN).await.unwrap();
    assert_eq!(
        day.source,
        HistorySource::Rollup5Min,
        "≤ 24 h comes from the 5-minute rollups"
    );
    assert_eq!(day.points.len(), 96);

    let week = s
        .history(a, &series, T0, T0 + 7 * DAY, BUCKET_1_HOUR)
        .await
        .unwrap();
    assert_eq!(week.source, HistorySource::Rollup1Hour);
    assert_eq!(week.points.len(), 7 * 24);
    let p = &week.points[1];
    assert_eq!(p.t, T0 + BUCKET_1_HOUR);
    // Readings 6..12 of the hour: levels 99.7 … 99.45.
    assert!((p.level_avg - 99.575).abs() < 1e-9, "{}", p.level_avg);
    assert!((p.level_min - 99.45).abs() < 1e-9);
    assert!((p.level_max - 99.7).abs() < 1e-9);

    let long = s
        .history(a, &series, T0, T0 + 10 * DAY, 6 * BUCKET_1_HOUR)
        .await
        .unwrap();
    assert_eq!(long.source, HistorySource::Rollup1Hour);
    assert_eq!(long.points.len(), 40);
    assert!((long.points[0].level_avg - (100.0 - 17.5 * 0.05)).abs() < 1e-9);

    let fine = s
        .history(a, &series, T0, T0 + BUCKET_1_HOUR, MIN)
        .await
        .unwrap();
    assert_eq!(fine.source, HistorySource::Raw);
    assert_eq!(fine.points.len(), 6);
    assert_eq!(fine.points[0].poured_l, None);

    assert!(matches!(
        s.history(a, &series, T0, T0, BUCKET_5_MIN).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.history(a, &series, T0, T0 + 365 * DAY, MIN).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn pour_by_hour_and_keg_report(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "q").await;
    let a = &b.account;
    let second = dev("SCALE-Q2");
    s.register_device(
        a,
        &NewDevice {
            id: second.clone(),
            location_id: None,
            fw_version: None,
            created_at: T0,
        },
    )
    .await
    .unwrap();
    s.assign_device(a, &second, Some(&b.tap2)).await.unwrap();
    let k2 = keg("keg-q-2");
    s.create_keg(a, &new_keg(&k2, &b.location, &b.beer))
        .await
        .unwrap();
    s.tap_keg(a, &k2, &b.tap2, T0).await.unwrap();
    // Tap 1 pours 1 L in hour 0 and 2 L in hour 1; tap 2 pours 0.5 L in hour 1.
    let batch = vec![
        reading(&b.device, 1, T0 + MIN, 60.0, 80.0),
        reading(&b.device, 2, T0 + 30 * MIN, 59.0, 79.0),
        reading(&b.device, 3, T0 + 70 * MIN, 57.0, 77.0),
        reading(&second, 1, T0 + 61 * MIN, 40.0, 50.0),
        reading(&second, 2, T0 + 62 * MIN, 39.5, 49.0),
    ];
    s.ingest_batch(&batch).await.unwrap();
    let hours = s.pour_by_hour(a, &b.location, T0, T0 + DAY).await.unwrap();
    assert_eq!(hours.len(), 2);
    assert_eq!(hours[0].hour_start, T0);
    assert!((hours[0].poured_l - 1.0).abs() < 1e-9);
    assert_eq!(hours[1].hour_start, T0 + BUCKET_1_HOUR);
    assert!((hours[1].poured_l - 2.5).abs() < 1e-9);

    let report = s.keg_report(a, &b.location, T0, T0 + DAY).await.unwrap();
    assert_eq!(report.len(), 2);
    let first = report.iter().find(|r| r.keg_id == b.keg).unwrap();
    assert!((first.poured_l - 3.0).abs() < 1e-9);
    assert_eq!(first.readings, 3);
    assert_eq!(first.first_reading, Some(T0 + MIN));
    assert_eq!(first.last_reading, Some(T0 + 70 * MIN));
    assert_eq!(first.state, KegState::Tapped);
    let idle = keg("keg-q-3");
    s.create_keg(a, &new_keg(&idle, &b.location, &b.beer))
        .await
        .unwrap();
    let later = s
        .keg_report(a, &b.location, T0 + 2 * DAY, T0 + 3 * DAY)
        .await
        .unwrap();
    assert!(
        later.is_empty(),
        "kegs with no activity in the range are left out"
    );
}

async fn retention(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "n").await;
    let a = &b.account;
    let mut short = fields("short");
    short.settings = json!({"raw_retention_days": 7});
    s.update_location(a, &b.location, &short).await.unwrap();
    let other = bar(s, "o").await;

    let now = T0 + 400 * DAY;
    let at = |days_ago: i64| now - days_ago * DAY;
    s.ingest_batch(&[
        reading(&b.device, 1, at(370), 60.0, 80.0),
        reading(&b.device, 2, at(10), 60.0, 80.0),
        reading(&b.device, 3, at(1), 60.0, 80.0),
        reading(&other.device, 1, at(40), 60.0, 80.0),
        reading(&other.device, 2, at(10), 60.0, 80.0),
    ])
    .await
    .unwrap();
    let key = AlertKey {
        location_id: b.location.clone(),
        kind: "low_keg".into(),
        entity: "x".into(),
    };
    s.start_grace(a, &grace(&key, now - 3 * MIN, now - MIN))
        .await
        .unwrap();
    let live = AlertKey {
        entity: "y".into(),
        ..key.clone()
    };
    s.start_grace(a, &grace(&live, now - MIN, now + MIN))
        .await
        .unwrap();

    let stats = s.purge(now).await.unwrap();
    assert_eq!(
        stats.readings, 3,
        "370 d and 10 d at the 7-day location, 40 d at the default"
    );
    assert_eq!(
        stats.rollups, 3,
        "the 5-minute, hourly and daily buckets older than a year"
    );
    assert_eq!(stats.grace_rows, 1);
    assert_eq!(h.count("readings").await, 2);
    let kept = s
        .readings(a, &Series::Keg(b.keg.clone()), 0, now, 10)
        .await
        .unwrap();
    assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
    assert!(s.grace(a, &key).await.unwrap().is_none());
    assert!(s.grace(a, &live).await.unwrap().is_some());
    // Rollups of purged raw readings younger than a year stay for long-range history.
    let hourly = s
        .rollups(a, &Series::Keg(b.keg.clone()), BUCKET_1_HOUR, 0, now)
        .await
        .unwrap();
    assert_eq!(hourly.len(), 2);
    assert_eq!(
        s.purge(now).await.unwrap(),
        scalesense_store::PurgeStats::default()
    );
}

fn grace(key: &AlertKey, started_at: Millis, expires_at: Millis) -> Grace {
    Grace {
        location_id: key.location_id.clone(),
        kind: key.kind.clone(),
        entity: key.entity.clone(),
        severity: Severity::Warning,
        started_at,
        expires_at,
    }
}

fn alert(key: &AlertKey, at: Millis) -> Alert {
    Alert {
        location_id: key.location_id.clone(),
        kind: key.kind.clone(),
        entity: key.entity.clone(),
        severity: Severity::Warning,
        state: AlertState::Active,
        fired_at: at,
        updated_at: at,
        acknowledged_by: None,
        acknowledged_at: None,
        context: json!({"level_pct": 18.5}),
    }
}

fn change(state: AlertState, at: Millis) -> AlertChange {
    AlertChange {
        state,
        severity: Severity::Critical,
        at,
        by: Some("manager@bar".into()),
        context: json!({"level_pct": 9.0}),
    }
}

async fn alerts(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "l").await;
    let a = &b.account;
    let key = AlertKey {
        location_id: b.location.clone(),
        kind: "low_keg".into(),
        entity: b.tap1.as_str().into(),
    };
    let g = s
        .start_grace(a, &grace(&key, T0, T0 + 2 * MIN))
        .await
        .unwrap();
    let again = s
        .start_grace(a, &grace(&key, T0 + MIN, T0 + 3 * MIN))
        .await
        .unwrap();
    assert_eq!(again, g, "a running grace period is not restarted");
    assert_eq!(s.grace(a, &key).await.unwrap(), Some(g));

    s.fire_alert(a, &alert(&key, T0 + 2 * MIN)).await.unwrap();
    assert!(
        s.grace(a, &key).await.unwrap().is_none(),
        "firing removes the grace row"
    );
    assert!(
        is_conflict(s.fire_alert(a, &alert(&key, T0 + 3 * MIN)).await),
        "one active alert per location, kind and entity"
    );
    let other_kind = AlertKey {
        kind: "scale_offline".into(),
        ..key.clone()
    };
    s.fire_alert(a, &alert(&other_kind, T0 + 3 * MIN))
        .await
        .unwrap();
    assert_eq!(s.active_alerts(a, &b.location).await.unwrap().len(), 2);

    let escalated = s
        .change_alert(a, &key, &change(AlertState::Escalated, T0 + 4 * MIN))
        .await
        .unwrap();
    assert_eq!(escalated.state, AlertState::Escalated);
    assert_eq!(escalated.acknowledged_by, None);
    let acked = s
        .change_alert(a, &key, &change(AlertState::Acknowledged, T0 + 5 * MIN))
        .await
        .unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some("manager@bar"));
    assert_eq!(acked.acknowledged_at, Some(T0 + 5 * MIN));
    assert_eq!(acked.severity, Severity::Critical);
    assert_eq!(acked.context["level_pct"], 9.0);
    assert_eq!(acked.fired_at, T0 + 2 * MIN);

    let resolved = s.resolve_alert(a, &key, T0 + 6 * MIN, None).await.unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    assert!(is_not_found(
        s.resolve_alert(a, &key, T0 + 7 * MIN, None).await
    ));
    assert_eq!(s.active_alerts(a, &b.location).await.unwrap().len(), 1);
    let log = s.alert_history(a, &b.location, 10).await.unwrap();
    let states: Vec<_> = log
        .iter()
        .filter(|e| e.kind == "low_keg")
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states,
        vec![
            AlertState::Resolved,
            AlertState::Acknowledged,
            AlertState::Escalated,
            AlertState::Active
        ],
        "append-only, newest first"
    );
    assert_eq!(log[1].by.as_deref(), Some("manager@bar"));
    s.fire_alert(a, &alert(&key, T0 + 8 * MIN)).await.unwrap();
    assert_eq!(s.alert_history(a, &b.location, 100).await.unwrap().len(), 6);
    assert!(s.clear_grace(a, &key).await.is_ok());
}

fn command(id: &CommandId, device: &DeviceId, at: Millis) -> NewCommand {
    NewCommand {
        id: id.clone(),
        device_id: device.clone(),
        name: "tare_empty".into(),
        params: json!({"samples": 16}),
        issued_by: "staff@bar".into(),
        issued_at: at,
        expires_at: at + 10 * MIN,
    }
}

async fn commands(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "m").await;
    let a = &b.account;
    let c1 = CommandId::try_from("cmd-1").unwrap();
    let c2 = CommandId::try_from("cmd-2").unwrap();
    let c3 = CommandId::try_from("cmd-3").unwrap();
    let created = s
        .create_command(a, &command(&c1, &b.device, T0))
        .await
        .unwrap();
    assert_eq!(created.state, CommandState::Pending);
    assert_eq!(created.params["samples"], 16);
    assert!(is_conflict(
        s.create_command(a, &command(&c1, &b.device, T0)).await
    ));
    s.create_command(a, &command(&c2, &b.device, T0 + MIN))
        .await
        .unwrap();
    s.create_command(a, &command(&c3, &b.device, T0 + 2 * MIN))
        .await
        .unwrap();
    assert_eq!(
        s.open_commands(&b.device, T0 + 3 * MIN)
            .await
            .unwrap()
            .len(),
        3
    );

    let delivered = s
        .mark_command_delivered(&b.device, &c1, T0 + 1000)
        .await
        .unwrap();
    assert_eq!(delivered.state, CommandState::Delivered);
    assert_eq!(delivered.delivered_at, Some(T0 + 1000));
    assert!(is_conflict(
        s.mark_command_delivered(&b.device, &c1, T0 + 2000).await
    ));
    let done = s
        .complete_command(
            &b.device,
            &c1,
            true,
            &json!({"offset": 8_388_123}),
            T0 + 3000,
        )
        .await
        .unwrap();
    assert_eq!(done.state, CommandState::Succeeded);
    assert_eq!(done.result, Some(json!({"offset": 8_388_123})));
    assert!(
        is_conflict(
            s.complete_command(&b.device, &c1, false, &json!({}), T0 + 4000)
                .await
        ),
        "a second answer is refused"
    );
    let failed = s
        .complete_command(
            &b.device,
            &c2,
            false,
            &json!({"error": "unstable"}),
            T0 + 5000,
        )
        .await
        .unwrap();
    assert_eq!(
        failed.state,
        CommandState::Failed,
        "an answer may come before delivery is marked"
    );
    assert!(is_not_found(
        s.complete_command(&dev("SCALE-404"), &c3, true, &json!({}), T0)
            .await
    ));

    let expired = s.expire_commands(T0 + 12 * MIN).await.unwrap();
    assert_eq!(
        expired.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![c3.clone()]
    );
    assert_eq!(
        s.command(a, &c3).await.unwrap().state,
        CommandState::Expired
    );
    assert!(is_conflict(
        s.complete_command(&b.device, &c3, true, &json!({}), T0)
            .await
    ));
    assert!(
        s.open_commands(&b.device, T0 + 3 * MIN)
            .await
            .unwrap()
            .is_empty()
    );
    let listed = s.commands(a, &b.device, 2).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![c3, c2]
    );
}

fn user(id: &str, email: &str, role: Role) -> NewUser {
    NewUser {
        id: UserId::try_from(id).unwrap(),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role,
        allowed_locations: None,
        created_at: T0,
    }
}

async fn users_sessions_tokens(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "u").await;
    let other = bar(s, "v").await;
    let a = &b.account;
    let mut staff = user("u-1", "Staff@Bar.Example", Role::Staff);
    staff.allowed_locations = Some(vec![b.location.clone()]);
    let created = s.create_user(a, &staff).await.unwrap();
    assert_eq!(created.email, "staff@bar.example");
    assert_eq!(created.allowed_locations, Some(vec![b.location.clone()]));
    assert!(is_conflict(
        s.create_user(a, &user("u-2", "staff@bar.example", Role::Admin))
            .await
    ));
    s.create_user(
        &other.account,
        &user("u-3", "staff@bar.example", Role::Admin),
    )
    .await
    .unwrap();
    let mut sneaky = user("u-4", "x@y", Role::Staff);
    sneaky.allowed_locations = Some(vec![other.location.clone()]);
    assert!(is_not_found(s.create_user(a, &sneaky).await));
    let found = s
        .user_by_email(a, " STAFF@bar.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.role, Role::Staff);
    assert_eq!(s.users(a).await.unwrap().len(), 1);

    let uid = UserId::try_from("u-1").unwrap();
    let session = s
        .create_session(
            a,
            &NewSession {
                token_hash: "h1".into(),
                user_id: uid.clone(),
                created_at: T0,
                expires_at: T0 + DAY,
            },
        )
        .await
        .unwrap();
    assert_eq!(session.role, Role::Staff);
    assert!(is_not_found(
        s.create_session(
            &other.account,
            &NewSession {
                token_hash: "h9".into(),
                user_id: uid.clone(),
                created_at: T0,
                expires_at: T0 + DAY
            },
        )
        .await
    ));
    assert_eq!(
        s.session("h1", T0 + MIN).await.unwrap().unwrap().user_id,
        uid
    );
    assert!(
        s.session("h1", T0 + DAY).await.unwrap().is_none(),
        "expired"
    );
    assert!(s.session("nope", T0).await.unwrap().is_none());
    assert!(s.revoke_session("h1", T0 + 2 * MIN).await.unwrap());
    assert!(!s.revoke_session("h1", T0 + 3 * MIN).await.unwrap());
    assert!(
        s.session("h1", T0 + 3 * MIN).await.unwrap().is_none(),
        "revoked"
    );
    for hash in ["h2", "h3"] {
        s.create_session(
            a,
            &NewSession {
                token_hash: hash.into(),
                user_id: uid.clone(),
                created_at: T0,
                expires_at: T0 + DAY,
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(
        s.revoke_user_sessions(&other.account, &uid, T0)
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.revoke_user_sessions(a, &uid, T0 + MIN).await.unwrap(), 2);
    assert!(s.session("h2", T0 + 2 * MIN).await.unwrap().is_none());

    let tid = RecordId::try_from("tok-1").unwrap();
    s.create_api_token(
        a,
        &NewApiToken {
            id: tid.clone(),
            token_hash: "th1".into(),
            name: "Home Assistant".into(),
            role: Role::Manager,
            created_at: T0,
        },
    )
    .await
    .unwrap();
    let used = s.api_token("th1", T0 + MIN).await.unwrap().unwrap();
    assert_eq!(used.last_used_at, Some(T0 + MIN));
    assert_eq!(used.account_id, b.account);
    assert!(is_not_found(
        s.revoke_api_token(&other.account, &tid, T0).await
    ));
    assert!(s.api_token("th1", T0 + 2 * MIN).await.unwrap().is_some());
    let revoked = s.revoke_api_token(a, &tid, T0 + 3 * MIN).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(T0 + 3 * MIN));
    assert!(s.api_token("th1", T0 + 4 * MIN).await.unwrap().is_none());
    assert_eq!(
        s.api_tokens(a).await.unwrap()[0].last_used_at,
        Some(T0 + 2 * MIN)
    );
    assert!(s.api_tokens(&other.account).await.unwrap().is_empty());
}

async fn user_edits(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "ue").await;
    let other = bar(s, "uf").await;
    let a = &b.account;
    let id = UserId::try_from("ue-1").unwrap();
    s.create_user(a, &user("ue-1", "m@bar.example", Role::Staff))
        .await
        .unwrap();

    let changed = s
        .set_user_password(a, &id, "$argon2id$v=19$new")
        .await
        .unwrap();
    assert_eq!(changed.password_hash, "$argon2id$v=19$new");
    assert_eq!(changed.role, Role::Staff);
    assert_eq!(
        s.user(a, &id).await.unwrap().password_hash,
        "$argon2id$v=19$new"
    );

    // Role only: the allowed locations stay as they were.
    let promoted = s
        .update_user(a, &id, Some(Role::Manager), None)
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Manager);
    assert_eq!(promoted.allowed_locations, None);
    // Locations only: the role stays.
    let narrowed = s
        .update_user(a, &id, None, Some(Some(vec![b.location.clone()])))
        .await
        .unwrap();
    assert_eq!(narrowed.role, Role::Manager);
    assert_eq!(narrowed.allowed_locations, Some(vec![b.location.clone()]));
    assert_eq!(s.user(a, &id).await.unwrap(), narrowed);
    // `Some(None)` widens back to every location.
    let widened = s.update_user(a, &id, None, Some(None)).await.unwrap();
    assert_eq!(widened.allowed_locations, None);
    assert_eq!(widened.role, Role::Manager);
    // Nothing to change: the user comes back unchanged.
    assert_eq!(s.update_user(a, &id, None, None).await.unwrap(), widened);
    assert_eq!(widened.password_hash, "$argon2id$v=19$new");

    // Another account's location cannot be granted, and nothing is written.
    assert!(is_not_found(
        s.update_user(
            a,
            &id,
            Some(Role::Admin),
            Some(Some(vec![other.location.clone()]))
        )
        .await
    ));
    assert_eq!(s.user(a, &id).await.unwrap(), widened);

    // Tenancy: another account's user and an unknown user are NotFound, and untouched.
    let theirs = UserId::try_from("uf-1").unwrap();
    s.create_user(&other.account, &user("uf-1", "o@bar.example", Role::Staff))
        .await
        .unwrap();
    assert!(is_not_found(
        s.set_user_password(a, &theirs, "$argon2id$stolen").await
    ));
    assert!(is_not_found(
        s.update_user(a, &theirs, Some(Role::Admin), None).await
    ));
    let untouched = s.user(&other.account, &theirs).await.unwrap();
    assert_eq!(untouched.role, Role::Staff);
    assert_ne!(untouched.password_hash, "$argon2id$stolen");
    let nobody = UserId::try_from("nobody").unwrap();
    assert!(is_not_found(s.set_user_password(a, &nobody, "x").await));
    assert!(is_not_found(
        s.update_user(a, &nobody, Some(Role::Staff), None).await
    ));
}

async fn beer_edits(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "be").await;
    let other = bar(s, "bf").await;
    let a = &b.account;
    s.create_library_beer(&beer("lib-1", None, "Pils", "Big", "Lager"))
        .await
        .unwrap();

    let mut edited = s.beer(a, &b.beer).await.unwrap();
    edited.name = "Smoked Porter".into();
    edited.brewery = "Back Room".into();
    edited.style = "Porter".into();
    edited.abv = 6.5;
    edited.specific_gravity = 1.012;
    // The location cannot move: whatever the caller sends, the stored one stays.
    edited.location_id = Some(other.location.clone());
    let saved = s.update_beer(a, &edited).await.unwrap();
    assert_eq!(saved.location_id, Some(b.location.clone()));
    assert_eq!(saved.name, "Smoked Porter");
    assert_eq!(saved.abv, 6.5);
    assert_eq!(saved.specific_gravity, 1.012);
    assert_eq!(s.beer(a, &b.beer).await.unwrap(), saved);
    // The search text follows the new fields.
    let found = s
        .search_beers(a, Some(&b.location), "smoked", 10)
        .await
        .unwrap();
    assert_eq!(found, vec![saved.clone()]);

    // A library beer is shared by every account: Conflict, and it is unchanged.
    let mut lib = s.beer(a, &beer_id("lib-1")).await.unwrap();
    lib.name = "Mine now".into();
    assert!(is_conflict(s.update_beer(a, &lib).await));
    assert_eq!(s.beer(a, &beer_id("lib-1")).await.unwrap().name, "Pils");

    // Tenancy: another account's custom beer is NotFound and unchanged; so is an unknown id.
    let mut theirs = s.beer(&other.account, &other.beer).await.unwrap();
    let before = theirs.clone();
    theirs.name = "Hijacked".into();
    assert!(is_not_found(s.update_beer(a, &theirs).await));
    assert_eq!(s.beer(&other.account, &other.beer).await.unwrap(), before);
    assert!(is_not_found(
        s.update_beer(a, &beer("nope", Some(b.location.as_str()), "N", "N", "N"))
            .await
    ));

    // Non-finite numbers are refused before anything is written.
    let mut bad = saved.clone();
    bad.abv = f64::NAN;
    assert!(matches!(
        s.update_beer(a, &bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.beer(a, &b.beer).await.unwrap(), saved);
}

async fn outbox(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "w").await;
    let other = bar(s, "x").await;
    let a = &b.account;
    let ch = RecordId::try_from("ch-mail").unwrap();
    s.create_channel(
        a,
        &NewChannel {
            id: ch.clone(),
            location_id: Some(b.location.clone()),
            kind: ChannelKind::Email,
            target: "manager@bar.example".into(),
            settings: json!({"digest": true}),
            enabled: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.channels(a).await.unwrap()[0].kind, ChannelKind::Email);
    assert!(s.channels(&other.account).await.unwrap().is_empty());
    let note = |key: &str, at: Millis| NewNotification {
        channel_id: ch.clone(),
        idempotency_key: key.into(),
        payload: json!({"alert": "low_keg"}),
        next_attempt_at: at,
        created_at: at,
    };
    let first = s
        .enqueue_notification(a, &note("alert:1:fired", T0))
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = s
        .enqueue_notification(a, &note("alert:1:fired", T0 + MIN))
        .await
        .unwrap();
    assert_eq!(
        again,
        scalesense_store::Enqueued {
            id: first.id,
            duplicate: true
        }
    );
    assert!(is_not_found(
        s.enqueue_notification(&other.account, &note("k", T0)).await
    ));
    let second = s
        .enqueue_notification(a, &note("alert:2:fired", T0 + MIN))
        .await
        .unwrap();
    assert_eq!(h.count("outbox").await, 2);

    assert_eq!(s.due_notifications(T0, 10).await.unwrap().len(), 1);
    s.mark_notification_failed(first.id, "SMTP 451", Some(T0 + 10 * MIN))
        .await
        .unwrap();
    let due = s.due_notifications(T0 + 2 * MIN, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![second.id]
    );
    s.mark_notification_sent(second.id, T0 + 2 * MIN)
        .await
        .unwrap();
    assert!(is_not_found(
        s.mark_notification_sent(second.id, T0 + 2 * MIN).await
    ));
    s.mark_notification_failed(first.id, "SMTP 550", None)
        .await
        .unwrap();
    assert!(s.due_notifications(T0 + DAY, 10).await.unwrap().is_empty());
    let items = s.outbox(a, 10).await.unwrap();
    let dead = items.iter().find(|o| o.id == first.id).unwrap();
    assert_eq!(dead.status, OutboxStatus::Dead);
    assert_eq!(dead.attempts, 2);
    assert_eq!(dead.last_error.as_deref(), Some("SMTP 550"));
    let sent = items.iter().find(|o| o.id == second.id).unwrap();
    assert_eq!(
        (sent.status, sent.sent_at),
        (OutboxStatus::Sent, Some(T0 + 2 * MIN))
    );
    assert!(s.outbox(&other.account, 10).await.unwrap().is_empty());
}

async fn channel_edits(h: &Harness) {
    use scalesense_store::{Channel, ChannelUpdate, OutboxItem};

    let s = &*h.store;
    let b = bar(s, "ce").await;
    let other = bar(s, "cf").await;
    let a = &b.account;
    let second_location = loc("loc-ce2");
    s.create_location(a, &second_location, &fields("ce2"), T0)
        .await
        .unwrap();
    let new_channel = |id: &str, location: Option<&LocationId>| NewChannel {
        id: RecordId::try_from(id).unwrap(),
        location_id: location.cloned(),
        kind: ChannelKind::Webhook,
        target: "https://hooks.example/in".into(),
        settings: json!({"secret": "s3cret"}),
        enabled: true,
    };
    let here = s
        .create_channel(a, &new_channel("ch-here", Some(&b.location)))
        .await
        .unwrap();
    let everywhere = s
        .create_channel(a, &new_channel("ch-all", None))
        .await
        .unwrap();
    let elsewhere = s
        .create_channel(a, &new_channel("ch-there", Some(&second_location)))
        .await
        .unwrap();
    assert_eq!(s.channel(a, &here.id).await.unwrap(), here);
    assert!(is_not_found(s.channel(&other.account, &here.id).await));

    let update = ChannelUpdate {
        target: "https://hooks.example/v2".into(),
        settings: json!({"secret": "s3cret", "severities": ["critical"]}),
        enabled: false,
    };
    assert!(is_not_found(
        s.update_channel(&other.account, &here.id, &update).await
    ));
    let updated = s.update_channel(a, &here.id, &update).await.unwrap();
    assert_eq!(
        (updated.target.as_str(), updated.enabled, &updated.settings),
        ("https://hooks.example/v2", false, &update.settings)
    );
    assert_eq!(updated.location_id.as_ref(), Some(&b.location));
    assert_eq!(updated.kind, ChannelKind::Webhook);
    assert_eq!(s.channel(a, &here.id).await.unwrap(), updated);

    let note = |channel: &Channel, key: &str, at: Millis| NewNotification {
        channel_id: channel.id.clone(),
        idempotency_key: key.into(),
        payload: json!({"test": true}),
        next_attempt_at: at,
        created_at: at,
    };
    let on_here = s
        .enqueue_notification(a, &note(&here, "k-here", T0))
        .await
        .unwrap();
    let on_all = s
        .enqueue_notification(a, &note(&everywhere, "k-all", T0 + MIN))
        .await
        .unwrap();
    let on_there = s
        .enqueue_notification(a, &note(&elsewhere, "k-there", T0 + 2 * MIN))
        .await
        .unwrap();
    let ids = |items: Vec<OutboxItem>| items.iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.location_outbox(a, &b.location, 10).await.unwrap()),
        vec![on_all.id, on_here.id],
        "the location's and the account-wide channels' items, newest first"
    );
    assert_eq!(
        ids(s.location_outbox(a, &second_location, 10).await.unwrap()),
        vec![on_there.id, on_all.id]
    );
    assert_eq!(
        ids(s.location_outbox(a, &b.location, 1).await.unwrap()),
        vec![on_all.id]
    );
    assert!(
        s.location_outbox(&other.account, &b.location, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(is_not_found(
        s.delete_channel(&other.account, &here.id).await
    ));
    assert_eq!(h.count("outbox").await, 3);
    let removed = s.delete_channel(a, &here.id).await.unwrap();
    assert_eq!(removed, updated);
    assert!(is_not_found(s.channel(a, &here.id).await));
    assert!(is_not_found(s.delete_channel(a, &here.id).await));
    assert_eq!(h.count("outbox").await, 2, "its outbox rows went with it");
    assert_eq!(
        ids(s.location_outbox(a, &b.location, 10).await.unwrap()),
        vec![on_all.id]
    );
    let left: Vec<String> = s
        .channels(a)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(left, ["ch-all", "ch-there"]);
}

async fn dead_letters(h: &Harness) {
    let s = &*h.store;
    let big = vec![b'x'; DEAD_LETTER_PAYLOAD_CAP * 3];
    let first = s
        .record_dead_letter(
            "keg/readings/SCALE-1",
            b"{\"v\":9}",
            "unsupported contract version 9",
            T0,
        )
        .await
        .unwrap();
    let second = s
        .record_dead_letter("keg/readings/SCALE-2", &big, "payload too large", T0 + 1)
        .await
        .unwrap();
    assert!(second > first);
    let letters = s.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].payload.len(), DEAD_LETTER_PAYLOAD_CAP);
    assert_eq!(letters[0].payload_len, (DEAD_LETTER_PAYLOAD_CAP * 3) as i64);
    assert_eq!(letters[1].payload, b"{\"v\":9}");
    assert_eq!(letters[1].reason, "unsupported contract version 9");
    assert_eq!(s.dead_letters(1).await.unwrap().len(), 1);
}

fn audit(action: &str, at: Millis) -> NewAuditEntry {
    NewAuditEntry {
        actor: "admin@bar".into(),
        action: action.into(),
        entity: "loc-a#TAP#01".into(),
        before: None,
        after: Some(json!({"name": "Tap 1"})),
        at,
    }
}

async fn audit_log(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "y").await;
    let other = bar(s, "z").await;
    s.record_audit(&b.account, &audit("created tap", T0))
        .await
        .unwrap();
    let mut renamed = audit("renamed tap", T0 + MIN);
    renamed.before = Some(json!({"name": "Tap 1"}));
    renamed.after = Some(json!({"name": "Guinness"}));
    s.record_audit(&b.account, &renamed).await.unwrap();
    s.record_audit(&other.account, &audit("created tap", T0))
        .await
        .unwrap();
    let log = s.audit_log(&b.account, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        vec!["renamed tap", "created tap"]
    );
    assert_eq!(log[0].before, Some(json!({"name": "Tap 1"})));
    assert_eq!(log[1].before, None);
    assert!(is_not_found(
        s.record_audit(&acct("nobody"), &audit("x", T0)).await
    ));
    assert_eq!(s.audit_log(&other.account, 10).await.unwrap().len(), 1);
}

// --- failure tests ------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_corrupt_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).await.unwrap();
    bar(&store, "c").await;
    store.close().await;
    // Garbage over the 100-byte header, where SQLite keeps its magic string and page size.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..100].copy_from_slice(&[0xA5; 100]);
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    let StoreError::Corrupt(message) = &err else {
        panic!("expected Corrupt, got {err:?}")
    };
    assert!(message.contains("not a database"), "{message}");
    assert!(err.to_string().starts_with("database corrupt:"), "{err}");
}

#[tokio::test]
async fn sqlite_locked_file_is_unavailable_and_writes_nothing() {
    let h = sqlite_with(&SqliteSettings {
        busy_timeout: Duration::from_millis(200),
        max_connections: 2,
        ..SqliteSettings::default()
    })
    .await;
    let s = &*h.store;
    let b = bar(s, "lock").await;
    let Raw::Sqlite(pool) = &h.raw else {
        unreachable!()
    };
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let batch: Vec<IngestReading> = (0..10)
        .map(|i| reading(&b.device, i, T0 + i * MIN, 60.0, 80.0))
        .collect();
    let err = s.ingest_batch(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(matches!(
        s.kick_keg(&b.account, &b.keg, T0).await,
        Err(StoreError::Unavailable(_))
    ));
    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
    drop(holder);
    assert_eq!(h.count("readings").await, 0);
    assert_eq!(h.count("rollups").await, 0);
    assert_eq!(
        s.tap_state(&b.account, &b.tap1).await.unwrap().updated_at,
        None
    );
    assert_eq!(
        s.keg(&b.account, &b.keg).await.unwrap().state,
        KegState::Tapped
    );
    // Once the lock is gone the same batch goes through.
    assert_eq!(s.ingest_batch(&batch).await.unwrap().stored(), 10);
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    let options = PgConnectOptions::from_str("postgres://nobody@127.0.0.1:1/none").unwrap();
    let err = PgStore::connect_with(options, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_connection_lost_mid_batch_is_unavailable_and_writes_nothing() {
    let Some(h) = pg().await else { return };
    let s = Arc::clone(&h.store);
    let b = bar(&*s, "gone").await;
    let Raw::Pg(raw) = &h.raw else { unreachable!() };
    let schema: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(raw)
        .await
        .unwrap();
    let batch: Vec<IngestReading> = (0..40_000)
        .map(|i| reading(&b.device, i, T0 + i * 1000, 60.0 - i as f64 * 1e-4, 80.0))
        .collect();
    let ingest = tokio::spawn(async move { s.ingest_batch(&batch).await });
    // Terminate the store's backends as soon as one is inside the batch's transaction.
    let mut killed = 0_i64;
    for _ in 0..5_000 {
        killed = sqlx::query_scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid() \
             AND state IN ('active', 'idle in transaction') AND xact_start IS NOT NULL \
             AND query NOT LIKE '%pg_terminate_backend%'",
        )
        .bind(&schema)
        .fetch_one(raw)
        .await
        .unwrap();
        if killed > 0 || ingest.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let result = ingest.await.unwrap();
    assert!(
        killed > 0,
        "the batch finished before it could be interrupted: {result:?}"
    );
    let err = result.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(h.count("readings").await, 0, "no partial write");
    assert_eq!(h.count("rollups").await, 0);
    assert_eq!(
        h.store
            .tap_state(&b.account, &b.tap1)
            .await
            .unwrap()
            .updated_at,
        None,
        "the pool reconnects and the hot row is untouched"
    );
}

/// Issue 9's store queries: battery per tap and hour, export rows and their purge, the daily
/// export's once-per-local-day claim, and the operator's list of every location.
async fn reports_queries(h: &Harness) {
    let s = &*h.store;
    let b = bar(s, "r").await;
    let other = bar(s, "r2").await;
    let a = &b.account;
    let mut r1 = reading(&b.device, 1, T0 + MIN, 60.0, 80.0);
    r1.battery_pct = Some(90.0);
    let mut r2 = reading(&b.device, 2, T0 + 2 * MIN, 59.0, 79.0);
    r2.battery_pct = Some(80.0);
    let mut r3 = reading(&b.device, 3, T0 + 61 * MIN, 58.0, 78.0);
    r3.battery_pct = Some(70.0);
    let mut r4 = reading(&b.device, 4, T0 + 62 * MIN, 58.0, 78.0);
    r4.battery_pct = None;
    s.ingest_batch(&[r1, r2, r3, r4]).await.unwrap();
    let battery = s
        .battery_by_hour(a, &b.location, T0, T0 + DAY)
        .await
        .unwrap();
    assert_eq!(battery.len(), 2, "{battery:?}");
    assert_eq!(battery[0].tap_id, b.tap1);
    assert_eq!(battery[0].hour_start, T0);
    assert!((battery[0].battery_pct - 85.0).abs() < 1e-9);
    assert_eq!(battery[1].hour_start, T0 + BUCKET_1_HOUR);
    assert!(
        (battery[1].battery_pct - 70.0).abs() < 1e-9,
        "readings without a battery do not count"
    );
    assert!(is_not_found(
        s.battery_by_hour(&other.account, &b.location, T0, T0 + DAY)
            .await
    ));
    assert!(
        s.battery_by_hour(a, &b.location, T0 + DAY, T0 + 2 * DAY)
            .await
            .unwrap()
            .is_empty()
    );

    let export = |id: &str, at: Millis| scalesense_store::ExportRecord {
        id: id.into(),
        account_id: a.clone(),
        location_id: b.location.clone(),
        format: "csv".into(),
        file_name: format!("{id}.csv"),
        bytes: 123,
        created_by: "user:u1".into(),
        created_at: at,
    };
    let stored = s.record_export(a, &export("ex-1", T0)).await.unwrap();
    assert_eq!(stored, export("ex-1", T0));
    s.record_export(a, &export("ex-2", T0 + DAY)).await.unwrap();
    assert!(is_conflict(s.record_export(a, &export("ex-1", T0)).await));
    assert!(
        is_not_found(s.record_export(&other.account, &export("ex-3", T0)).await),
        "another account's location"
    );
    let purged = s.purge_exports(T0 + DAY).await.unwrap();
    assert_eq!(purged, vec![export("ex-1", T0)]);
    assert!(s.purge_exports(T0 + DAY).await.unwrap().is_empty());
    assert_eq!(h.count("exports").await, 1);

    assert!(
        s.claim_daily_export(a, &b.location, "2026-03-18", T0)
            .await
            .unwrap()
    );
    assert!(
        !s.claim_daily_export(a, &b.location, "2026-03-18", T0 + MIN)
            .await
            .unwrap()
    );
    assert!(
        s.claim_daily_export(a, &b.location, "2026-03-19", T0 + DAY)
            .await
            .unwrap()
    );
    assert!(
        s.claim_daily_export(&other.account, &other.location, "2026-03-18", T0)
            .await
            .unwrap(),
        "claims are per location"
    );
    assert!(is_not_found(
        s.claim_daily_export(&other.account, &b.location, "2026-03-20", T0)
            .await
    ));
    assert_eq!(h.count("daily_export_runs").await, 3);

    let all = s.all_locations().await.unwrap();
    let ids: Vec<&str> = all.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, vec!["loc-r", "loc-r2"]);
}

#[tokio::test]
async fn connect_picks_the_backend_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let plain = scalesense_store::connect(dir.path().join("a.db").to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(plain.backend(), Backend::Sqlite);
    let url = format!("sqlite://{}", dir.path().join("b.db").display());
    let prefixed = scalesense_store::connect(&url).await.unwrap();
    assert_eq!(prefixed.backend(), Backend::Sqlite);
    assert!(dir.path().join("b.db").exists(), "created if missing");
    assert!(matches!(
        scalesense_store::connect("mysql://x").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        scalesense_store::connect("postgres://nobody@127.0.0.1:1/none").await,
        Err(StoreError::Unavailable(_))
    ));
}
