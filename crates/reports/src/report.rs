//! The report models and their builders over the [`Store`]: what a report *says*, in the
//! location's time zone and display units, before anything renders it.
//!
//! Builders only fetch and shape: every rule (pour rate, hours of day, low-keg severity, style
//! split) is the domain crate's, every number read is from the store's rollups or hot rows. This
//! module must never render (CSV, PDF) nor touch files, and never read a clock: "now" is an
//! argument, so a report is reproducible to the millisecond.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use scalesense_alerts::LocationSettings;
use scalesense_domain::alert::Severity;
use scalesense_domain::pour::{PourSample, pour_rate, style_split, volume_by_hour_of_day};
use scalesense_domain::rules::low_keg;
use scalesense_domain::units::{EpochMs, Litres, Percent, Units};
use scalesense_store::{
    AccountId, Beer, BeerId, HourlyPour, Keg, KegId, KegState, Location, LocationId, Millis,
    Series, Store, TapView,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ReportError;

/// One hour, in milliseconds.
const HOUR_MS: Millis = 3_600_000;
/// One day, in milliseconds.
const DAY_MS: Millis = 24 * HOUR_MS;
/// The pour-by-hour report's period.
pub const POUR_BY_HOUR_DAYS: i64 = 30;
/// The battery trend's period.
pub const BATTERY_DAYS: i64 = 7;
/// How many weeks the kicked-kegs report covers (the current week included).
pub const KICKED_WEEKS: i64 = 12;
/// How far back the lifespan and style reports look.
pub const HISTORY_DAYS: i64 = 90;
/// Longest raw-reading window read per tap for its pour rate.
const MAX_POUR_SAMPLES: u32 = 20_000;

/// Who a report is for: the location, its zone and units, and the instant it describes.
#[derive(Debug, Clone)]
pub struct ReportScope {
    pub account: AccountId,
    pub location: Location,
    pub settings: LocationSettings,
    pub units: Units,
    pub now: Millis,
}

impl ReportScope {
    /// Reads the location (scoped to `account`) and parses its settings.
    pub async fn load(
        store: &dyn Store,
        account: &AccountId,
        location: &LocationId,
        now: Millis,
    ) -> Result<Self, ReportError> {
        let location = store.location(account, location).await?;
        Ok(Self::of(account.clone(), location, now))
    }

    pub fn of(account: AccountId, location: Location, now: Millis) -> Self {
        let settings = LocationSettings::of(&location);
        let units = match location.units {
            scalesense_store::Units::Metric => Units::Metric,
            scalesense_store::Units::Imperial => Units::Imperial,
        };
        Self {
            account,
            location,
            settings,
            units,
            now,
        }
    }

    pub fn tz(&self) -> &TimeZone {
        &self.settings.time_zone
    }

    /// The location's display unit for volumes: `L` or `gal`.
    pub fn volume_unit(&self) -> &'static str {
        self.units.volume_display(Litres(0.0)).1
    }

    /// Litres in the location's display unit.
    pub fn volume(&self, litres: f64) -> f64 {
        self.units.volume_display(Litres(litres)).0
    }

    /// The local calendar date of an instant (`YYYY-MM-DD`).
    pub fn local_date(&self, at: Millis) -> String {
        local_date(at, self.tz()).map_or_else(String::new, |d| d.to_string())
    }

    /// The local date and time of an instant (`YYYY-MM-DD HH:MM`).
    pub fn local_datetime(&self, at: Millis) -> String {
        Timestamp::from_millisecond(at).map_or_else(
            |_| String::new(),
            |ts| {
                self.tz()
                    .to_datetime(ts)
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            },
        )
    }

    fn header(&self) -> ReportHeader {
        ReportHeader {
            location_id: self.location.id.to_string(),
            location_name: self.location.name.clone(),
            time_zone: self.location.time_zone.clone(),
            units: match self.units {
                Units::Metric => "metric",
                Units::Imperial => "imperial",
            }
            .to_owned(),
            volume_unit: self.volume_unit().to_owned(),
            generated_at: rfc3339(self.now),
            local_date: self.local_date(self.now),
            local_time: self.local_datetime(self.now),
        }
    }
}

/// The local calendar date of `at` in `tz`.
pub fn local_date(at: Millis, tz: &TimeZone) -> Option<Date> {
    Timestamp::from_millisecond(at)
        .ok()
        .map(|ts| tz.to_datetime(ts).date())
}

/// An instant as RFC 3339 UTC.
pub fn rfc3339(at: Millis) -> String {
    Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |t| t.to_string())
}

/// What every location report starts with.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReportHeader {
    pub location_id: String,
    pub location_name: String,
    /// IANA name; every local date and hour in the report is in this zone.
    pub time_zone: String,
    /// `metric` or `imperial`.
    pub units: String,
    /// `L` or `gal`: the unit of every volume in the report.
    pub volume_unit: String,
    /// RFC 3339 UTC.
    pub generated_at: String,
    /// The local date the report was made (`YYYY-MM-DD`).
    pub local_date: String,
    /// The local date and time the report was made (`YYYY-MM-DD HH:MM`).
    pub local_time: String,
}

// --- inventory ------------------------------------------------------------------------------

/// One tap's line in the inventory snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InventoryRow {
    pub tap_id: String,
    pub tap_number: u16,
    pub tap_name: String,
    pub beer: Option<String>,
    pub style: Option<String>,
    pub keg_id: Option<String>,
    pub keg_type: Option<String>,
    /// 0–100; `null` before the first reading.
    pub level_pct: Option<f64>,
    /// In the report's `volume_unit`.
    pub volume_left: Option<f64>,
    /// At the current pour rate; `null` when unknown or nothing is being poured.
    pub hours_remaining: Option<f64>,
    /// Local date the keg was tapped (`YYYY-MM-DD`).
    pub tapped_date: Option<String>,
    /// `warning` or `critical` when the keg is low by the location's thresholds.
    pub low: Option<String>,
}

/// Every tap of a location now, with the low kegs and the 30-day pour-by-hour chart (the PDF's
/// content).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InventoryReport {
    #[serde(flatten)]
    pub header: ReportHeader,
    pub taps: Vec<InventoryRow>,
    /// Taps whose keg is low, worst first.
    pub low_kegs: Vec<InventoryRow>,
    pub pour_by_hour: PourByHourReport,
}

/// Builds the inventory snapshot.
pub async fn inventory(
    store: &dyn Store,
    scope: &ReportScope,
) -> Result<InventoryReport, ReportError> {
    let account = &scope.account;
    let taps = store.taps(account, &scope.location.id).await?;
    let kegs: HashMap<KegId, Keg> = store
        .kegs(account, &scope.location.id, Some(KegState::Tapped))
        .await?
        .into_iter()
        .map(|k| (k.id.clone(), k))
        .collect();
    let mut beers = BeerCache::default();
    let mut rows = Vec::with_capacity(taps.len());
    for view in &taps {
        let keg = view.tap.keg_id.as_ref().and_then(|id| kegs.get(id));
        let beer_id = view
            .tap
            .beer_id
            .as_ref()
            .or_else(|| keg.map(|k| &k.beer_id));
        let beer = match beer_id {
            Some(id) => beers.get(store, account, id).await?,
            None => None,
        };
        let hours_remaining = hours_remaining(store, scope, view).await?;
        rows.push(inventory_row(
            scope,
            view,
            keg,
            beer.as_ref(),
            hours_remaining,
        ));
    }
    let mut low_kegs: Vec<InventoryRow> =
        rows.iter().filter(|r| r.low.is_some()).cloned().collect();
    low_kegs.sort_by(|a, b| {
        let severity = |r: &InventoryRow| u8::from(r.low.as_deref() == Some("critical"));
        severity(b).cmp(&severity(a)).then(
            a.level_pct
                .unwrap_or(0.0)
                .total_cmp(&b.level_pct.unwrap_or(0.0)),
        )
    });
    Ok(InventoryReport {
        header: scope.header(),
        taps: rows,
        low_kegs,
        pour_by_hour: pour_by_hour(store, scope).await?,
    })
}

fn inventory_row(
    scope: &ReportScope,
    view: &TapView,
    keg: Option<&Keg>,
    beer: Option<&Beer>,
    hours_remaining: Option<f64>,
) -> InventoryRow {
    let level = view.state.level_pct.filter(|l| l.is_finite());
    let low = match (keg, level) {
        (Some(_), Some(level)) => low_keg(
            Percent(level),
            hours_remaining,
            None,
            &scope.settings.thresholds,
        )
        .map(|s| match s {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }),
        _ => None,
    };
    InventoryRow {
        tap_id: view.tap.id.to_string(),
        tap_number: view.tap.number,
        tap_name: view.tap.name.clone(),
        beer: beer.map(|b| b.name.clone()),
        style: beer.map(|b| b.style.clone()),
        keg_id: keg.map(|k| k.id.to_string()),
        keg_type: keg.map(|k| k.keg_type.clone()),
        level_pct: keg.and(level),
        volume_left: keg
            .and(view.state.volume_l)
            .map(|v| scope.volume(v.max(0.0))),
        hours_remaining,
        tapped_date: keg.and_then(|k| k.tapped_at).map(|t| scope.local_date(t)),
        low: low.map(str::to_owned),
    }
}

/// Hours left on the tap's keg at the pour rate over the location's window (domain rule).
async fn hours_remaining(
    store: &dyn Store,
    scope: &ReportScope,
    view: &TapView,
) -> Result<Option<f64>, ReportError> {
    let Some(keg) = &view.tap.keg_id else {
        return Ok(None);
    };
    let config = scope.settings.pour_rate;
    let start = EpochMs(scope.now).minus(config.window()).0;
    let readings = store
        .readings(
            &scope.account,
            &Series::Keg(keg.clone()),
            start,
            scope.now.saturating_add(1),
            MAX_POUR_SAMPLES,
        )
        .await?;
    let samples: Vec<PourSample<()>> = readings
        .iter()
        .filter_map(|r| {
            r.volume_l.map(|v| PourSample {
                at: EpochMs(r.ts),
                volume: Litres(v),
                keg: (),
                in_maintenance: false,
            })
        })
        .collect();
    Ok(pour_rate(&samples, EpochMs(scope.now), &config).and_then(|r| r.hours_remaining))
}

/// Beers by id, each read once per report.
#[derive(Debug, Default)]
struct BeerCache(HashMap<BeerId, Option<Beer>>);

impl BeerCache {
    async fn get(
        &mut self,
        store: &dyn Store,
        account: &AccountId,
        id: &BeerId,
    ) -> Result<Option<Beer>, ReportError> {
        if let Some(beer) = self.0.get(id) {
            return Ok(beer.clone());
        }
        let beer = match store.beer(account, id).await {
            Ok(b) => Some(b),
            Err(scalesense_store::StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        self.0.insert(id.clone(), beer.clone());
        Ok(beer)
    }
}

// --- pour volume by hour of day -------------------------------------------------------------

/// One local hour of the day.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HourBar {
    /// 0–23, local wall-clock hour.
    pub hour: u8,
    /// Volume poured in this hour over the whole period, in `volume_unit`.
    pub total: f64,
    /// `total / days`.
    pub average_per_day: f64,
}

/// Volume poured per local hour of the day over the last 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PourByHourReport {
    #[serde(flatten)]
    pub header: ReportHeader,
    /// RFC 3339 UTC, inclusive.
    pub start: String,
    /// RFC 3339 UTC, exclusive.
    pub end: String,
    /// Local calendar days the period touches.
    pub days: u32,
    /// Always 24 entries, hour 0 first.
    pub hours: Vec<HourBar>,
}

/// Builds the 30-day pour-by-hour report from the hourly rollups.
pub async fn pour_by_hour(
    store: &dyn Store,
    scope: &ReportScope,
) -> Result<PourByHourReport, ReportError> {
    let end = scope.now;
    let start = end - POUR_BY_HOUR_DAYS * DAY_MS;
    let hourly = store
        .pour_by_hour(&scope.account, &scope.location.id, start, end)
        .await?;
    Ok(pour_by_hour_from(scope, &hourly, start, end))
}

/// The pure half of [`pour_by_hour`]: folds UTC hourly totals into local hours of the day.
/// Each UTC hour is attributed to the local hour its start falls in (whole-hour zones are
/// exact; on the spring-forward day the skipped hour gets nothing, on the fall-back day the
/// repeated hour gets both).
pub fn pour_by_hour_from(
    scope: &ReportScope,
    hourly: &[HourlyPour],
    start: Millis,
    end: Millis,
) -> PourByHourReport {
    let pours: Vec<(EpochMs, Litres)> = hourly
        .iter()
        .map(|h| (EpochMs(h.hour_start), Litres(h.poured_l)))
        .collect();
    let folded = volume_by_hour_of_day(&pours, EpochMs(start), EpochMs(end), scope.tz());
    let averages = folded.average_per_day();
    PourByHourReport {
        header: scope.header(),
        start: rfc3339(start),
        end: rfc3339(end),
        days: folded.days,
        hours: (0u8..24)
            .map(|h| HourBar {
                hour: h,
                total: scope.volume(folded.totals[usize::from(h)]),
                average_per_day: scope.volume(averages[usize::from(h)]),
            })
            .collect(),
    }
}

// --- kegs: lifespans, styles, kicked per week ------------------------------------------------

/// One keg's life.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LifespanRow {
    pub keg_id: String,
    pub beer: String,
    pub style: String,
    pub keg_type: String,
    pub tap_id: Option<String>,
    /// `tapped`, `kicked` or `removed`.
    pub state: String,
    /// Local `YYYY-MM-DD HH:MM`.
    pub tapped_at: Option<String>,
    /// Local `YYYY-MM-DD HH:MM`: the kick, or the last reading while still on.
    pub ended_at: Option<String>,
    pub kicked: bool,
    /// From tapping to `ended_at`.
    pub lifespan_hours: Option<f64>,
    /// In `volume_unit`.
    pub poured: f64,
}

/// Keg lifespans over the last 90 days, newest tapping first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LifespanReport {
    #[serde(flatten)]
    pub header: ReportHeader,
    pub kegs: Vec<LifespanRow>,
    /// Mean lifespan of the kicked kegs, hours.
    pub average_kicked_hours: Option<f64>,
}

/// One beer style's share.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StyleRow {
    pub style: String,
    /// In `volume_unit`.
    pub volume: f64,
    /// 0–100.
    pub share_pct: f64,
}

/// Volume poured by beer style over the last 30 days, largest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StyleReport {
    #[serde(flatten)]
    pub header: ReportHeader,
    pub days: i64,
    pub styles: Vec<StyleRow>,
}

/// Kegs kicked in one local week.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WeekCount {
    /// The week's Monday, local (`YYYY-MM-DD`).
    pub week_start: String,
    pub kicked: u32,
}

/// Kegs kicked per local week (Monday to Sunday) over the last 12 weeks, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KickedReport {
    #[serde(flatten)]
    pub header: ReportHeader,
    pub weeks: Vec<WeekCount>,
}

/// Keg lifespans from the rollups (keg report) and the keg records.
pub async fn lifespans(
    store: &dyn Store,
    scope: &ReportScope,
) -> Result<LifespanReport, ReportError> {
    let start = scope.now - HISTORY_DAYS * DAY_MS;
    let rows = store
        .keg_report(&scope.account, &scope.location.id, start, scope.now)
        .await?;
    let mut beers = BeerCache::default();
    let mut kegs = Vec::with_capacity(rows.len());
    for row in rows {
        let beer = beers.get(store, &scope.account, &row.beer_id).await?;
        let ended = row.kicked_at.or(row.last_reading);
        let lifespan_hours = match (row.tapped_at, ended) {
            (Some(t), Some(e)) if e >= t => Some((e - t) as f64 / HOUR_MS as f64),
            _ => None,
        };
        kegs.push((
            row.tapped_at.unwrap_or(i64::MIN),
            LifespanRow {
                keg_id: row.keg_id.to_string(),
                beer: beer
                    .as_ref()
                    .map_or_else(|| row.beer_id.to_string(), |b| b.name.clone()),
                style: beer.map_or_else(String::new, |b| b.style),
                keg_type: row.keg_type,
                tap_id: row.tap_id.map(|t| t.to_string()),
                state: row.state.as_str().to_owned(),
                tapped_at: row.tapped_at.map(|t| scope.local_datetime(t)),
                ended_at: ended.map(|t| scope.local_datetime(t)),
                kicked: row.kicked_at.is_some(),
                lifespan_hours,
                poured: scope.volume(row.poured_l),
            },
        ));
    }
    kegs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.keg_id.cmp(&b.1.keg_id)));
    let kicked: Vec<f64> = kegs
        .iter()
        .filter(|(_, k)| k.kicked)
        .filter_map(|(_, k)| k.lifespan_hours)
        .collect();
    let average_kicked_hours =
        (!kicked.is_empty()).then(|| kicked.iter().sum::<f64>() / kicked.len() as f64);
    Ok(LifespanReport {
        header: scope.header(),
        kegs: kegs.into_iter().map(|(_, k)| k).collect(),
        average_kicked_hours,
    })
}

/// Volume poured per style over the last 30 days (each keg's poured volume to its beer's
/// style; the domain's split).
pub async fn styles(store: &dyn Store, scope: &ReportScope) -> Result<StyleReport, ReportError> {
    let start = scope.now - POUR_BY_HOUR_DAYS * DAY_MS;
    let rows = store
        .keg_report(&scope.account, &scope.location.id, start, scope.now)
        .await?;
    let mut beers = BeerCache::default();
    let mut pours: Vec<(String, Litres)> = Vec::with_capacity(rows.len());
    for row in rows {
        let style = beers
            .get(store, &scope.account, &row.beer_id)
            .await?
            .map_or_else(|| "Unknown".to_owned(), |b| b.style);
        pours.push((style, Litres(row.poured_l)));
    }
    let split = style_split(pours.iter().map(|(s, l)| (s.as_str(), *l)));
    Ok(StyleReport {
        header: scope.header(),
        days: POUR_BY_HOUR_DAYS,
        styles: split
            .into_iter()
            .map(|s| StyleRow {
                style: s.style,
                volume: scope.volume(s.volume.0),
                share_pct: s.share.0,
            })
            .collect(),
    })
}

/// Kegs kicked per local week.
pub async fn kicked(store: &dyn Store, scope: &ReportScope) -> Result<KickedReport, ReportError> {
    let mut kicked_at: Vec<Millis> = Vec::new();
    for state in [KegState::Kicked, KegState::Removed] {
        kicked_at.extend(
            store
                .kegs(&scope.account, &scope.location.id, Some(state))
                .await?
                .iter()
                .filter_map(|k| k.kicked_at),
        );
    }
    Ok(KickedReport {
        header: scope.header(),
        weeks: kicked_per_week(&kicked_at, scope.now, scope.tz(), KICKED_WEEKS),
    })
}

/// The Monday of `date`'s week.
fn monday_of(date: Date) -> Option<Date> {
    let back = i64::from(date.weekday().to_monday_zero_offset());
    date.checked_sub(jiff::Span::new().days(back)).ok()
}

/// Counts `kicked_at` instants per local week, for the `weeks` weeks ending with `now`'s.
pub fn kicked_per_week(
    kicked_at: &[Millis],
    now: Millis,
    tz: &TimeZone,
    weeks: i64,
) -> Vec<WeekCount> {
    let Some(this_week) = local_date(now, tz).and_then(monday_of) else {
        return Vec::new();
    };
    let mut counts: BTreeMap<Date, u32> = BTreeMap::new();
    for back in 0..weeks {
        if let Ok(week) = this_week.checked_sub(jiff::Span::new().weeks(back)) {
            counts.insert(week, 0);
        }
    }
    for &at in kicked_at {
        if let Some(week) = local_date(at, tz).and_then(monday_of)
            && let Some(n) = counts.get_mut(&week)
        {
            *n += 1;
        }
    }
    counts
        .into_iter()
        .map(|(week, kicked)| WeekCount {
            week_start: week.to_string(),
            kicked,
        })
        .collect()
}

// --- battery ------------------------------------------------------------------------------

/// One hour of one scale's battery.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BatteryPoint {
    /// Start of the UTC hour, RFC 3339.
    pub t: String,
    pub battery_pct: f64,
}

/// One scale's battery over the last 7 days (hourly means of its tap's readings).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeviceBattery {
    /// The scale on the tap now; `null` when the tap has none any more.
    pub device_id: Option<String>,
    pub tap_id: String,
    pub tap_name: String,
    pub points: Vec<BatteryPoint>,
    pub latest_pct: Option<f64>,
}

/// Battery trend per scale over the last 7 days.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BatteryReport {
    #[serde(flatten)]
    pub header: ReportHeader,
    pub devices: Vec<DeviceBattery>,
}

/// Battery trend from the hourly rollups, one line per tap that had readings.
pub async fn battery(store: &dyn Store, scope: &ReportScope) -> Result<BatteryReport, ReportError> {
    let start = scope.now - BATTERY_DAYS * DAY_MS;
    let hours = store
        .battery_by_hour(&scope.account, &scope.location.id, start, scope.now)
        .await?;
    let taps = store.taps(&scope.account, &scope.location.id).await?;
    let mut devices = Vec::new();
    for view in taps {
        let points: Vec<BatteryPoint> = hours
            .iter()
            .filter(|h| h.tap_id == view.tap.id)
            .map(|h| BatteryPoint {
                t: rfc3339(h.hour_start),
                battery_pct: h.battery_pct,
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        devices.push(DeviceBattery {
            device_id: view.tap.device_id.map(|d| d.to_string()),
            tap_id: view.tap.id.to_string(),
            tap_name: view.tap.name,
            latest_pct: points.last().map(|p| p.battery_pct),
            points,
        });
    }
    Ok(BatteryReport {
        header: scope.header(),
        devices,
    })
}

/// How long a download link stays valid, and how long files are kept.
pub const LINK_TTL: Duration = Duration::from_mins(15);
/// Generated files are removed after this.
pub const FILE_TTL: Duration = Duration::from_hours(24);

#[cfg(test)]
#[allow(clippy::float_cmp, clippy::unwrap_used)]
mod tests {
    use super::*;
    use scalesense_store::Units as StoreUnits;

    fn scope(tz: &str, units: StoreUnits, now: Millis) -> ReportScope {
        let location = Location {
            id: LocationId::try_from("loc-001").unwrap(),
            account_id: AccountId::try_from("acme").unwrap(),
            name: "The Anchor".into(),
            address: String::new(),
            time_zone: tz.into(),
            units,
            settings: serde_json::json!({}),
            created_at: 0,
        };
        ReportScope::of(location.account_id.clone(), location, now)
    }

    fn ms(s: &str) -> Millis {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn hour_of_day_follows_berlin_on_the_spring_forward_day() {
        // 2026-03-29: 02:00 CET → 03:00 CEST. UTC 00:00 is 01:00 local, UTC 01:00 is 03:00.
        let s = scope(
            "Europe/Berlin",
            StoreUnits::Metric,
            ms("2026-03-30T00:00:00Z"),
        );
        let hourly = [
            HourlyPour {
                hour_start: ms("2026-03-29T00:00:00Z"),
                poured_l: 1.0,
            },
            HourlyPour {
                hour_start: ms("2026-03-29T01:00:00Z"),
                poured_l: 2.0,
            },
            HourlyPour {
                hour_start: ms("2026-03-29T02:00:00Z"),
                poured_l: 4.0,
            },
            HourlyPour {
                hour_start: ms("2026-03-28T23:00:00Z"),
                poured_l: 8.0,
            },
        ];
        let r = pour_by_hour_from(
            &s,
            &hourly,
            ms("2026-03-28T23:00:00Z"),
            ms("2026-03-29T22:00:00Z"),
        );
        let total = |h: usize| r.hours[h].total;
        assert_eq!(total(0), 8.0, "23:00 UTC on the 28th is midnight CET");
        assert_eq!(total(1), 1.0);
        assert_eq!(total(2), 0.0, "the skipped hour gets nothing");
        assert_eq!(total(3), 2.0);
        assert_eq!(total(4), 4.0);
        assert_eq!(r.days, 1, "one local day");
        assert_eq!(r.hours.len(), 24);
    }

    #[test]
    fn hour_of_day_follows_berlin_on_the_fall_back_day() {
        // 2026-10-25: 03:00 CEST → 02:00 CET. UTC 00:00 and 01:00 are both 02:00 local.
        let s = scope(
            "Europe/Berlin",
            StoreUnits::Imperial,
            ms("2026-10-26T00:00:00Z"),
        );
        let hourly = [
            HourlyPour {
                hour_start: ms("2026-10-24T23:00:00Z"),
                poured_l: 1.0,
            },
            HourlyPour {
                hour_start: ms("2026-10-25T00:00:00Z"),
                poured_l: 2.0,
            },
            HourlyPour {
                hour_start: ms("2026-10-25T01:00:00Z"),
                poured_l: 4.0,
            },
            HourlyPour {
                hour_start: ms("2026-10-25T02:00:00Z"),
                poured_l: 8.0,
            },
        ];
        let r = pour_by_hour_from(
            &s,
            &hourly,
            ms("2026-10-24T22:00:00Z"),
            ms("2026-10-25T23:00:00Z"),
        );
        let litres = |h: usize| Litres::from_us_gallons(r.hours[h].total).0;
        assert!((litres(1) - 1.0).abs() < 1e-9);
        assert!((litres(2) - 6.0).abs() < 1e-9, "both 02:00 hours");
        assert!((litres(3) - 8.0).abs() < 1e-9);
        assert_eq!(r.header.volume_unit, "gal");
    }

    #[test]
    fn kicked_kegs_count_per_local_monday_week() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        // Sunday 2026-03-29 23:30 local (21:30 UTC) is still in the week of Monday 03-23;
        // Monday 2026-03-30 00:30 local (22:30 UTC on the 29th) is the next week.
        let kicked = [
            ms("2026-03-29T21:30:00Z"),
            ms("2026-03-29T22:30:00Z"),
            ms("2026-03-31T12:00:00Z"),
            ms("2025-01-01T12:00:00Z"),
        ];
        let weeks = kicked_per_week(&kicked, ms("2026-04-01T12:00:00Z"), &tz, 3);
        let got: Vec<(&str, u32)> = weeks
            .iter()
            .map(|w| (w.week_start.as_str(), w.kicked))
            .collect();
        assert_eq!(
            got,
            vec![("2026-03-16", 0), ("2026-03-23", 1), ("2026-03-30", 2)]
        );
    }

    #[test]
    fn header_uses_local_date_and_units() {
        let s = scope(
            "Europe/Berlin",
            StoreUnits::Metric,
            ms("2026-03-28T23:30:00Z"),
        );
        let h = s.header();
        assert_eq!(h.local_date, "2026-03-29");
        assert_eq!(h.local_time, "2026-03-29 00:30");
        assert_eq!(h.volume_unit, "L");
        let unknown = scope(
            "Mars/Olympus",
            StoreUnits::Metric,
            ms("2026-03-28T23:30:00Z"),
        );
        assert_eq!(
            unknown.header().local_date,
            "2026-03-28",
            "unknown zones read as UTC"
        );
    }
}
