// The `Store` implementation shared by both backends. This file is not a module: `sqlite.rs`
// and `postgres.rs` each `include!` it after defining `Db` (the sqlx database), `StoreImpl` (the
// store type, with a `pool` field), `BEGIN_WRITE`, and the dialect functions of the ingest path
// (`lock_taps`, `device_contexts`, `insert_readings`, `upsert_rollups`, `update_tap_states`,
// `update_devices`), which use each backend's bulk form. The SQL here is written to run
// unchanged on SQLite and PostgreSQL: `$N` placeholders, `ON CONFLICT`, `RETURNING`, `CASE`
// instead of `GREATEST`/`MAX(a, b)`, explicit `CAST(… AS BIGINT | DOUBLE PRECISION)` wherever
// PostgreSQL would otherwise return `numeric`. sqlx cannot be generic over the database without
// a wall of higher-ranked bounds, so the source is compiled once per backend instead.

use std::collections::HashMap;

use async_trait::async_trait;
use scalesense_proto::{CommandId, DeviceId, LocationId, TapId};
use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::ids::{AccountId, BeerId, KegId, RecordId, Series, UserId};
use crate::ingest::{self, Candidate, DeviceUpdate, RollupDelta, TapUpdate};
use crate::model::{
    Account, Alert, AlertChange, AlertHistoryEntry, AlertKey, AlertState, ApiToken, AuditEntry,
    BUCKET_1_DAY, BUCKET_1_HOUR, BUCKET_5_MIN, Beer, BeerKegWeight, Calibration, Channel,
    ChannelKind, Command, CommandState, DeadLetter, Device, DeviceStatus, DeviceStatusUpdate,
    Enqueued, Grace, History, HistoryPoint, HistorySource, HourlyPour, IngestOutcome,
    IngestReading, Keg, KegReportRow, KegState, Location, LocationFields, MAX_HISTORY_POINTS,
    Millis, NewApiToken, NewAuditEntry, NewCalibration, NewChannel, NewCommand, NewDevice, NewKeg,
    NewNotification, NewSession, NewTare, NewUser, OutboxItem, OutboxStatus, PurgeStats,
    ROLLUP_BUCKETS, ROLLUP_RETENTION, Reading, ReadingOutcome, Role, Rollup, Session, Severity,
    StoredReading, Tap, TapState, TapView, TareKind, TareOutcome, TareRecord, Telemetry, Units,
    User, WeightSource,
};
use crate::sql;
use crate::store::{Backend, Store};

type DbRow = <Db as sqlx::Database>::Row;

macro_rules! location_cols {
    () => {
        "l.id, l.account_id, l.name, l.address, l.time_zone, l.units, l.settings, l.created_at"
    };
}

macro_rules! tap_select {
    () => {
        "SELECT t.id, t.location_id, t.number, t.name, t.beer_id, d.id AS device_id, \
         k.id AS keg_id \
         FROM taps t \
         JOIN locations l ON l.id = t.location_id \
         LEFT JOIN devices d ON d.tap_id = t.id \
         LEFT JOIN kegs k ON k.tap_id = t.id AND k.state = 'tapped' "
    };
}

macro_rules! tap_state_cols {
    () => {
        "s.tap_id, s.series, s.level_pct, s.volume_l, s.weight_kg, s.updated_at, s.tare_status, \
         s.maintenance, s.last_boot, s.last_seq"
    };
}

macro_rules! device_cols {
    () => {
        "d.id, d.account_id, d.location_id, d.tap_id, d.fw_version, d.status, d.last_seen, \
         d.maintenance, d.created_at"
    };
}

macro_rules! telemetry_cols {
    () => {
        "m.device_id, m.battery_v, m.battery_pct, m.rssi, m.updated_at, m.tare_empty_raw, \
         m.tare_full_kg, m.tare_at"
    };
}

macro_rules! calibration_cols {
    () => {
        "c.id, c.device_id, c.scale_factor, c.zero_offset, c.method, c.known_weight_kg, \
         c.drift_pct, c.by_whom, c.at"
    };
}

macro_rules! beer_cols {
    () => {
        "b.id, b.location_id, b.name, b.brewery, b.style, b.abv, b.specific_gravity"
    };
}

macro_rules! keg_cols {
    () => {
        "k.id, k.location_id, k.beer_id, k.keg_type, k.full_kg, k.empty_kg, k.specific_gravity, \
         k.tap_id, k.state, k.created_at, k.tapped_at, k.kicked_at, k.removed_at"
    };
}

macro_rules! tare_cols {
    () => {
        "r.id, r.keg_id, r.device_id, r.kind, r.raw, r.weight_kg, r.by_whom, r.at"
    };
}

macro_rules! reading_cols {
    () => {
        "r.device_id, r.boot, r.seq, r.series, r.tap_id, r.keg_id, r.ts, r.weight_kg, \
         r.level_pct, r.volume_l, r.battery_v, r.battery_pct, r.rssi, r.stable"
    };
}

macro_rules! rollup_cols {
    () => {
        "r.series, r.bucket_ms, r.bucket_start, r.n, r.level_sum, r.level_min, r.level_max, \
         r.battery_sum, r.battery_n, r.first_ts, r.first_volume, r.last_ts, r.last_volume, \
         r.poured_l"
    };
}

macro_rules! alert_cols {
    () => {
        "a.location_id, a.kind, a.entity, a.severity, a.state, a.fired_at, a.updated_at, \
         a.acknowledged_by, a.acknowledged_at, a.context"
    };
}

macro_rules! command_cols {
    () => {
        "c.id, c.device_id, c.name, c.params, c.state, c.issued_by, c.issued_at, c.expires_at, \
         c.delivered_at, c.answered_at, c.result"
    };
}

macro_rules! user_cols {
    () => {
        "u.id, u.account_id, u.email, u.password_hash, u.role, u.allowed_locations, u.created_at"
    };
}

macro_rules! token_cols {
    () => {
        "t.id, t.account_id, t.name, t.role, t.created_at, t.revoked_at, t.last_used_at"
    };
}

macro_rules! channel_cols {
    () => {
        "c.id, c.account_id, c.location_id, c.kind, c.target, c.settings, c.enabled"
    };
}

macro_rules! outbox_cols {
    () => {
        "o.id, o.account_id, o.channel_id, o.idempotency_key, o.payload, o.status, o.attempts, \
         o.next_attempt_at, o.last_error, o.created_at, o.sent_at"
    };
}

macro_rules! audit_cols {
    () => {
        "a.id, a.account_id, a.actor, a.action, a.entity, a.before_json, a.after_json, a.at"
    };
}

/// Resolves devices to account, tap, tapped keg and the tap's hot state; dialects add the
/// `WHERE` on the device ids.
macro_rules! device_context_select {
    () => {
        "SELECT d.id AS device_id, d.account_id, t.id AS tap_id, t.location_id, \
         k.id AS keg_id, k.empty_kg, k.specific_gravity, s.series AS state_series, \
         s.updated_at AS state_updated_at, s.ref_volume_l AS state_ref_volume_l \
         FROM devices d \
         LEFT JOIN taps t ON t.id = d.tap_id \
         LEFT JOIN kegs k ON k.tap_id = t.id AND k.state = 'tapped' \
         LEFT JOIN tap_state s ON s.tap_id = t.id"
    };
}

macro_rules! rollup_insert {
    () => {
        "INSERT INTO rollups (series, bucket_ms, bucket_start, location_id, tap_id, n, \
         level_sum, level_min, level_max, battery_sum, battery_n, first_ts, first_volume, \
         last_ts, last_volume, poured_l) "
    };
}

/// How an incoming rollup delta merges into a stored bucket; the same rule as
/// `RollupDelta::merge`.
macro_rules! rollup_merge {
    () => {
        " ON CONFLICT (series, bucket_ms, bucket_start) DO UPDATE SET \
         n = rollups.n + excluded.n, \
         level_sum = rollups.level_sum + excluded.level_sum, \
         level_min = CASE WHEN excluded.level_min < rollups.level_min \
                     THEN excluded.level_min ELSE rollups.level_min END, \
         level_max = CASE WHEN excluded.level_max > rollups.level_max \
                     THEN excluded.level_max ELSE rollups.level_max END, \
         battery_sum = rollups.battery_sum + excluded.battery_sum, \
         battery_n = rollups.battery_n + excluded.battery_n, \
         first_volume = CASE WHEN excluded.first_ts < rollups.first_ts \
                        THEN excluded.first_volume ELSE rollups.first_volume END, \
         first_ts = CASE WHEN excluded.first_ts < rollups.first_ts \
                    THEN excluded.first_ts ELSE rollups.first_ts END, \
         last_volume = CASE WHEN excluded.last_ts >= rollups.last_ts \
                       THEN excluded.last_volume ELSE rollups.last_volume END, \
         last_ts = CASE WHEN excluded.last_ts >= rollups.last_ts \
                   THEN excluded.last_ts ELSE rollups.last_ts END, \
         poured_l = rollups.poured_l + excluded.poured_l"
    };
}

fn u16_from(column: &'static str, v: i64) -> Result<u16> {
    u16::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("stored {column} {v} is out of range")))
}

fn account_from(row: &DbRow) -> Result<Account> {
    Ok(Account {
        id: sql::parse("account id", row.try_get::<&str, _>("id")?)?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn location_from(row: &DbRow) -> Result<Location> {
    Ok(Location {
        id: sql::parse("location id", row.try_get::<&str, _>("id")?)?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        name: row.try_get("name")?,
        address: row.try_get("address")?,
        time_zone: row.try_get("time_zone")?,
        units: Units::parse(row.try_get("units")?)?,
        settings: sql::json(row.try_get("settings")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn tap_from(row: &DbRow) -> Result<Tap> {
    Ok(Tap {
        id: sql::parse("tap id", row.try_get::<&str, _>("id")?)?,
        location_id: sql::parse("location id", row.try_get::<&str, _>("location_id")?)?,
        number: u16_from("tap number", row.try_get("number")?)?,
        name: row.try_get("name")?,
        beer_id: sql::parse_opt("beer id", row.try_get("beer_id")?)?,
        device_id: sql::parse_opt("device id", row.try_get("device_id")?)?,
        keg_id: sql::parse_opt("keg id", row.try_get("keg_id")?)?,
    })
}

fn tap_state_from(row: &DbRow) -> Result<TapState> {
    let series: Option<&str> = row.try_get("series")?;
    Ok(TapState {
        tap_id: sql::parse("tap id", row.try_get::<&str, _>("tap_id")?)?,
        series: series
            .map(|s| {
                Series::parse(s)
                    .ok_or_else(|| StoreError::Corrupt(format!("stored series {s:?} is invalid")))
            })
            .transpose()?,
        level_pct: row.try_get("level_pct")?,
        volume_l: row.try_get("volume_l")?,
        weight_kg: row.try_get("weight_kg")?,
        updated_at: row.try_get("updated_at")?,
        tare_status: row.try_get("tare_status")?,
        maintenance: row.try_get("maintenance")?,
        last_boot: row.try_get("last_boot")?,
        last_seq: row.try_get("last_seq")?,
    })
}

fn series_from(value: &str) -> Result<Series> {
    Series::parse(value)
        .ok_or_else(|| StoreError::Corrupt(format!("stored series {value:?} is invalid")))
}

fn device_from(row: &DbRow) -> Result<Device> {
    Ok(Device {
        id: sql::parse("device id", row.try_get::<&str, _>("id")?)?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        location_id: sql::parse_opt("location id", row.try_get("location_id")?)?,
        tap_id: sql::parse_opt("tap id", row.try_get("tap_id")?)?,
        fw_version: row.try_get("fw_version")?,
        status: DeviceStatus::parse(row.try_get("status")?)?,
        last_seen: row.try_get("last_seen")?,
        maintenance: row.try_get("maintenance")?,
        created_at: row.try_get("created_at")?,
    })
}

fn telemetry_from(row: &DbRow) -> Result<Telemetry> {
    Ok(Telemetry {
        device_id: sql::parse("device id", row.try_get::<&str, _>("device_id")?)?,
        battery_v: row.try_get("battery_v")?,
        battery_pct: row.try_get("battery_pct")?,
        rssi: row.try_get("rssi")?,
        updated_at: row.try_get("updated_at")?,
        tare_empty_raw: row.try_get("tare_empty_raw")?,
        tare_full_kg: row.try_get("tare_full_kg")?,
        tare_at: row.try_get("tare_at")?,
    })
}

fn calibration_from(row: &DbRow) -> Result<Calibration> {
    Ok(Calibration {
        id: row.try_get("id")?,
        device_id: sql::parse("device id", row.try_get::<&str, _>("device_id")?)?,
        scale_factor: row.try_get("scale_factor")?,
        zero_offset: row.try_get("zero_offset")?,
        method: row.try_get("method")?,
        known_weight_kg: row.try_get("known_weight_kg")?,
        drift_pct: row.try_get("drift_pct")?,
        by: row.try_get("by_whom")?,
        at: row.try_get("at")?,
    })
}

fn beer_from(row: &DbRow) -> Result<Beer> {
    Ok(Beer {
        id: sql::parse("beer id", row.try_get::<&str, _>("id")?)?,
        location_id: sql::parse_opt("location id", row.try_get("location_id")?)?,
        name: row.try_get("name")?,
        brewery: row.try_get("brewery")?,
        style: row.try_get("style")?,
        abv: row.try_get("abv")?,
        specific_gravity: row.try_get("specific_gravity")?,
    })
}

fn weight_from(beer_id: &BeerId, row: &DbRow) -> Result<BeerKegWeight> {
    let measured_at: Option<Millis> = row.try_get("measured_at")?;
    let measured_count: i64 = row.try_get("measured_count")?;
    let source = match (measured_at, measured_count) {
        (None, _) => WeightSource::Default,
        (Some(_), n) if n > 1 => WeightSource::Calculated,
        (Some(_), _) => WeightSource::Set,
    };
    Ok(BeerKegWeight {
        beer_id: beer_id.clone(),
        keg_type: row.try_get("keg_type")?,
        full_kg: row.try_get("full_kg")?,
        empty_kg: row.try_get("empty_kg")?,
        measured_at,
        measured_count,
        source,
    })
}

fn keg_from(row: &DbRow) -> Result<Keg> {
    Ok(Keg {
        id: sql::parse("keg id", row.try_get::<&str, _>("id")?)?,
        location_id: sql::parse("location id", row.try_get::<&str, _>("location_id")?)?,
        beer_id: sql::parse("beer id", row.try_get::<&str, _>("beer_id")?)?,
        keg_type: row.try_get("keg_type")?,
        full_kg: row.try_get("full_kg")?,
        empty_kg: row.try_get("empty_kg")?,
        specific_gravity: row.try_get("specific_gravity")?,
        tap_id: sql::parse_opt("tap id", row.try_get("tap_id")?)?,
        state: KegState::parse(row.try_get("state")?)?,
        created_at: row.try_get("created_at")?,
        tapped_at: row.try_get("tapped_at")?,
        kicked_at: row.try_get("kicked_at")?,
        removed_at: row.try_get("removed_at")?,
    })
}

fn tare_from(row: &DbRow) -> Result<TareRecord> {
    Ok(TareRecord {
        id: row.try_get("id")?,
        keg_id: sql::parse("keg id", row.try_get::<&str, _>("keg_id")?)?,
        device_id: sql::parse("device id", row.try_get::<&str, _>("device_id")?)?,
        kind: TareKind::parse(row.try_get("kind")?)?,
        raw: row.try_get("raw")?,
        weight_kg: row.try_get("weight_kg")?,
        by: row.try_get("by_whom")?,
        at: row.try_get("at")?,
    })
}

fn reading_from(row: &DbRow) -> Result<Reading> {
    Ok(Reading {
        device_id: sql::parse("device id", row.try_get::<&str, _>("device_id")?)?,
        boot: row.try_get("boot")?,
        seq: row.try_get("seq")?,
        series: series_from(row.try_get("series")?)?,
        tap_id: sql::parse("tap id", row.try_get::<&str, _>("tap_id")?)?,
        keg_id: sql::parse_opt("keg id", row.try_get("keg_id")?)?,
        ts: row.try_get("ts")?,
        weight_kg: row.try_get("weight_kg")?,
        level_pct: row.try_get("level_pct")?,
        volume_l: row.try_get("volume_l")?,
        battery_v: row.try_get("battery_v")?,
        battery_pct: row.try_get("battery_pct")?,
        rssi: row.try_get("rssi")?,
        stable: row.try_get("stable")?,
    })
}

fn rollup_from(row: &DbRow) -> Result<Rollup> {
    Ok(Rollup {
        series: series_from(row.try_get("series")?)?,
        bucket_ms: row.try_get("bucket_ms")?,
        bucket_start: row.try_get("bucket_start")?,
        count: row.try_get("n")?,
        level_sum: row.try_get("level_sum")?,
        level_min: row.try_get("level_min")?,
        level_max: row.try_get("level_max")?,
        battery_sum: row.try_get("battery_sum")?,
        battery_count: row.try_get("battery_n")?,
        first_ts: row.try_get("first_ts")?,
        first_volume_l: row.try_get("first_volume")?,
        last_ts: row.try_get("last_ts")?,
        last_volume_l: row.try_get("last_volume")?,
        poured_l: row.try_get("poured_l")?,
    })
}

fn alert_from(row: &DbRow) -> Result<Alert> {
    Ok(Alert {
        location_id: sql::parse("location id", row.try_get::<&str, _>("location_id")?)?,
        kind: row.try_get("kind")?,
        entity: row.try_get("entity")?,
        severity: Severity::parse(row.try_get("severity")?)?,
        state: AlertState::parse(row.try_get("state")?)?,
        fired_at: row.try_get("fired_at")?,
        updated_at: row.try_get("updated_at")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
        context: sql::json(row.try_get("context")?)?,
    })
}

fn alert_history_from(row: &DbRow) -> Result<AlertHistoryEntry> {
    Ok(AlertHistoryEntry {
        id: row.try_get("id")?,
        location_id: sql::parse("location id", row.try_get::<&str, _>("location_id")?)?,
        kind: row.try_get("kind")?,
        entity: row.try_get("entity")?,
        severity: Severity::parse(row.try_get("severity")?)?,
        state: AlertState::parse(row.try_get("state")?)?,
        at: row.try_get("at")?,
        by: row.try_get("by_whom")?,
        context: sql::json(row.try_get("context")?)?,
    })
}

fn grace_from(row: &DbRow) -> Result<Grace> {
    Ok(Grace {
        location_id: sql::parse("location id", row.try_get::<&str, _>("location_id")?)?,
        kind: row.try_get("kind")?,
        entity: row.try_get("entity")?,
        severity: Severity::parse(row.try_get("severity")?)?,
        started_at: row.try_get("started_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn command_from(row: &DbRow) -> Result<Command> {
    Ok(Command {
        id: sql::parse("command id", row.try_get::<&str, _>("id")?)?,
        device_id: sql::parse("device id", row.try_get::<&str, _>("device_id")?)?,
        name: row.try_get("name")?,
        params: sql::json(row.try_get("params")?)?,
        state: CommandState::parse(row.try_get("state")?)?,
        issued_by: row.try_get("issued_by")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        delivered_at: row.try_get("delivered_at")?,
        answered_at: row.try_get("answered_at")?,
        result: sql::json_opt(row.try_get("result")?)?,
    })
}

fn user_from(row: &DbRow) -> Result<User> {
    let allowed: Option<&str> = row.try_get("allowed_locations")?;
    let allowed_locations = match allowed {
        None => None,
        Some(text) => {
            let ids: Vec<String> = serde_json::from_str(text)?;
            Some(
                ids.iter()
                    .map(|id| sql::parse("location id", id))
                    .collect::<Result<Vec<LocationId>>>()?,
            )
        }
    };
    Ok(User {
        id: sql::parse("user id", row.try_get::<&str, _>("id")?)?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(row.try_get("role")?)?,
        allowed_locations,
        created_at: row.try_get("created_at")?,
    })
}

fn session_from(row: &DbRow) -> Result<Session> {
    Ok(Session {
        token_hash: row.try_get("token_hash")?,
        user_id: sql::parse("user id", row.try_get::<&str, _>("user_id")?)?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        role: Role::parse(row.try_get("role")?)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn token_from(row: &DbRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: sql::parse("token id", row.try_get::<&str, _>("id")?)?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        name: row.try_get("name")?,
        role: Role::parse(row.try_get("role")?)?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn channel_from(row: &DbRow) -> Result<Channel> {
    Ok(Channel {
        id: sql::parse("channel id", row.try_get::<&str, _>("id")?)?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        location_id: sql::parse_opt("location id", row.try_get("location_id")?)?,
        kind: ChannelKind::parse(row.try_get("kind")?)?,
        target: row.try_get("target")?,
        settings: sql::json(row.try_get("settings")?)?,
        enabled: row.try_get("enabled")?,
    })
}

fn outbox_from(row: &DbRow) -> Result<OutboxItem> {
    Ok(OutboxItem {
        id: row.try_get("id")?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        channel_id: sql::parse("channel id", row.try_get::<&str, _>("channel_id")?)?,
        idempotency_key: row.try_get("idempotency_key")?,
        payload: sql::json(row.try_get("payload")?)?,
        status: OutboxStatus::parse(row.try_get("status")?)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

fn audit_from(row: &DbRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        entity: row.try_get("entity")?,
        before: sql::json_opt(row.try_get("before_json")?)?,
        after: sql::json_opt(row.try_get("after_json")?)?,
        at: row.try_get("at")?,
    })
}

/// Maps a unique violation to a conflict that says what collided.
fn conflict_as(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match StoreError::from(err) {
        StoreError::Conflict { .. } => StoreError::conflict(what()),
        other => other,
    }
}

fn keg_state_conflict(keg: &Keg, wanted: &str) -> StoreError {
    StoreError::conflict(format!(
        "keg {} is {}, it cannot be {wanted}",
        keg.id,
        keg.state.as_str()
    ))
}

impl StoreImpl {
    /// Starts a write transaction. Lock order on PostgreSQL, kept by every method that writes
    /// more than one of them: `tap_state` before `devices` before `telemetry` (the ingest path's
    /// order), so concurrent writers wait for each other instead of deadlocking.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(self.pool.begin_with(BEGIN_WRITE).await?)
    }

    async fn fetch_keg(
        conn: &mut <Db as sqlx::Database>::Connection,
        account: &AccountId,
        id: &KegId,
    ) -> Result<Keg> {
        let row = sqlx::query(concat!(
            "SELECT ",
            keg_cols!(),
            " FROM kegs k JOIN locations l ON l.id = k.location_id \
             WHERE k.id = $1 AND l.account_id = $2"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("keg", id))?;
        keg_from(&row)
    }

    async fn fetch_command(
        conn: &mut <Db as sqlx::Database>::Connection,
        device: &DeviceId,
        id: &CommandId,
    ) -> Result<Command> {
        let row = sqlx::query(concat!(
            "SELECT ",
            command_cols!(),
            " FROM commands c WHERE c.id = $1 AND c.device_id = $2"
        ))
        .bind(id.as_str())
        .bind(device.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("command", id))?;
        command_from(&row)
    }

    async fn fetch_alert(
        conn: &mut <Db as sqlx::Database>::Connection,
        account: &AccountId,
        key: &AlertKey,
    ) -> Result<Option<Alert>> {
        sqlx::query(concat!(
            "SELECT ",
            alert_cols!(),
            " FROM alerts_active a JOIN locations l ON l.id = a.location_id \
             WHERE a.location_id = $1 AND a.kind = $2 AND a.entity = $3 AND l.account_id = $4"
        ))
        .bind(key.location_id.as_str())
        .bind(&key.kind)
        .bind(&key.entity)
        .bind(account.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(alert_from)
        .transpose()
    }

    async fn append_alert_history(
        conn: &mut <Db as sqlx::Database>::Connection,
        alert: &Alert,
        at: Millis,
        by: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO alert_history \
             (location_id, kind, entity, severity, state, at, by_whom, context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(alert.location_id.as_str())
        .bind(&alert.kind)
        .bind(&alert.entity)
        .bind(alert.severity.as_str())
        .bind(alert.state.as_str())
        .bind(at)
        .bind(by)
        .bind(sql::json_text(&alert.context))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn location_in_account(
        conn: &mut <Db as sqlx::Database>::Connection,
        account: &AccountId,
        location: &LocationId,
    ) -> Result<()> {
        sqlx::query("SELECT id FROM locations WHERE id = $1 AND account_id = $2")
            .bind(location.as_str())
            .bind(account.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .map(|_| ())
            .ok_or_else(|| StoreError::not_found("location", location))
    }

    /// A full tare sets the account's full weight for the keg's beer and type: the first
    /// measurement replaces the default, later ones are averaged in; the empty weight is kept.
    async fn measure_full_weight(
        conn: &mut <Db as sqlx::Database>::Connection,
        account: &AccountId,
        keg: &Keg,
        tare: &NewTare,
    ) -> Result<BeerKegWeight> {
        let own = sqlx::query(
            "SELECT full_kg, empty_kg, measured_count FROM beer_keg_weights \
             WHERE beer_id = $1 AND keg_type = $2 AND scope = $3",
        )
        .bind(keg.beer_id.as_str())
        .bind(&keg.keg_type)
        .bind(account.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let (full_kg, empty_kg, count) = if let Some(row) = own {
            let full: f64 = row.try_get("full_kg")?;
            let count: i64 = row.try_get("measured_count")?;
            let averaged = if count > 0 {
                (full * count as f64 + tare.weight_kg) / (count + 1) as f64
            } else {
                tare.weight_kg
            };
            (averaged, row.try_get::<f64, _>("empty_kg")?, count + 1)
        } else {
            // No measurement yet: keep the library default's empty weight, else the keg's.
            let default_empty: Option<f64> = sqlx::query_scalar(
                "SELECT empty_kg FROM beer_keg_weights \
                 WHERE beer_id = $1 AND keg_type = $2 AND scope = ''",
            )
            .bind(keg.beer_id.as_str())
            .bind(&keg.keg_type)
            .fetch_optional(&mut *conn)
            .await?;
            (tare.weight_kg, default_empty.unwrap_or(keg.empty_kg), 1)
        };
        let row = sqlx::query(
            "INSERT INTO beer_keg_weights (scope, beer_id, keg_type, full_kg, empty_kg, \
             measured_at, measured_count) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (beer_id, keg_type, scope) DO UPDATE SET \
             full_kg = excluded.full_kg, measured_at = excluded.measured_at, \
             measured_count = excluded.measured_count \
             RETURNING keg_type, full_kg, empty_kg, measured_at, measured_count",
        )
        .bind(account.as_str())
        .bind(keg.beer_id.as_str())
        .bind(&keg.keg_type)
        .bind(full_kg)
        .bind(empty_kg)
        .bind(tare.at)
        .bind(count)
        .fetch_one(&mut *conn)
        .await?;
        weight_from(&keg.beer_id, &row)
    }

    /// Resolves each device of a batch to its account, tap, tapped keg and the tap's hot state.
    async fn ingest_contexts(
        conn: &mut <Db as sqlx::Database>::Connection,
        device_ids: &[&str],
    ) -> Result<HashMap<String, ingest::DeviceContext>> {
        lock_taps(&mut *conn, device_ids).await?;
        let rows = device_contexts(&mut *conn, device_ids).await?;
        let mut contexts = HashMap::with_capacity(rows.len());
        for row in &rows {
            let tap = match row.try_get::<Option<String>, _>("tap_id")? {
                None => None,
                Some(tap_id) => Some(ingest::TapContext {
                    tap_id,
                    location_id: row.try_get("location_id")?,
                    keg_id: row.try_get("keg_id")?,
                    keg_empty_kg: row.try_get("empty_kg")?,
                    keg_sg: row.try_get("specific_gravity")?,
                    state_series: row.try_get("state_series")?,
                    state_updated_at: row.try_get("state_updated_at")?,
                    state_ref_volume_l: row.try_get("state_ref_volume_l")?,
                }),
            };
            contexts.insert(
                row.try_get("device_id")?,
                ingest::DeviceContext {
                    account_id: row.try_get("account_id")?,
                    tap,
                },
            );
        }
        Ok(contexts)
    }

    /// Writes what the new readings of a batch change: rollups, tap state, telemetry.
    async fn apply_effects(
        conn: &mut <Db as sqlx::Database>::Connection,
        effects: &ingest::Effects,
    ) -> Result<()> {
        upsert_rollups(&mut *conn, &effects.rollups).await?;
        update_tap_states(&mut *conn, &effects.taps).await?;
        update_devices(&mut *conn, &effects.devices).await?;
        Ok(())
    }

    async fn history_from_rollups(
        &self,
        account: &AccountId,
        series: &Series,
        bucket_ms: Millis,
        (start, end, bin_ms): (Millis, Millis, Millis),
    ) -> Result<Vec<HistoryPoint>> {
        let rows = sqlx::query(
            "SELECT $1 + ((r.bucket_start - $1) / $2) * $2 AS t, \
             SUM(r.level_sum) / CAST(SUM(r.n) AS DOUBLE PRECISION) AS level_avg, \
             MIN(r.level_min) AS level_min, MAX(r.level_max) AS level_max, \
             SUM(r.battery_sum) / CAST(NULLIF(SUM(r.battery_n), 0) AS DOUBLE PRECISION) \
             AS battery_avg, \
             SUM(r.poured_l) AS poured_l \
             FROM rollups r JOIN locations l ON l.id = r.location_id \
             WHERE r.series = $3 AND r.bucket_ms = $4 AND r.bucket_start >= $1 \
             AND r.bucket_start < $5 AND l.account_id = $6 \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(start)
        .bind(bin_ms)
        .bind(series.as_str())
        .bind(bucket_ms)
        .bind(end)
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryPoint {
                    t: row.try_get("t")?,
                    level_avg: row.try_get("level_avg")?,
                    level_min: row.try_get("level_min")?,
                    level_max: row.try_get("level_max")?,
                    battery_avg: row.try_get("battery_avg")?,
                    poured_l: Some(row.try_get("poured_l")?),
                })
            })
            .collect()
    }

    async fn history_from_raw(
        &self,
        account: &AccountId,
        series: &Series,
        (start, end, bin_ms): (Millis, Millis, Millis),
    ) -> Result<Vec<HistoryPoint>> {
        let rows = sqlx::query(
            "SELECT $1 + ((r.ts - $1) / $2) * $2 AS t, \
             AVG(r.level_pct) AS level_avg, MIN(r.level_pct) AS level_min, \
             MAX(r.level_pct) AS level_max, AVG(r.battery_pct) AS battery_avg \
             FROM readings r JOIN locations l ON l.id = r.location_id \
             WHERE r.series = $3 AND r.ts >= $1 AND r.ts < $4 AND l.account_id = $5 \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(start)
        .bind(bin_ms)
        .bind(series.as_str())
        .bind(end)
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryPoint {
                    t: row.try_get("t")?,
                    level_avg: row.try_get("level_avg")?,
                    level_min: row.try_get("level_min")?,
                    level_max: row.try_get("level_max")?,
                    battery_avg: row.try_get("battery_avg")?,
                    poured_l: None,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Store for StoreImpl {
    fn backend(&self) -> Backend {
        BACKEND
    }

    async fn create_account(&self, id: &AccountId, name: &str, at: Millis) -> Result<Account> {
        let row = sqlx::query(
            "INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, name, created_at",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_as(e, || format!("account {id} already exists")))?;
        account_from(&row)
    }

    async fn account(&self, id: &AccountId) -> Result<Account> {
        let row = sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("account", id))?;
        account_from(&row)
    }

    async fn create_location(
        &self,
        account: &AccountId,
        id: &LocationId,
        fields: &LocationFields,
        at: Millis,
    ) -> Result<Location> {
        let row = sqlx::query(
            "INSERT INTO locations \
             (id, account_id, name, address, time_zone, units, settings, created_at) \
             SELECT $1, a.id, $3, $4, $5, $6, $7, $8 FROM accounts a WHERE a.id = $2 \
             RETURNING id, account_id, name, address, time_zone, units, settings, created_at",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(&fields.name)
        .bind(&fields.address)
        .bind(&fields.time_zone)
        .bind(fields.units.as_str())
        .bind(sql::json_text(&fields.settings))
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| conflict_as(e, || format!("location {id} already exists")))?
        .ok_or_else(|| StoreError::not_found("account", account))?;
        location_from(&row)
    }

    async fn location(&self, account: &AccountId, id: &LocationId) -> Result<Location> {
        let row = sqlx::query(concat!(
            "SELECT ",
            location_cols!(),
            " FROM locations l WHERE l.id = $1 AND l.account_id = $2"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("location", id))?;
        location_from(&row)
    }

    async fn locations(&self, account: &AccountId) -> Result<Vec<Location>> {
        sqlx::query(concat!(
            "SELECT ",
            location_cols!(),
            " FROM locations l WHERE l.account_id = $1 ORDER BY l.id"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(location_from)
        .collect()
    }

    async fn update_location(
        &self,
        account: &AccountId,
        id: &LocationId,
        fields: &LocationFields,
    ) -> Result<Location> {
        let row = sqlx::query(
            "UPDATE locations SET name = $3, address = $4, time_zone = $5, units = $6, \
             settings = $7 WHERE id = $1 AND account_id = $2 \
             RETURNING id, account_id, name, address, time_zone, units, settings, created_at",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(&fields.name)
        .bind(&fields.address)
        .bind(&fields.time_zone)
        .bind(fields.units.as_str())
        .bind(sql::json_text(&fields.settings))
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("location", id))?;
        location_from(&row)
    }

    async fn create_tap(
        &self,
        account: &AccountId,
        location: &LocationId,
        number: u16,
        name: &str,
    ) -> Result<Tap> {
        let id = TapId::new(location, number)
            .map_err(|e| StoreError::Invalid(format!("tap number {number}: {e}")))?;
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO taps (id, location_id, number, name) \
             SELECT $1, l.id, $3, $4 FROM locations l WHERE l.id = $2 AND l.account_id = $5",
        )
        .bind(id.as_str())
        .bind(location.as_str())
        .bind(i64::from(number))
        .bind(name)
        .bind(account.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, || format!("tap {id} already exists")))?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::not_found("location", location));
        }
        sqlx::query("INSERT INTO tap_state (tap_id, maintenance) VALUES ($1, FALSE)")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Tap {
            id,
            location_id: location.clone(),
            number,
            name: name.to_owned(),
            beer_id: None,
            device_id: None,
            keg_id: None,
        })
    }

    async fn tap(&self, account: &AccountId, tap: &TapId) -> Result<Tap> {
        let row = sqlx::query(concat!(
            tap_select!(),
            "WHERE t.id = $1 AND l.account_id = $2"
        ))
        .bind(tap.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("tap", tap))?;
        tap_from(&row)
    }

    async fn taps(&self, account: &AccountId, location: &LocationId) -> Result<Vec<TapView>> {
        let rows = sqlx::query(concat!(
            "SELECT t.id, t.location_id, t.number, t.name, t.beer_id, d.id AS device_id, \
             k.id AS keg_id, ",
            tap_state_cols!(),
            " FROM taps t \
             JOIN locations l ON l.id = t.location_id \
             JOIN tap_state s ON s.tap_id = t.id \
             LEFT JOIN devices d ON d.tap_id = t.id \
             LEFT JOIN kegs k ON k.tap_id = t.id AND k.state = 'tapped' \
             WHERE t.location_id = $1 AND l.account_id = $2 ORDER BY t.number"
        ))
        .bind(location.as_str())
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TapView {
                    tap: tap_from(row)?,
                    state: tap_state_from(row)?,
                })
            })
            .collect()
    }

    async fn tap_state(&self, account: &AccountId, tap: &TapId) -> Result<TapState> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tap_state_cols!(),
            " FROM tap_state s JOIN taps t ON t.id = s.tap_id \
             JOIN locations l ON l.id = t.location_id \
             WHERE s.tap_id = $1 AND l.account_id = $2"
        ))
        .bind(tap.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("tap", tap))?;
        tap_state_from(&row)
    }

    async fn set_tap_beer(
        &self,
        account: &AccountId,
        tap: &TapId,
        beer: Option<&BeerId>,
    ) -> Result<Tap> {
        if let Some(beer) = beer {
            self.beer(account, beer).await?;
        }
        let updated = sqlx::query(
            "UPDATE taps SET beer_id = $1 WHERE id = $2 AND location_id IN \
             (SELECT id FROM locations WHERE account_id = $3)",
        )
        .bind(beer.map(BeerId::as_str))
        .bind(tap.as_str())
        .bind(account.as_str())
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::not_found("tap", tap));
        }
        self.tap(account, tap).await
    }

    async fn register_device(&self, account: &AccountId, device: &NewDevice) -> Result<Device> {
        let mut tx = self.write_tx().await?;
        if let Some(location) = &device.location_id {
            Self::location_in_account(&mut tx, account, location).await?;
        }
        let row = sqlx::query(
            "INSERT INTO devices (id, account_id, location_id, fw_version, status, maintenance, \
             created_at) \
             SELECT $1, a.id, $3, $4, 'offline', FALSE, $5 FROM accounts a WHERE a.id = $2 \
             RETURNING id, account_id, location_id, tap_id, fw_version, status, last_seen, \
             maintenance, created_at",
        )
        .bind(device.id.as_str())
        .bind(account.as_str())
        .bind(device.location_id.as_ref().map(LocationId::as_str))
        .bind(device.fw_version.as_deref())
        .bind(device.created_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, || format!("device {} already exists", device.id)))?
        .ok_or_else(|| StoreError::not_found("account", account))?;
        sqlx::query("INSERT INTO telemetry (device_id) VALUES ($1)")
            .bind(device.id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        device_from(&row)
    }

    async fn device(&self, account: &AccountId, id: &DeviceId) -> Result<Device> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_cols!(),
            " FROM devices d WHERE d.id = $1 AND d.account_id = $2"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("device", id))?;
        device_from(&row)
    }

    async fn devices(&self, account: &AccountId, location: &LocationId) -> Result<Vec<Device>> {
        sqlx::query(concat!(
            "SELECT ",
            device_cols!(),
            " FROM devices d WHERE d.account_id = $1 AND d.location_id = $2 ORDER BY d.id"
        ))
        .bind(account.as_str())
        .bind(location.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(device_from)
        .collect()
    }

    async fn assign_device(
        &self,
        account: &AccountId,
        device: &DeviceId,
        tap: Option<&TapId>,
    ) -> Result<Device> {
        let mut tx = self.write_tx().await?;
        let location: Option<String> = match tap {
            None => None,
            Some(tap) => Some(
                sqlx::query_scalar(
                    "SELECT t.location_id FROM taps t JOIN locations l ON l.id = t.location_id \
                     WHERE t.id = $1 AND l.account_id = $2",
                )
                .bind(tap.as_str())
                .bind(account.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("tap", tap))?,
            ),
        };
        let maintenance: bool =
            sqlx::query_scalar("SELECT maintenance FROM devices WHERE id = $1 AND account_id = $2")
                .bind(device.as_str())
                .bind(account.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("device", device))?;
        if let Some(tap) = tap {
            sqlx::query("UPDATE tap_state SET maintenance = $2 WHERE tap_id = $1")
                .bind(tap.as_str())
                .bind(maintenance)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "UPDATE devices SET tap_id = $3, location_id = COALESCE($4, location_id) \
             WHERE id = $1 AND account_id = $2 \
             RETURNING id, account_id, location_id, tap_id, fw_version, status, last_seen, \
             maintenance, created_at",
        )
        .bind(device.as_str())
        .bind(account.as_str())
        .bind(tap.map(TapId::as_str))
        .bind(location.as_deref())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| {
            conflict_as(e, || {
                format!("tap {} already has a scale", tap.map_or("", TapId::as_str))
            })
        })?
        .ok_or_else(|| StoreError::not_found("device", device))?;
        let assigned = device_from(&row)?;
        tx.commit().await?;
        Ok(assigned)
    }

    async fn set_maintenance(
        &self,
        account: &AccountId,
        device: &DeviceId,
        on: bool,
    ) -> Result<Device> {
        let mut tx = self.write_tx().await?;
        let tap: Option<String> =
            sqlx::query_scalar("SELECT tap_id FROM devices WHERE id = $1 AND account_id = $2")
                .bind(device.as_str())
                .bind(account.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("device", device))?;
        if let Some(tap) = &tap {
            sqlx::query("UPDATE tap_state SET maintenance = $2 WHERE tap_id = $1")
                .bind(tap)
                .bind(on)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "UPDATE devices SET maintenance = $3 WHERE id = $1 AND account_id = $2 \
             RETURNING id, account_id, location_id, tap_id, fw_version, status, last_seen, \
             maintenance, created_at",
        )
        .bind(device.as_str())
        .bind(account.as_str())
        .bind(on)
        .fetch_one(&mut *tx)
        .await?;
        let updated = device_from(&row)?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn device_owner(&self, device: &DeviceId) -> Result<Option<Device>> {
        sqlx::query(concat!(
            "SELECT ",
            device_cols!(),
            " FROM devices d WHERE d.id = $1"
        ))
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(device_from)
        .transpose()
    }

    async fn record_device_status(
        &self,
        device: &DeviceId,
        update: &DeviceStatusUpdate,
    ) -> Result<Option<Device>> {
        sql::finite(
            "device status",
            &[
                update.battery_v.unwrap_or(0.0),
                update.battery_pct.unwrap_or(0.0),
            ],
        )?;
        let mut tx = self.write_tx().await?;
        let Some(tap) =
            sqlx::query_scalar::<_, Option<String>>("SELECT tap_id FROM devices WHERE id = $1")
                .bind(device.as_str())
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        if let (Some(on), Some(tap)) = (update.maintenance, &tap) {
            sqlx::query("UPDATE tap_state SET maintenance = $2 WHERE tap_id = $1")
                .bind(tap)
                .bind(on)
                .execute(&mut *tx)
                .await?;
        }
        let online = update.status == DeviceStatus::Online;
        let Some(row) = sqlx::query(
            "UPDATE devices SET status = $2, fw_version = COALESCE($3, fw_version), \
             maintenance = COALESCE($4, maintenance), \
             last_seen = CASE WHEN $5 AND (last_seen IS NULL OR last_seen < $6) THEN $6 \
                         ELSE last_seen END \
             WHERE id = $1 \
             RETURNING id, account_id, location_id, tap_id, fw_version, status, last_seen, \
             maintenance, created_at",
        )
        .bind(device.as_str())
        .bind(update.status.as_str())
        .bind(update.fw_version.as_deref())
        .bind(update.maintenance)
        .bind(online)
        .bind(update.at)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let updated = device_from(&row)?;
        if update.battery_v.is_some() || update.battery_pct.is_some() || update.rssi.is_some() {
            sqlx::query(
                "UPDATE telemetry SET battery_v = COALESCE($2, battery_v), \
                 battery_pct = COALESCE($3, battery_pct), rssi = COALESCE($4, rssi), \
                 updated_at = $5 \
                 WHERE device_id = $1 AND (updated_at IS NULL OR updated_at <= $5)",
            )
            .bind(device.as_str())
            .bind(update.battery_v)
            .bind(update.battery_pct)
            .bind(update.rssi)
            .bind(update.at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(updated))
    }

    async fn telemetry(&self, account: &AccountId, device: &DeviceId) -> Result<Telemetry> {
        let row = sqlx::query(concat!(
            "SELECT ",
            telemetry_cols!(),
            " FROM telemetry m JOIN devices d ON d.id = m.device_id \
             WHERE m.device_id = $1 AND d.account_id = $2"
        ))
        .bind(device.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("device", device))?;
        telemetry_from(&row)
    }

    async fn low_battery_devices(
        &self,
        account: &AccountId,
        location: &LocationId,
        below_pct: f64,
    ) -> Result<Vec<(Device, Telemetry)>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_cols!(),
            ", ",
            telemetry_cols!(),
            " FROM devices d JOIN telemetry m ON m.device_id = d.id \
             WHERE d.account_id = $1 AND d.location_id = $2 AND m.battery_pct < $3 \
             ORDER BY m.battery_pct, d.id"
        ))
        .bind(account.as_str())
        .bind(location.as_str())
        .bind(below_pct)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((device_from(row)?, telemetry_from(row)?)))
            .collect()
    }

    async fn silent_devices(&self, seen_before: Millis) -> Result<Vec<Device>> {
        sqlx::query(concat!(
            "SELECT ",
            device_cols!(),
            " FROM devices d WHERE d.last_seen IS NULL OR d.last_seen < $1 \
             ORDER BY d.account_id, d.id"
        ))
        .bind(seen_before)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(device_from)
        .collect()
    }

    async fn record_calibration(
        &self,
        account: &AccountId,
        calibration: &NewCalibration,
    ) -> Result<Calibration> {
        let c = calibration;
        sql::finite(
            "calibration",
            &[
                c.scale_factor,
                c.known_weight_kg.unwrap_or(0.0),
                c.drift_pct.unwrap_or(0.0),
            ],
        )?;
        let row = sqlx::query(
            "INSERT INTO calibrations (device_id, scale_factor, zero_offset, method, \
             known_weight_kg, drift_pct, by_whom, at) \
             SELECT d.id, $3, $4, $5, $6, $7, $8, $9 FROM devices d \
             WHERE d.id = $1 AND d.account_id = $2 \
             RETURNING id, device_id, scale_factor, zero_offset, method, known_weight_kg, \
             drift_pct, by_whom, at",
        )
        .bind(c.device_id.as_str())
        .bind(account.as_str())
        .bind(c.scale_factor)
        .bind(c.zero_offset)
        .bind(&c.method)
        .bind(c.known_weight_kg)
        .bind(c.drift_pct)
        .bind(&c.by)
        .bind(c.at)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("device", &c.device_id))?;
        calibration_from(&row)
    }

    async fn calibration(
        &self,
        account: &AccountId,
        device: &DeviceId,
    ) -> Result<Option<Calibration>> {
        Ok(self
            .calibration_history(account, device, 1)
            .await?
            .into_iter()
            .next())
    }

    async fn calibration_history(
        &self,
        account: &AccountId,
        device: &DeviceId,
        limit: u32,
    ) -> Result<Vec<Calibration>> {
        self.device(account, device).await?;
        sqlx::query(concat!(
            "SELECT ",
            calibration_cols!(),
            " FROM calibrations c JOIN devices d ON d.id = c.device_id \
             WHERE c.device_id = $1 AND d.account_id = $2 \
             ORDER BY c.at DESC, c.id DESC LIMIT $3"
        ))
        .bind(device.as_str())
        .bind(account.as_str())
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(calibration_from)
        .collect()
    }

    async fn create_library_beer(&self, beer: &Beer) -> Result<Beer> {
        if beer.location_id.is_some() {
            return Err(StoreError::Invalid(
                "a library beer has no location; use create_custom_beer".into(),
            ));
        }
        sql::finite("beer", &[beer.abv, beer.specific_gravity])?;
        sqlx::query(
            "INSERT INTO beers (id, location_id, name, brewery, style, abv, specific_gravity, \
             search_text) VALUES ($1, NULL, $2, $3, $4, $5, $6, $7)",
        )
        .bind(beer.id.as_str())
        .bind(&beer.name)
        .bind(&beer.brewery)
        .bind(&beer.style)
        .bind(beer.abv)
        .bind(beer.specific_gravity)
        .bind(sql::beer_search_text(
            &beer.name,
            &beer.brewery,
            &beer.style,
        ))
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_as(e, || format!("beer {} already exists", beer.id)))?;
        Ok(beer.clone())
    }

    async fn create_custom_beer(&self, account: &AccountId, beer: &Beer) -> Result<Beer> {
        let Some(location) = &beer.location_id else {
            return Err(StoreError::Invalid(
                "a custom beer needs its location; use create_library_beer".into(),
            ));
        };
        sql::finite("beer", &[beer.abv, beer.specific_gravity])?;
        let inserted = sqlx::query(
            "INSERT INTO beers (id, location_id, name, brewery, style, abv, specific_gravity, \
             search_text) \
             SELECT $1, l.id, $3, $4, $5, $6, $7, $8 FROM locations l \
             WHERE l.id = $2 AND l.account_id = $9",
        )
        .bind(beer.id.as_str())
        .bind(location.as_str())
        .bind(&beer.name)
        .bind(&beer.brewery)
        .bind(&beer.style)
        .bind(beer.abv)
        .bind(beer.specific_gravity)
        .bind(sql::beer_search_text(
            &beer.name,
            &beer.brewery,
            &beer.style,
        ))
        .bind(account.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_as(e, || format!("beer {} already exists", beer.id)))?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::not_found("location", location));
        }
        Ok(beer.clone())
    }

    async fn beer(&self, account: &AccountId, id: &BeerId) -> Result<Beer> {
        let row = sqlx::query(concat!(
            "SELECT ",
            beer_cols!(),
            " FROM beers b LEFT JOIN locations l ON l.id = b.location_id \
             WHERE b.id = $1 AND (b.location_id IS NULL OR l.account_id = $2)"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("beer", id))?;
        beer_from(&row)
    }

    async fn update_beer(&self, account: &AccountId, beer: &Beer) -> Result<Beer> {
        sql::finite("beer", &[beer.abv, beer.specific_gravity])?;
        let mut tx = self.write_tx().await?;
        let current = sqlx::query(concat!(
            "SELECT ",
            beer_cols!(),
            " FROM beers b LEFT JOIN locations l ON l.id = b.location_id \
             WHERE b.id = $1 AND (b.location_id IS NULL OR l.account_id = $2)"
        ))
        .bind(beer.id.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found("beer", &beer.id))?;
        if current.try_get::<Option<&str>, _>("location_id")?.is_none() {
            return Err(StoreError::conflict(format!(
                "beer {} is in the shared library and cannot be edited",
                beer.id
            )));
        }
        let row = sqlx::query(concat!(
            "UPDATE beers SET name = $2, brewery = $3, style = $4, abv = $5, \
             specific_gravity = $6, search_text = $7 WHERE id = $1 RETURNING ",
            "id, location_id, name, brewery, style, abv, specific_gravity"
        ))
        .bind(beer.id.as_str())
        .bind(&beer.name)
        .bind(&beer.brewery)
        .bind(&beer.style)
        .bind(beer.abv)
        .bind(beer.specific_gravity)
        .bind(sql::beer_search_text(
            &beer.name,
            &beer.brewery,
            &beer.style,
        ))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        beer_from(&row)
    }

    async fn search_beers(
        &self,
        account: &AccountId,
        location: Option<&LocationId>,
        q: &str,
        limit: u32,
    ) -> Result<Vec<Beer>> {
        sqlx::query(concat!(
            "SELECT ",
            beer_cols!(),
            " FROM beers b LEFT JOIN locations l ON l.id = b.location_id \
             WHERE (b.location_id IS NULL \
                    OR (l.account_id = $1 AND ($2 IS NULL OR b.location_id = $2))) \
             AND b.search_text LIKE $3 ESCAPE '\\' \
             ORDER BY b.name, b.id LIMIT $4"
        ))
        .bind(account.as_str())
        .bind(location.map(LocationId::as_str))
        .bind(sql::contains_pattern(q))
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(beer_from)
        .collect()
    }

    async fn set_default_keg_weight(
        &self,
        beer: &BeerId,
        keg_type: &str,
        full_kg: f64,
        empty_kg: f64,
    ) -> Result<()> {
        sql::finite("keg weight", &[full_kg, empty_kg])?;
        sqlx::query(
            "INSERT INTO beer_keg_weights (scope, beer_id, keg_type, full_kg, empty_kg, \
             measured_at, measured_count) VALUES ('', $1, $2, $3, $4, NULL, 0) \
             ON CONFLICT (beer_id, keg_type, scope) DO UPDATE SET \
             full_kg = excluded.full_kg, empty_kg = excluded.empty_kg",
        )
        .bind(beer.as_str())
        .bind(keg_type)
        .bind(full_kg)
        .bind(empty_kg)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn beer_keg_weights(
        &self,
        account: &AccountId,
        beer: &BeerId,
    ) -> Result<Vec<BeerKegWeight>> {
        self.beer(account, beer).await?;
        sqlx::query(
            "SELECT w.keg_type, w.full_kg, w.empty_kg, w.measured_at, w.measured_count \
             FROM beer_keg_weights w \
             WHERE w.beer_id = $1 AND (w.scope = $2 OR (w.scope = '' AND NOT EXISTS ( \
                 SELECT 1 FROM beer_keg_weights o WHERE o.beer_id = w.beer_id \
                 AND o.keg_type = w.keg_type AND o.scope = $2))) \
             ORDER BY w.keg_type",
        )
        .bind(beer.as_str())
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| weight_from(beer, row))
        .collect()
    }

    async fn create_keg(&self, account: &AccountId, keg: &NewKeg) -> Result<Keg> {
        sql::finite("keg", &[keg.full_kg, keg.empty_kg, keg.specific_gravity])?;
        if keg.specific_gravity <= 0.0 {
            return Err(StoreError::Invalid(
                "specific gravity must be positive".into(),
            ));
        }
        self.beer(account, &keg.beer_id).await?;
        let row = sqlx::query(
            "INSERT INTO kegs (id, location_id, beer_id, keg_type, full_kg, empty_kg, \
             specific_gravity, state, created_at) \
             SELECT $1, l.id, $3, $4, $5, $6, $7, 'created', $8 FROM locations l \
             WHERE l.id = $2 AND l.account_id = $9 \
             RETURNING id, location_id, beer_id, keg_type, full_kg, empty_kg, \
             specific_gravity, tap_id, state, created_at, tapped_at, kicked_at, removed_at",
        )
        .bind(keg.id.as_str())
        .bind(keg.location_id.as_str())
        .bind(keg.beer_id.as_str())
        .bind(&keg.keg_type)
        .bind(keg.full_kg)
        .bind(keg.empty_kg)
        .bind(keg.specific_gravity)
        .bind(keg.created_at)
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| conflict_as(e, || format!("keg {} already exists", keg.id)))?
        .ok_or_else(|| StoreError::not_found("location", &keg.location_id))?;
        keg_from(&row)
    }

    async fn keg(&self, account: &AccountId, id: &KegId) -> Result<Keg> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_keg(&mut conn, account, id).await
    }

    async fn kegs(
        &self,
        account: &AccountId,
        location: &LocationId,
        state: Option<KegState>,
    ) -> Result<Vec<Keg>> {
        sqlx::query(concat!(
            "SELECT ",
            keg_cols!(),
            " FROM kegs k JOIN locations l ON l.id = k.location_id \
             WHERE k.location_id = $1 AND l.account_id = $2 AND ($3 IS NULL OR k.state = $3) \
             ORDER BY k.created_at DESC, k.id DESC"
        ))
        .bind(location.as_str())
        .bind(account.as_str())
        .bind(state.map(KegState::as_str))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(keg_from)
        .collect()
    }

    async fn tap_keg(
        &self,
        account: &AccountId,
        keg: &KegId,
        tap: &TapId,
        at: Millis,
    ) -> Result<Keg> {
        let mut tx = self.write_tx().await?;
        let current = Self::fetch_keg(&mut tx, account, keg).await?;
        let tap_location: String = sqlx::query_scalar(
            "SELECT t.location_id FROM taps t JOIN locations l ON l.id = t.location_id \
             WHERE t.id = $1 AND l.account_id = $2",
        )
        .bind(tap.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found("tap", tap))?;
        if tap_location != current.location_id.as_str() {
            return Err(StoreError::Invalid(format!(
                "keg {keg} is at {}, tap {tap} is at {tap_location}",
                current.location_id
            )));
        }
        if current.state != KegState::Created {
            return Err(keg_state_conflict(&current, "tapped"));
        }
        let row = sqlx::query(
            "UPDATE kegs SET state = 'tapped', tap_id = $2, tapped_at = $3 \
             WHERE id = $1 AND state = 'created' \
             RETURNING id, location_id, beer_id, keg_type, full_kg, empty_kg, \
             specific_gravity, tap_id, state, created_at, tapped_at, kicked_at, removed_at",
        )
        .bind(keg.as_str())
        .bind(tap.as_str())
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, || format!("tap {tap} already has a tapped keg")))?;
        sqlx::query("UPDATE taps SET beer_id = $2 WHERE id = $1")
            .bind(tap.as_str())
            .bind(current.beer_id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE tap_state SET tare_status = 'pending' WHERE tap_id = $1")
            .bind(tap.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        keg_from(&row)
    }

    async fn kick_keg(&self, account: &AccountId, keg: &KegId, at: Millis) -> Result<Keg> {
        let mut tx = self.write_tx().await?;
        let current = Self::fetch_keg(&mut tx, account, keg).await?;
        if current.state != KegState::Tapped {
            return Err(keg_state_conflict(&current, "kicked"));
        }
        let row = sqlx::query(
            "UPDATE kegs SET state = 'kicked', kicked_at = $2 WHERE id = $1 \
             RETURNING id, location_id, beer_id, keg_type, full_kg, empty_kg, \
             specific_gravity, tap_id, state, created_at, tapped_at, kicked_at, removed_at",
        )
        .bind(keg.as_str())
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        keg_from(&row)
    }

    async fn remove_keg(&self, account: &AccountId, keg: &KegId, at: Millis) -> Result<Keg> {
        let mut tx = self.write_tx().await?;
        let current = Self::fetch_keg(&mut tx, account, keg).await?;
        if current.state == KegState::Removed {
            return Err(keg_state_conflict(&current, "removed"));
        }
        let row = sqlx::query(
            "UPDATE kegs SET state = 'removed', removed_at = $2 WHERE id = $1 \
             RETURNING id, location_id, beer_id, keg_type, full_kg, empty_kg, \
             specific_gravity, tap_id, state, created_at, tapped_at, kicked_at, removed_at",
        )
        .bind(keg.as_str())
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        keg_from(&row)
    }

    async fn record_tare(&self, account: &AccountId, tare: &NewTare) -> Result<TareOutcome> {
        sql::finite("tare", &[tare.weight_kg])?;
        let mut tx = self.write_tx().await?;
        let keg = Self::fetch_keg(&mut tx, account, &tare.keg_id).await?;
        let copied = match tare.kind {
            TareKind::Empty => sqlx::query(
                "UPDATE telemetry SET tare_empty_raw = $2, tare_at = $3 WHERE device_id = $1 \
                 AND device_id IN (SELECT id FROM devices WHERE account_id = $4)",
            )
            .bind(tare.device_id.as_str())
            .bind(tare.raw)
            .bind(tare.at)
            .bind(account.as_str()),
            TareKind::Full => sqlx::query(
                "UPDATE telemetry SET tare_full_kg = $2, tare_at = $3 WHERE device_id = $1 \
                 AND device_id IN (SELECT id FROM devices WHERE account_id = $4)",
            )
            .bind(tare.device_id.as_str())
            .bind(tare.weight_kg)
            .bind(tare.at)
            .bind(account.as_str()),
        }
        .execute(&mut *tx)
        .await?;
        if copied.rows_affected() == 0 {
            return Err(StoreError::not_found("device", &tare.device_id));
        }
        let row = sqlx::query(
            "INSERT INTO tare_records (keg_id, device_id, kind, raw, weight_kg, by_whom, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id, keg_id, device_id, kind, raw, weight_kg, by_whom, at",
        )
        .bind(tare.keg_id.as_str())
        .bind(tare.device_id.as_str())
        .bind(tare.kind.as_str())
        .bind(tare.raw)
        .bind(tare.weight_kg)
        .bind(&tare.by)
        .bind(tare.at)
        .fetch_one(&mut *tx)
        .await?;
        let record = tare_from(&row)?;

        let beer_weight = if tare.kind == TareKind::Full {
            Some(Self::measure_full_weight(&mut tx, account, &keg, tare).await?)
        } else {
            None
        };
        tx.commit().await?;
        Ok(TareOutcome {
            record,
            beer_weight,
        })
    }

    async fn tare_records(&self, account: &AccountId, keg: &KegId) -> Result<Vec<TareRecord>> {
        self.keg(account, keg).await?;
        sqlx::query(concat!(
            "SELECT ",
            tare_cols!(),
            " FROM tare_records r JOIN kegs k ON k.id = r.keg_id \
             JOIN locations l ON l.id = k.location_id \
             WHERE r.keg_id = $1 AND l.account_id = $2 ORDER BY r.at, r.id"
        ))
        .bind(keg.as_str())
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(tare_from)
        .collect()
    }

    async fn ingest_batch(&self, readings: &[IngestReading]) -> Result<IngestOutcome> {
        if readings.is_empty() {
            return Ok(IngestOutcome {
                readings: Vec::new(),
            });
        }
        let mut device_ids: Vec<&str> = readings.iter().map(|r| r.device_id.as_str()).collect();
        device_ids.sort_unstable();
        device_ids.dedup();

        let mut tx = self.write_tx().await?;
        let contexts = Self::ingest_contexts(&mut tx, &device_ids).await?;
        let plan = ingest::plan(readings, &contexts);
        let is_new = insert_readings(&mut tx, &plan.candidates).await?;
        let new: Vec<&Candidate> = plan
            .candidates
            .iter()
            .zip(&is_new)
            .filter_map(|(c, &n)| n.then_some(c))
            .collect();
        let taps: HashMap<&str, &ingest::TapContext> = contexts
            .values()
            .filter_map(|d| d.tap.as_ref())
            .map(|t| (t.tap_id.as_str(), t))
            .collect();
        let unassigned: Vec<&IngestReading> =
            plan.unassigned.iter().map(|&i| &readings[i]).collect();
        let effects = ingest::effects(&new, &taps, &unassigned);
        Self::apply_effects(&mut tx, &effects).await?;

        // Outcomes are built before the commit, so a stored id that no longer parses aborts the
        // batch instead of reporting an error for rows that were written.
        let mut outcomes = plan.outcomes;
        let mut templates: HashMap<&str, StoredReading> = HashMap::new();
        for (c, &new) in plan.candidates.iter().zip(&is_new) {
            let outcome = if new {
                let template = if let Some(t) = templates.get(c.device_id.as_str()) {
                    t.clone()
                } else {
                    let t = StoredReading {
                        account_id: sql::parse("account id", &c.account_id)?,
                        location_id: sql::parse("location id", &c.location_id)?,
                        tap_id: sql::parse("tap id", &c.tap_id)?,
                        keg_id: sql::parse_opt("keg id", c.keg_id.as_deref())?,
                        series: series_from(&c.series)?,
                        volume_l: None,
                    };
                    templates.insert(c.device_id.as_str(), t.clone());
                    t
                };
                ReadingOutcome::Stored(StoredReading {
                    volume_l: c.volume_l,
                    ..template
                })
            } else {
                ReadingOutcome::Duplicate
            };
            outcomes[c.index] = Some(outcome);
        }
        tx.commit().await?;
        Ok(IngestOutcome {
            readings: outcomes
                .into_iter()
                .map(|o| o.unwrap_or(ReadingOutcome::Duplicate))
                .collect(),
        })
    }

    async fn readings(
        &self,
        account: &AccountId,
        series: &Series,
        start: Millis,
        end: Millis,
        limit: u32,
    ) -> Result<Vec<Reading>> {
        sqlx::query(concat!(
            "SELECT ",
            reading_cols!(),
            " FROM readings r JOIN locations l ON l.id = r.location_id \
             WHERE r.series = $1 AND r.ts >= $2 AND r.ts < $3 AND l.account_id = $4 \
             ORDER BY r.ts, r.device_id, r.boot, r.seq LIMIT $5"
        ))
        .bind(series.as_str())
        .bind(start)
        .bind(end)
        .bind(account.as_str())
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(reading_from)
        .collect()
    }

    async fn rollups(
        &self,
        account: &AccountId,
        series: &Series,
        bucket_ms: Millis,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<Rollup>> {
        sqlx::query(concat!(
            "SELECT ",
            rollup_cols!(),
            " FROM rollups r JOIN locations l ON l.id = r.location_id \
             WHERE r.series = $1 AND r.bucket_ms = $2 AND r.bucket_start >= $3 \
             AND r.bucket_start < $4 AND l.account_id = $5 ORDER BY r.bucket_start"
        ))
        .bind(series.as_str())
        .bind(bucket_ms)
        .bind(start)
        .bind(end)
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rollup_from)
        .collect()
    }

    async fn history(
        &self,
        account: &AccountId,
        series: &Series,
        start: Millis,
        end: Millis,
        bin_ms: Millis,
    ) -> Result<History> {
        if bin_ms <= 0 || end <= start {
            return Err(StoreError::Invalid(
                "history needs a positive bin and start before end".into(),
            ));
        }
        if (end - start) / bin_ms > MAX_HISTORY_POINTS {
            return Err(StoreError::Invalid(format!(
                "history of {} bins is too many (at most {MAX_HISTORY_POINTS})",
                (end - start) / bin_ms
            )));
        }
        let window = (start, end, bin_ms);
        let (source, points) = if end - start > 90 * BUCKET_1_DAY && bin_ms % BUCKET_1_DAY == 0 {
            let points = self
                .history_from_rollups(account, series, BUCKET_1_DAY, window)
                .await?;
            (HistorySource::Rollup1Day, points)
        } else if end - start > BUCKET_1_DAY && bin_ms % BUCKET_1_HOUR == 0 {
            let points = self
                .history_from_rollups(account, series, BUCKET_1_HOUR, window)
                .await?;
            (HistorySource::Rollup1Hour, points)
        } else if bin_ms % BUCKET_5_MIN == 0 {
            let points = self
                .history_from_rollups(account, series, BUCKET_5_MIN, window)
                .await?;
            (HistorySource::Rollup5Min, points)
        } else {
            let points = self.history_from_raw(account, series, window).await?;
            (HistorySource::Raw, points)
        };
        Ok(History { source, points })
    }

    async fn pour_by_hour(
        &self,
        account: &AccountId,
        location: &LocationId,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<HourlyPour>> {
        self.location(account, location).await?;
        let rows = sqlx::query(
            "SELECT r.bucket_start, SUM(r.poured_l) AS poured_l FROM rollups r \
             WHERE r.location_id = $1 AND r.bucket_ms = $2 AND r.bucket_start >= $3 \
             AND r.bucket_start < $4 \
             AND EXISTS (SELECT 1 FROM locations l WHERE l.id = $1 AND l.account_id = $5) \
             GROUP BY r.bucket_start ORDER BY r.bucket_start",
        )
        .bind(location.as_str())
        .bind(BUCKET_1_HOUR)
        .bind(start)
        .bind(end)
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HourlyPour {
                    hour_start: row.try_get("bucket_start")?,
                    poured_l: row.try_get("poured_l")?,
                })
            })
            .collect()
    }

    async fn keg_report(
        &self,
        account: &AccountId,
        location: &LocationId,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<KegReportRow>> {
        self.location(account, location).await?;
        // Whole UTC days inside the range come from the daily rollups, the partial days at its
        // edges from the hourly ones.
        let first_day = (start + BUCKET_1_DAY - 1).div_euclid(BUCKET_1_DAY) * BUCKET_1_DAY;
        let last_day = end.div_euclid(BUCKET_1_DAY) * BUCKET_1_DAY;
        let (days_from, days_to) = if first_day < last_day {
            (first_day, last_day)
        } else {
            (end, end)
        };
        let rows = sqlx::query(
            "WITH spans AS ( \
                 SELECT series, first_ts, last_ts, poured_l, n FROM rollups \
                 WHERE location_id = $1 AND bucket_ms = $3 \
                 AND bucket_start >= $6 AND bucket_start < $7 \
                 UNION ALL \
                 SELECT series, first_ts, last_ts, poured_l, n FROM rollups \
                 WHERE location_id = $1 AND bucket_ms = $8 \
                 AND bucket_start >= $4 AND bucket_start < $6 \
                 UNION ALL \
                 SELECT series, first_ts, last_ts, poured_l, n FROM rollups \
                 WHERE location_id = $1 AND bucket_ms = $8 \
                 AND bucket_start >= $7 AND bucket_start < $5 \
             ), per_series AS ( \
                 SELECT series, MIN(first_ts) AS first_ts, MAX(last_ts) AS last_ts, \
                 SUM(poured_l) AS poured_l, SUM(n) AS n FROM spans GROUP BY series \
             ) \
             SELECT k.id, k.beer_id, k.keg_type, k.tap_id, k.state, k.tapped_at, k.kicked_at, \
             p.first_ts AS first_reading, p.last_ts AS last_reading, \
             COALESCE(p.poured_l, 0.0) AS poured_l, \
             CAST(COALESCE(p.n, 0) AS BIGINT) AS readings \
             FROM kegs k JOIN locations l ON l.id = k.location_id \
             LEFT JOIN per_series p ON p.series = k.id \
             WHERE k.location_id = $1 AND l.account_id = $2 \
             AND (p.series IS NOT NULL OR (k.tapped_at >= $4 AND k.tapped_at < $5)) \
             ORDER BY k.tapped_at, k.id",
        )
        .bind(location.as_str())
        .bind(account.as_str())
        .bind(BUCKET_1_DAY)
        .bind(start)
        .bind(end)
        .bind(days_from)
        .bind(days_to)
        .bind(BUCKET_1_HOUR)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KegReportRow {
                    keg_id: sql::parse("keg id", row.try_get::<&str, _>("id")?)?,
                    beer_id: sql::parse("beer id", row.try_get::<&str, _>("beer_id")?)?,
                    keg_type: row.try_get("keg_type")?,
                    tap_id: sql::parse_opt("tap id", row.try_get("tap_id")?)?,
                    state: KegState::parse(row.try_get("state")?)?,
                    tapped_at: row.try_get("tapped_at")?,
                    kicked_at: row.try_get("kicked_at")?,
                    first_reading: row.try_get("first_reading")?,
                    last_reading: row.try_get("last_reading")?,
                    poured_l: row.try_get("poured_l")?,
                    readings: row.try_get("readings")?,
                })
            })
            .collect()
    }

    async fn purge(&self, now: Millis) -> Result<PurgeStats> {
        let locations = sqlx::query("SELECT id, settings FROM locations ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut stats = PurgeStats::default();
        // One short transaction per location keeps the write lock brief on SQLite.
        for row in &locations {
            let id: &str = row.try_get("id")?;
            let days = sql::raw_retention_days(&sql::json(row.try_get("settings")?)?);
            let mut tx = self.write_tx().await?;
            stats.readings +=
                sqlx::query("DELETE FROM readings WHERE location_id = $1 AND ts < $2")
                    .bind(id)
                    .bind(now - days * 24 * BUCKET_1_HOUR)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            for bucket in ROLLUP_BUCKETS {
                stats.rollups += sqlx::query(
                    "DELETE FROM rollups WHERE location_id = $1 AND bucket_ms = $2 \
                     AND bucket_start < $3",
                )
                .bind(id)
                .bind(bucket)
                .bind(now - ROLLUP_RETENTION)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
        }
        stats.grace_rows = sqlx::query("DELETE FROM alert_grace WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        tracing::info!(
            readings = stats.readings,
            rollups = stats.rollups,
            grace_rows = stats.grace_rows,
            "purged expired data"
        );
        Ok(stats)
    }

    async fn start_grace(&self, account: &AccountId, grace: &Grace) -> Result<Grace> {
        let mut tx = self.write_tx().await?;
        Self::location_in_account(&mut tx, account, &grace.location_id).await?;
        sqlx::query(
            "INSERT INTO alert_grace (location_id, kind, entity, severity, started_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (location_id, kind, entity) DO NOTHING",
        )
        .bind(grace.location_id.as_str())
        .bind(&grace.kind)
        .bind(&grace.entity)
        .bind(grace.severity.as_str())
        .bind(grace.started_at)
        .bind(grace.expires_at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT location_id, kind, entity, severity, started_at, expires_at \
             FROM alert_grace WHERE location_id = $1 AND kind = $2 AND entity = $3",
        )
        .bind(grace.location_id.as_str())
        .bind(&grace.kind)
        .bind(&grace.entity)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        grace_from(&row)
    }

    async fn grace(&self, account: &AccountId, key: &AlertKey) -> Result<Option<Grace>> {
        sqlx::query(
            "SELECT g.location_id, g.kind, g.entity, g.severity, g.started_at, g.expires_at \
             FROM alert_grace g JOIN locations l ON l.id = g.location_id \
             WHERE g.location_id = $1 AND g.kind = $2 AND g.entity = $3 AND l.account_id = $4",
        )
        .bind(key.location_id.as_str())
        .bind(&key.kind)
        .bind(&key.entity)
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(grace_from)
        .transpose()
    }

    async fn clear_grace(&self, account: &AccountId, key: &AlertKey) -> Result<bool> {
        let deleted = sqlx::query(
            "DELETE FROM alert_grace WHERE location_id = $1 AND kind = $2 AND entity = $3 \
             AND location_id IN (SELECT id FROM locations WHERE account_id = $4)",
        )
        .bind(key.location_id.as_str())
        .bind(&key.kind)
        .bind(&key.entity)
        .bind(account.as_str())
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn fire_alert(&self, account: &AccountId, alert: &Alert) -> Result<Alert> {
        let mut tx = self.write_tx().await?;
        Self::location_in_account(&mut tx, account, &alert.location_id).await?;
        sqlx::query(
            "INSERT INTO alerts_active (location_id, kind, entity, severity, state, fired_at, \
             updated_at, acknowledged_by, acknowledged_at, context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(alert.location_id.as_str())
        .bind(&alert.kind)
        .bind(&alert.entity)
        .bind(alert.severity.as_str())
        .bind(alert.state.as_str())
        .bind(alert.fired_at)
        .bind(alert.updated_at)
        .bind(alert.acknowledged_by.as_deref())
        .bind(alert.acknowledged_at)
        .bind(sql::json_text(&alert.context))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            conflict_as(e, || {
                format!(
                    "an active {} alert for {} at {} exists",
                    alert.kind, alert.entity, alert.location_id
                )
            })
        })?;
        sqlx::query("DELETE FROM alert_grace WHERE location_id = $1 AND kind = $2 AND entity = $3")
            .bind(alert.location_id.as_str())
            .bind(&alert.kind)
            .bind(&alert.entity)
            .execute(&mut *tx)
            .await?;
        Self::append_alert_history(&mut tx, alert, alert.fired_at, None).await?;
        tx.commit().await?;
        Ok(alert.clone())
    }

    async fn change_alert(
        &self,
        account: &AccountId,
        key: &AlertKey,
        change: &AlertChange,
    ) -> Result<Alert> {
        let mut tx = self.write_tx().await?;
        let acknowledged = change.state == AlertState::Acknowledged;
        let updated = sqlx::query(
            "UPDATE alerts_active SET state = $4, severity = $5, updated_at = $6, \
             context = $7, \
             acknowledged_by = CASE WHEN $8 THEN $9 ELSE acknowledged_by END, \
             acknowledged_at = CASE WHEN $8 THEN $6 ELSE acknowledged_at END \
             WHERE location_id = $1 AND kind = $2 AND entity = $3 \
             AND location_id IN (SELECT id FROM locations WHERE account_id = $10)",
        )
        .bind(key.location_id.as_str())
        .bind(&key.kind)
        .bind(&key.entity)
        .bind(change.state.as_str())
        .bind(change.severity.as_str())
        .bind(change.at)
        .bind(sql::json_text(&change.context))
        .bind(acknowledged)
        .bind(change.by.as_deref())
        .bind(account.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::not_found(
                "alert",
                &format!("{}#{}#{}", key.location_id, key.kind, key.entity),
            ));
        }
        let alert = Self::fetch_alert(&mut tx, account, key)
            .await?
            .ok_or_else(|| StoreError::not_found("alert", key.kind.as_str()))?;
        Self::append_alert_history(&mut tx, &alert, change.at, change.by.as_deref()).await?;
        tx.commit().await?;
        Ok(alert)
    }

    async fn resolve_alert(
        &self,
        account: &AccountId,
        key: &AlertKey,
        at: Millis,
        by: Option<&str>,
    ) -> Result<Alert> {
        let mut tx = self.write_tx().await?;
        let mut alert = Self::fetch_alert(&mut tx, account, key)
            .await?
            .ok_or_else(|| {
                StoreError::not_found(
                    "alert",
                    &format!("{}#{}#{}", key.location_id, key.kind, key.entity),
                )
            })?;
        sqlx::query(
            "DELETE FROM alerts_active WHERE location_id = $1 AND kind = $2 AND entity = $3",
        )
        .bind(key.location_id.as_str())
        .bind(&key.kind)
        .bind(&key.entity)
        .execute(&mut *tx)
        .await?;
        alert.state = AlertState::Resolved;
        alert.updated_at = at;
        Self::append_alert_history(&mut tx, &alert, at, by).await?;
        tx.commit().await?;
        Ok(alert)
    }

    async fn active_alerts(
        &self,
        account: &AccountId,
        location: &LocationId,
    ) -> Result<Vec<Alert>> {
        sqlx::query(concat!(
            "SELECT ",
            alert_cols!(),
            " FROM alerts_active a JOIN locations l ON l.id = a.location_id \
             WHERE a.location_id = $1 AND l.account_id = $2 ORDER BY a.fired_at, a.kind, a.entity"
        ))
        .bind(location.as_str())
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(alert_from)
        .collect()
    }

    async fn alert_history(
        &self,
        account: &AccountId,
        location: &LocationId,
        limit: u32,
    ) -> Result<Vec<AlertHistoryEntry>> {
        sqlx::query(
            "SELECT h.id, h.location_id, h.kind, h.entity, h.severity, h.state, h.at, \
             h.by_whom, h.context \
             FROM alert_history h JOIN locations l ON l.id = h.location_id \
             WHERE h.location_id = $1 AND l.account_id = $2 ORDER BY h.id DESC LIMIT $3",
        )
        .bind(location.as_str())
        .bind(account.as_str())
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(alert_history_from)
        .collect()
    }

    async fn create_command(&self, account: &AccountId, command: &NewCommand) -> Result<Command> {
        let row = sqlx::query(
            "INSERT INTO commands (id, device_id, name, params, state, issued_by, issued_at, \
             expires_at) \
             SELECT $1, d.id, $3, $4, 'pending', $5, $6, $7 FROM devices d \
             WHERE d.id = $2 AND d.account_id = $8 \
             RETURNING id, device_id, name, params, state, issued_by, issued_at, expires_at, \
             delivered_at, answered_at, result",
        )
        .bind(command.id.as_str())
        .bind(command.device_id.as_str())
        .bind(&command.name)
        .bind(sql::json_text(&command.params))
        .bind(&command.issued_by)
        .bind(command.issued_at)
        .bind(command.expires_at)
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| conflict_as(e, || format!("command {} already exists", command.id)))?
        .ok_or_else(|| StoreError::not_found("device", &command.device_id))?;
        command_from(&row)
    }

    async fn command(&self, account: &AccountId, id: &CommandId) -> Result<Command> {
        let row = sqlx::query(concat!(
            "SELECT ",
            command_cols!(),
            " FROM commands c JOIN devices d ON d.id = c.device_id \
             WHERE c.id = $1 AND d.account_id = $2"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("command", id))?;
        command_from(&row)
    }

    async fn commands(
        &self,
        account: &AccountId,
        device: &DeviceId,
        limit: u32,
    ) -> Result<Vec<Command>> {
        sqlx::query(concat!(
            "SELECT ",
            command_cols!(),
            " FROM commands c JOIN devices d ON d.id = c.device_id \
             WHERE c.device_id = $1 AND d.account_id = $2 \
             ORDER BY c.issued_at DESC, c.id DESC LIMIT $3"
        ))
        .bind(device.as_str())
        .bind(account.as_str())
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_from)
        .collect()
    }

    async fn mark_command_delivered(
        &self,
        device: &DeviceId,
        id: &CommandId,
        at: Millis,
    ) -> Result<Command> {
        let mut tx = self.write_tx().await?;
        let current = Self::fetch_command(&mut tx, device, id).await?;
        if current.state != CommandState::Pending {
            return Err(StoreError::conflict(format!(
                "command {id} is {}, it cannot be delivered",
                current.state.as_str()
            )));
        }
        let row = sqlx::query(
            "UPDATE commands SET state = 'delivered', delivered_at = $2 WHERE id = $1 \
             RETURNING id, device_id, name, params, state, issued_by, issued_at, expires_at, \
             delivered_at, answered_at, result",
        )
        .bind(id.as_str())
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        command_from(&row)
    }

    async fn complete_command(
        &self,
        device: &DeviceId,
        id: &CommandId,
        ok: bool,
        result: &serde_json::Value,
        at: Millis,
    ) -> Result<Command> {
        let mut tx = self.write_tx().await?;
        let current = Self::fetch_command(&mut tx, device, id).await?;
        if !matches!(
            current.state,
            CommandState::Pending | CommandState::Delivered
        ) {
            return Err(StoreError::conflict(format!(
                "command {id} is {}, it cannot be answered again",
                current.state.as_str()
            )));
        }
        let state = if ok {
            CommandState::Succeeded
        } else {
            CommandState::Failed
        };
        let row = sqlx::query(
            "UPDATE commands SET state = $2, answered_at = $3, result = $4 WHERE id = $1 \
             RETURNING id, device_id, name, params, state, issued_by, issued_at, expires_at, \
             delivered_at, answered_at, result",
        )
        .bind(id.as_str())
        .bind(state.as_str())
        .bind(at)
        .bind(sql::json_text(result))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        command_from(&row)
    }

    async fn expire_commands(&self, now: Millis) -> Result<Vec<Command>> {
        sqlx::query(
            "UPDATE commands SET state = 'expired' \
             WHERE state IN ('pending', 'delivered') AND expires_at <= $1 \
             RETURNING id, device_id, name, params, state, issued_by, issued_at, expires_at, \
             delivered_at, answered_at, result",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_from)
        .collect()
    }

    async fn open_commands(&self, device: &DeviceId, now: Millis) -> Result<Vec<Command>> {
        sqlx::query(concat!(
            "SELECT ",
            command_cols!(),
            " FROM commands c WHERE c.device_id = $1 AND c.state IN ('pending', 'delivered') \
             AND c.expires_at > $2 ORDER BY c.issued_at, c.id"
        ))
        .bind(device.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_from)
        .collect()
    }

    async fn create_user(&self, account: &AccountId, user: &NewUser) -> Result<User> {
        let mut tx = self.write_tx().await?;
        if let Some(allowed) = &user.allowed_locations {
            for location in allowed {
                Self::location_in_account(&mut tx, account, location).await?;
            }
        }
        let allowed = user.allowed_locations.as_ref().map(|ids| {
            serde_json::Value::Array(
                ids.iter()
                    .map(|id| serde_json::Value::String(id.as_str().to_owned()))
                    .collect(),
            )
            .to_string()
        });
        let email = user.email.trim().to_lowercase();
        let row = sqlx::query(
            "INSERT INTO users (id, account_id, email, password_hash, role, allowed_locations, \
             created_at) \
             SELECT $1, a.id, $3, $4, $5, $6, $7 FROM accounts a WHERE a.id = $2 \
             RETURNING id, account_id, email, password_hash, role, allowed_locations, created_at",
        )
        .bind(user.id.as_str())
        .bind(account.as_str())
        .bind(&email)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(allowed)
        .bind(user.created_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| {
            conflict_as(e, || {
                format!("a user with e-mail {email} or id {} exists", user.id)
            })
        })?
        .ok_or_else(|| StoreError::not_found("account", account))?;
        tx.commit().await?;
        user_from(&row)
    }

    async fn user(&self, account: &AccountId, id: &UserId) -> Result<User> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users u WHERE u.id = $1 AND u.account_id = $2"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("user", id))?;
        user_from(&row)
    }

    async fn user_by_email(&self, account: &AccountId, email: &str) -> Result<Option<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users u WHERE u.email = $1 AND u.account_id = $2"
        ))
        .bind(email.trim().to_lowercase())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from)
        .transpose()
    }

    async fn users(&self, account: &AccountId) -> Result<Vec<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users u WHERE u.account_id = $1 ORDER BY u.email"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from)
        .collect()
    }

    async fn set_user_password(
        &self,
        account: &AccountId,
        user: &UserId,
        password_hash: &str,
    ) -> Result<User> {
        let row = sqlx::query(
            "UPDATE users SET password_hash = $3 WHERE id = $1 AND account_id = $2 \
             RETURNING id, account_id, email, password_hash, role, allowed_locations, created_at",
        )
        .bind(user.as_str())
        .bind(account.as_str())
        .bind(password_hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("user", user))?;
        user_from(&row)
    }

    async fn update_user(
        &self,
        account: &AccountId,
        user: &UserId,
        role: Option<Role>,
        allowed_locations: Option<Option<Vec<LocationId>>>,
    ) -> Result<User> {
        let mut tx = self.write_tx().await?;
        if let Some(Some(allowed)) = &allowed_locations {
            for location in allowed {
                Self::location_in_account(&mut tx, account, location).await?;
            }
        }
        // `$4` says whether `$5` replaces the column, so "leave it" and "set it to NULL" (every
        // location) stay distinct in one statement.
        let allowed_text = allowed_locations.as_ref().and_then(|allowed| {
            allowed.as_ref().map(|ids| {
                serde_json::Value::Array(
                    ids.iter()
                        .map(|id| serde_json::Value::String(id.as_str().to_owned()))
                        .collect(),
                )
                .to_string()
            })
        });
        let row = sqlx::query(
            "UPDATE users SET role = COALESCE($3, role), \
             allowed_locations = CASE WHEN $4 THEN $5 ELSE allowed_locations END \
             WHERE id = $1 AND account_id = $2 \
             RETURNING id, account_id, email, password_hash, role, allowed_locations, created_at",
        )
        .bind(user.as_str())
        .bind(account.as_str())
        .bind(role.map(Role::as_str))
        .bind(allowed_locations.is_some())
        .bind(allowed_text)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found("user", user))?;
        tx.commit().await?;
        user_from(&row)
    }

    async fn create_session(&self, account: &AccountId, session: &NewSession) -> Result<Session> {
        let mut tx = self.write_tx().await?;
        let role: String =
            sqlx::query_scalar("SELECT role FROM users WHERE id = $1 AND account_id = $2")
                .bind(session.user_id.as_str())
                .bind(account.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("user", &session.user_id))?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.token_hash)
        .bind(session.user_id.as_str())
        .bind(account.as_str())
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, || "session token already in use".to_owned()))?;
        tx.commit().await?;
        Ok(Session {
            token_hash: session.token_hash.clone(),
            user_id: session.user_id.clone(),
            account_id: account.clone(),
            role: Role::parse(&role)?,
            created_at: session.created_at,
            expires_at: session.expires_at,
        })
    }

    async fn session(&self, token_hash: &str, now: Millis) -> Result<Option<Session>> {
        sqlx::query(
            "SELECT s.token_hash, s.user_id, s.account_id, s.created_at, s.expires_at, u.role \
             FROM sessions s JOIN users u ON u.id = s.user_id AND u.account_id = s.account_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(session_from)
        .transpose()
    }

    async fn revoke_session(&self, token_hash: &str, at: Millis) -> Result<bool> {
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(revoked.rows_affected() > 0)
    }

    async fn revoke_user_sessions(
        &self,
        account: &AccountId,
        user: &UserId,
        at: Millis,
    ) -> Result<u64> {
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $3 \
             WHERE user_id = $1 AND account_id = $2 AND revoked_at IS NULL",
        )
        .bind(user.as_str())
        .bind(account.as_str())
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(revoked.rows_affected())
    }

    async fn create_api_token(&self, account: &AccountId, token: &NewApiToken) -> Result<ApiToken> {
        let row = sqlx::query(
            "INSERT INTO api_tokens (id, account_id, token_hash, name, role, created_at) \
             SELECT $1, a.id, $3, $4, $5, $6 FROM accounts a WHERE a.id = $2 \
             RETURNING id, account_id, name, role, created_at, revoked_at, last_used_at",
        )
        .bind(token.id.as_str())
        .bind(account.as_str())
        .bind(&token.token_hash)
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(token.created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| conflict_as(e, || format!("API token {} already exists", token.id)))?
        .ok_or_else(|| StoreError::not_found("account", account))?;
        token_from(&row)
    }

    async fn api_token(&self, token_hash: &str, now: Millis) -> Result<Option<ApiToken>> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2 \
             WHERE token_hash = $1 AND revoked_at IS NULL \
             RETURNING id, account_id, name, role, created_at, revoked_at, last_used_at",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    async fn api_tokens(&self, account: &AccountId) -> Result<Vec<ApiToken>> {
        sqlx::query(concat!(
            "SELECT ",
            token_cols!(),
            " FROM api_tokens t WHERE t.account_id = $1 ORDER BY t.created_at, t.id"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(token_from)
        .collect()
    }

    async fn revoke_api_token(
        &self,
        account: &AccountId,
        id: &RecordId,
        at: Millis,
    ) -> Result<ApiToken> {
        let row = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE id = $1 AND account_id = $2 \
             RETURNING id, account_id, name, role, created_at, revoked_at, last_used_at",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(at)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("API token", id))?;
        token_from(&row)
    }

    async fn create_channel(&self, account: &AccountId, channel: &NewChannel) -> Result<Channel> {
        let mut tx = self.write_tx().await?;
        if let Some(location) = &channel.location_id {
            Self::location_in_account(&mut tx, account, location).await?;
        }
        let row = sqlx::query(
            "INSERT INTO notification_channels (id, account_id, location_id, kind, target, \
             settings, enabled) \
             SELECT $1, a.id, $3, $4, $5, $6, $7 FROM accounts a WHERE a.id = $2 \
             RETURNING id, account_id, location_id, kind, target, settings, enabled",
        )
        .bind(channel.id.as_str())
        .bind(account.as_str())
        .bind(channel.location_id.as_ref().map(LocationId::as_str))
        .bind(channel.kind.as_str())
        .bind(&channel.target)
        .bind(sql::json_text(&channel.settings))
        .bind(channel.enabled)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, || format!("channel {} already exists", channel.id)))?
        .ok_or_else(|| StoreError::not_found("account", account))?;
        tx.commit().await?;
        channel_from(&row)
    }

    async fn channels(&self, account: &AccountId) -> Result<Vec<Channel>> {
        sqlx::query(concat!(
            "SELECT ",
            channel_cols!(),
            " FROM notification_channels c WHERE c.account_id = $1 ORDER BY c.id"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(channel_from)
        .collect()
    }

    async fn enqueue_notification(
        &self,
        account: &AccountId,
        notification: &NewNotification,
    ) -> Result<Enqueued> {
        let n = notification;
        let mut tx = self.write_tx().await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO outbox (account_id, channel_id, idempotency_key, payload, status, \
             attempts, next_attempt_at, created_at) \
             SELECT c.account_id, c.id, $3, $4, 'pending', 0, $5, $6 \
             FROM notification_channels c WHERE c.id = $2 AND c.account_id = $1 \
             ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(account.as_str())
        .bind(n.channel_id.as_str())
        .bind(&n.idempotency_key)
        .bind(sql::json_text(&n.payload))
        .bind(n.next_attempt_at)
        .bind(n.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        let enqueued = if let Some(id) = inserted {
            Enqueued {
                id,
                duplicate: false,
            }
        } else {
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM outbox WHERE account_id = $1 AND idempotency_key = $2",
            )
            .bind(account.as_str())
            .bind(&n.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            let id = existing.ok_or_else(|| StoreError::not_found("channel", &n.channel_id))?;
            Enqueued {
                id,
                duplicate: true,
            }
        };
        tx.commit().await?;
        Ok(enqueued)
    }

    async fn due_notifications(&self, now: Millis, limit: u32) -> Result<Vec<OutboxItem>> {
        sqlx::query(concat!(
            "SELECT ",
            outbox_cols!(),
            " FROM outbox o WHERE o.status = 'pending' AND o.next_attempt_at <= $1 \
             ORDER BY o.next_attempt_at, o.id LIMIT $2"
        ))
        .bind(now)
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(outbox_from)
        .collect()
    }

    async fn mark_notification_sent(&self, id: i64, at: Millis) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $2, attempts = attempts + 1 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::not_found("pending notification", &id));
        }
        Ok(())
    }

    async fn mark_notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Millis>,
    ) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
             status = CASE WHEN $3 IS NULL THEN 'dead' ELSE 'pending' END, \
             next_attempt_at = COALESCE($3, next_attempt_at) \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::not_found("pending notification", &id));
        }
        Ok(())
    }

    async fn outbox(&self, account: &AccountId, limit: u32) -> Result<Vec<OutboxItem>> {
        sqlx::query(concat!(
            "SELECT ",
            outbox_cols!(),
            " FROM outbox o WHERE o.account_id = $1 ORDER BY o.id DESC LIMIT $2"
        ))
        .bind(account.as_str())
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(outbox_from)
        .collect()
    }

    async fn channel(&self, account: &AccountId, id: &RecordId) -> Result<Channel> {
        let row = sqlx::query(concat!(
            "SELECT ",
            channel_cols!(),
            " FROM notification_channels c WHERE c.id = $1 AND c.account_id = $2"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("channel", id))?;
        channel_from(&row)
    }

    async fn update_channel(
        &self,
        account: &AccountId,
        id: &RecordId,
        update: &crate::model::ChannelUpdate,
    ) -> Result<Channel> {
        let row = sqlx::query(
            "UPDATE notification_channels SET target = $3, settings = $4, enabled = $5 \
             WHERE id = $1 AND account_id = $2 \
             RETURNING id, account_id, location_id, kind, target, settings, enabled",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(&update.target)
        .bind(sql::json_text(&update.settings))
        .bind(update.enabled)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("channel", id))?;
        channel_from(&row)
    }

    async fn delete_channel(&self, account: &AccountId, id: &RecordId) -> Result<Channel> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "DELETE FROM outbox WHERE channel_id IN \
             (SELECT c.id FROM notification_channels c WHERE c.id = $1 AND c.account_id = $2)",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "DELETE FROM notification_channels WHERE id = $1 AND account_id = $2 \
             RETURNING id, account_id, location_id, kind, target, settings, enabled",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found("channel", id))?;
        tx.commit().await?;
        channel_from(&row)
    }

    async fn location_outbox(
        &self,
        account: &AccountId,
        location: &LocationId,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        sqlx::query(concat!(
            "SELECT ",
            outbox_cols!(),
            " FROM outbox o JOIN notification_channels c ON c.id = o.channel_id \
             WHERE o.account_id = $1 AND c.account_id = $1 \
             AND (c.location_id = $2 OR c.location_id IS NULL) \
             ORDER BY o.id DESC LIMIT $3"
        ))
        .bind(account.as_str())
        .bind(location.as_str())
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(outbox_from)
        .collect()
    }

    async fn record_dead_letter(
        &self,
        topic: &str,
        payload: &[u8],
        reason: &str,
        at: Millis,
    ) -> Result<i64> {
        let kept = sql::capped(payload);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dead_letters (topic, payload, payload_len, reason, received_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(topic)
        .bind(kept)
        .bind(i64::try_from(payload.len()).unwrap_or(i64::MAX))
        .bind(reason)
        .bind(at)
        .fetch_one(&self.pool)
        .await?;
        tracing::warn!(topic, reason, bytes = payload.len(), "dead letter recorded");
        Ok(id)
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT id, topic, payload, payload_len, reason, received_at FROM dead_letters \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    id: row.try_get("id")?,
                    topic: row.try_get("topic")?,
                    payload: row.try_get("payload")?,
                    payload_len: row.try_get("payload_len")?,
                    reason: row.try_get("reason")?,
                    received_at: row.try_get("received_at")?,
                })
            })
            .collect()
    }

    async fn record_audit(&self, account: &AccountId, entry: &NewAuditEntry) -> Result<AuditEntry> {
        let row = sqlx::query(
            "INSERT INTO audit_log (account_id, actor, action, entity, before_json, after_json, \
             at) \
             SELECT a.id, $2, $3, $4, $5, $6, $7 FROM accounts a WHERE a.id = $1 \
             RETURNING id, account_id, actor, action, entity, before_json, after_json, at",
        )
        .bind(account.as_str())
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.entity)
        .bind(entry.before.as_ref().map(sql::json_text))
        .bind(entry.after.as_ref().map(sql::json_text))
        .bind(entry.at)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("account", account))?;
        audit_from(&row)
    }

    async fn audit_log(&self, account: &AccountId, limit: u32) -> Result<Vec<AuditEntry>> {
        sqlx::query(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM audit_log a WHERE a.account_id = $1 ORDER BY a.id DESC LIMIT $2"
        ))
        .bind(account.as_str())
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from)
        .collect()
    }

    async fn all_locations(&self) -> Result<Vec<Location>> {
        sqlx::query(concat!(
            "SELECT ",
            location_cols!(),
            " FROM locations l ORDER BY l.account_id, l.id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(location_from)
        .collect()
    }

    async fn battery_by_hour(
        &self,
        account: &AccountId,
        location: &LocationId,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<crate::model::TapBatteryHour>> {
        self.location(account, location).await?;
        let rows = sqlx::query(
            "SELECT r.tap_id, r.bucket_start, \
             CAST(SUM(r.battery_sum) AS DOUBLE PRECISION) \
             / CAST(SUM(r.battery_n) AS DOUBLE PRECISION) AS battery_pct \
             FROM rollups r JOIN locations l ON l.id = r.location_id \
             WHERE r.location_id = $1 AND l.account_id = $2 AND r.bucket_ms = $3 \
             AND r.bucket_start >= $4 AND r.bucket_start < $5 AND r.battery_n > 0 \
             GROUP BY r.tap_id, r.bucket_start ORDER BY r.tap_id, r.bucket_start",
        )
        .bind(location.as_str())
        .bind(account.as_str())
        .bind(BUCKET_1_HOUR)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(crate::model::TapBatteryHour {
                    tap_id: sql::parse("tap id", row.try_get::<&str, _>("tap_id")?)?,
                    hour_start: row.try_get("bucket_start")?,
                    battery_pct: row.try_get("battery_pct")?,
                })
            })
            .collect()
    }

    async fn record_export(
        &self,
        account: &AccountId,
        export: &crate::model::ExportRecord,
    ) -> Result<crate::model::ExportRecord> {
        let row = sqlx::query(
            "INSERT INTO exports (id, account_id, location_id, format, file_name, bytes, \
             created_by, created_at) \
             SELECT $1, l.account_id, l.id, $4, $5, $6, $7, $8 FROM locations l \
             WHERE l.id = $3 AND l.account_id = $2 \
             RETURNING id, account_id, location_id, format, file_name, bytes, created_by, \
             created_at",
        )
        .bind(&export.id)
        .bind(account.as_str())
        .bind(export.location_id.as_str())
        .bind(&export.format)
        .bind(&export.file_name)
        .bind(export.bytes)
        .bind(&export.created_by)
        .bind(export.created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| conflict_as(e, || format!("export {}", export.id)))?
        .ok_or_else(|| StoreError::not_found("location", &export.location_id))?;
        export_from(&row)
    }

    async fn purge_exports(&self, before: Millis) -> Result<Vec<crate::model::ExportRecord>> {
        sqlx::query(
            "DELETE FROM exports WHERE created_at < $1 \
             RETURNING id, account_id, location_id, format, file_name, bytes, created_by, \
             created_at",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(export_from)
        .collect()
    }

    async fn claim_daily_export(
        &self,
        account: &AccountId,
        location: &LocationId,
        local_date: &str,
        at: Millis,
    ) -> Result<bool> {
        let claimed = sqlx::query(
            "INSERT INTO daily_export_runs (location_id, local_date, account_id, claimed_at) \
             SELECT l.id, $3, l.account_id, $4 FROM locations l \
             WHERE l.id = $1 AND l.account_id = $2 \
             ON CONFLICT (location_id, local_date) DO NOTHING",
        )
        .bind(location.as_str())
        .bind(account.as_str())
        .bind(local_date)
        .bind(at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if claimed == 0 {
            // Either already claimed today, or not this account's location.
            self.location(account, location).await?;
        }
        Ok(claimed == 1)
    }
}

fn export_from(row: &DbRow) -> Result<crate::model::ExportRecord> {
    Ok(crate::model::ExportRecord {
        id: row.try_get("id")?,
        account_id: sql::parse("account id", row.try_get::<&str, _>("account_id")?)?,
        location_id: sql::parse("location id", row.try_get::<&str, _>("location_id")?)?,
        format: row.try_get("format")?,
        file_name: row.try_get("file_name")?,
        bytes: row.try_get("bytes")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}
