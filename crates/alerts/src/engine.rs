//! The alert engine: runs the domain's alert machine (`AlertBook`) and rules on stored data,
//! writes every change to the store, tells the dashboard at once and queues notifications.
//!
//! The store is the record, the book only a calculator: each evaluation rebuilds a location's
//! book from its active alerts and the grace rows of the keys it looks at, applies the rules'
//! verdicts, and writes the transitions back (grace row, active row, append-only history). So a
//! restart, or a second replica evaluating the same location, resumes grace periods where they
//! were and never fires an alert that is already active: the active table is unique per
//! (location, kind, entity), and an alert another evaluation fired first is left alone (no
//! second event, no second notification).
//!
//! Grace periods apply to measurements that can glitch (low keg, low battery). Time-based
//! conditions (scale offline, stale readings) already mean "held for N seconds", and calibration
//! drift is measured once per calibration, so those fire as soon as their rule says so.
//!
//! What this module must never do: send anything itself (notifications go through the outbox,
//! delivered by [`crate::OutboxWorker`]), hold a live event for quiet hours, or raise a low-keg
//! alert from the readings of a tap in maintenance.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use scalesense_domain::alert::{
    self as dom, AlertBook, AlertKind, AlertState as DomState, Condition, Severity, Transition,
    TransitionKind,
};
use scalesense_domain::pour::{PourRate, PourSample, pour_rate};
use scalesense_domain::rules;
use scalesense_domain::units::{EpochMs, Litres, Percent, duration_ms};
use scalesense_store::{
    self as st, AccountId, AlertChange, AlertState, BeerId, Channel, ChannelKind, Device, DeviceId,
    DeviceStatus, Enqueued, IngestOutcome, IngestReading, KegId, Location, LocationId,
    NewNotification, ReadingOutcome, Store, StoreError, StoredReading, TapId, TapView,
};
use tokio::sync::{Mutex, Notify};

use crate::clock::Clock;
use crate::context::AlertContext;
use crate::digest::store_severity_to_domain;
use crate::error::AlertsError;
use crate::events::{AlertEvent, AlertEvents};
use crate::notify::{AlertNotice, DigestNotice, NoticeEvent, Notification, alert_key, digest_key};
use crate::settings::{ChannelRules, LocationSettings};

/// Readings fetched for one pour-rate window: a reading every 10 s over 6 h is 2,160.
const POUR_WINDOW_READINGS: u32 = 20_000;

/// What committed readings and statuses touched, for [`AlertEngine::after_batch`]. Built by the
/// ingest pipeline after its commit; merging two summaries loses nothing the engine needs (it
/// reads the current state from the store).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSummary {
    /// Taps with a new reading: the account, location and the scale that sent it.
    readings: BTreeMap<TapId, (AccountId, LocationId, DeviceId)>,
    /// Scales whose status was recorded, as the store returned them.
    statuses: BTreeMap<DeviceId, Device>,
}

impl BatchSummary {
    pub fn new() -> Self {
        Self::default()
    }

    /// A reading `device` sent that the store kept (`ReadingOutcome::Stored`).
    pub fn add_reading(&mut self, device: &DeviceId, stored: &StoredReading) {
        self.readings.insert(
            stored.tap_id.clone(),
            (
                stored.account_id.clone(),
                stored.location_id.clone(),
                device.clone(),
            ),
        );
    }

    /// Every stored reading of one `ingest_batch` call (`outcome` is in input order).
    pub fn add_ingest(&mut self, readings: &[IngestReading], outcome: &IngestOutcome) {
        for (reading, result) in readings.iter().zip(&outcome.readings) {
            if let ReadingOutcome::Stored(stored) = result {
                self.add_reading(&reading.device_id, stored);
            }
        }
    }

    /// A status the store recorded (`record_device_status` returned the device).
    pub fn add_status(&mut self, device: &Device) {
        self.statuses.insert(device.id.clone(), device.clone());
    }

    pub fn merge(&mut self, other: Self) {
        self.readings.extend(other.readings);
        self.statuses.extend(other.statuses);
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.statuses.is_empty()
    }
}

/// What one evaluation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvalReport {
    pub fired: usize,
    pub escalated: usize,
    pub cleared: usize,
    /// Outbox items newly queued (a digest item already queued is not counted again).
    pub queued: usize,
    /// Locations whose evaluation failed (logged; the next evaluation retries).
    pub failed_locations: usize,
}

impl EvalReport {
    fn add(&mut self, other: Self) {
        self.fired += other.fired;
        self.escalated += other.escalated;
        self.cleared += other.cleared;
        self.queued += other.queued;
        self.failed_locations += other.failed_locations;
    }
}

/// One rule verdict to apply.
struct Check {
    key: dom::AlertKey,
    severity: Option<Severity>,
    context: AlertContext,
    grace: Duration,
    /// Look up the key's grace row even when the condition is clear, so a grace period that
    /// another evaluation started is abandoned. Without it a clear verdict only resolves an
    /// active alert.
    probe_when_clear: bool,
    /// The tap is in maintenance: its readings are no evidence either way. Only a running
    /// grace period is abandoned (it must not fire on a keg being swapped); an active alert is
    /// left as it is.
    maintenance: bool,
}

/// One location's stored state for one evaluation.
struct Run {
    account: AccountId,
    location: Location,
    settings: LocationSettings,
    active: HashMap<dom::AlertKey, st::Alert>,
    taps: HashMap<TapId, TapView>,
    now: i64,
    channels: Option<Vec<Channel>>,
    beers: HashMap<BeerId, Option<String>>,
}

impl Run {
    fn key(&self, kind: AlertKind, entity: &str) -> dom::AlertKey {
        dom::AlertKey {
            location: self.location.id.clone(),
            kind,
            entity: entity.to_owned(),
        }
    }

    /// The severity of the key's active alert: the rules' hysteresis starts from it.
    fn open_severity(&self, key: &dom::AlertKey) -> Option<Severity> {
        self.active
            .get(key)
            .and_then(book_alert)
            .filter(|a| a.state.is_open())
            .map(|a| a.severity)
    }

    fn tap_of_device(&self, device: &str) -> Option<TapId> {
        self.taps
            .values()
            .find(|v| {
                v.tap
                    .device_id
                    .as_ref()
                    .is_some_and(|d| d.as_str() == device)
            })
            .map(|v| v.tap.id.clone())
    }
}

fn to_store_severity(severity: Severity) -> st::Severity {
    match severity {
        Severity::Warning => st::Severity::Warning,
        Severity::Critical => st::Severity::Critical,
    }
}

fn store_key(key: &dom::AlertKey) -> st::AlertKey {
    st::AlertKey {
        location_id: key.location.clone(),
        kind: key.kind.as_str().to_owned(),
        entity: key.entity.clone(),
    }
}

/// An active row as the book holds it. `None` for kinds this version does not know.
fn book_alert(a: &st::Alert) -> Option<dom::Alert> {
    let kind: AlertKind = a.kind.parse().ok()?;
    let state = match a.state {
        AlertState::Firing => DomState::Firing {
            since: EpochMs(a.fired_at),
        },
        AlertState::Active => DomState::Active,
        AlertState::Escalated => DomState::Escalated,
        AlertState::Acknowledged => DomState::Acknowledged {
            by: a.acknowledged_by.clone().unwrap_or_default(),
            at: EpochMs(a.acknowledged_at.unwrap_or(a.updated_at)),
        },
        AlertState::Resolved => return None,
    };
    let context = AlertContext::from_json(&a.context);
    let fired = !matches!(a.state, AlertState::Firing);
    Some(dom::Alert {
        key: dom::AlertKey {
            location: a.location_id.clone(),
            kind,
            entity: a.entity.clone(),
        },
        severity: store_severity_to_domain(a.severity),
        state,
        first_seen: EpochMs(context.first_seen.unwrap_or(a.fired_at)),
        due_at: EpochMs(a.fired_at),
        fired_at: fired.then_some(EpochMs(a.fired_at)),
        last_seen: EpochMs(a.updated_at),
        resolved_at: None,
        context: context.to_text(),
    })
}

/// A grace row as the book holds it: firing since it started, due when it expires.
fn grace_alert(key: &dom::AlertKey, g: &st::Grace) -> dom::Alert {
    dom::Alert {
        key: key.clone(),
        severity: store_severity_to_domain(g.severity),
        state: DomState::Firing {
            since: EpochMs(g.started_at),
        },
        first_seen: EpochMs(g.started_at),
        due_at: EpochMs(g.expires_at),
        fired_at: None,
        last_seen: EpochMs(g.started_at),
        resolved_at: None,
        context: AlertContext::default().to_text(),
    }
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict { .. })
}

fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::NotFound { .. })
}

/// A change that was committed and that people are told about.
struct Committed {
    event: NoticeEvent,
    key: dom::AlertKey,
    severity: Severity,
    state: &'static str,
    fired_at: i64,
    at: i64,
    context: AlertContext,
}

/// Grace periods the scheduler must promote when due even if nothing observes their key
/// again (a scale that stopped sending while its keg was low): every grace row found by
/// [`AlertEngine::load`] and every one this process started.
#[derive(Debug, Default)]
struct Watched {
    graces: HashMap<dom::AlertKey, AccountId>,
}

/// Runs the alert rules after each committed batch and on every scheduler tick.
#[derive(Debug)]
pub struct AlertEngine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn AlertEvents>,
    outbox: Arc<Notify>,
    /// Also serialises evaluations in this process, so one key is never evaluated twice at once.
    watched: Mutex<Watched>,
}

impl AlertEngine {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, events: Arc<dyn AlertEvents>) -> Self {
        Self {
            store,
            clock,
            events,
            outbox: Arc::new(Notify::new()),
            watched: Mutex::new(Watched::default()),
        }
    }

    /// Woken whenever a notification is queued that is due at once: the outbox worker waits on
    /// it so an e-mail leaves within moments, not at the next poll.
    pub fn outbox_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.outbox)
    }

    /// Finds every grace period in the store, so the scheduler promotes them when due even if
    /// their condition is never observed again. Call at start-up and whenever this replica
    /// becomes the scheduler's leader. Returns how many were found.
    pub async fn load(&self) -> Result<usize, AlertsError> {
        // Every device of every account: the store has no all-devices listing, and "silent since
        // the end of time" is all of them.
        let devices = self.store.silent_devices(i64::MAX).await?;
        let mut watched = self.watched.lock().await;
        watched.graces.clear();
        for device in &devices {
            let Some(location) = &device.location_id else {
                continue;
            };
            let mut keys: Vec<(AlertKind, String)> = [
                AlertKind::ScaleOffline,
                AlertKind::LowBattery,
                AlertKind::CalibrationDrift,
                AlertKind::StaleReadings,
            ]
            .into_iter()
            .map(|k| (k, device.id.to_string()))
            .collect();
            if let Some(tap) = &device.tap_id {
                keys.push((AlertKind::LowKeg, tap.to_string()));
            }
            for (kind, entity) in keys {
                let key = dom::AlertKey {
                    location: location.clone(),
                    kind,
                    entity,
                };
                if self
                    .store
                    .grace(&device.account_id, &store_key(&key))
                    .await?
                    .is_some()
                {
                    watched.graces.insert(key, device.account_id.clone());
                }
            }
        }
        tracing::info!(grace_periods = watched.graces.len(), "alert engine loaded");
        Ok(watched.graces.len())
    }

    /// Evaluates what a committed batch touched: low keg (level and hours remaining over the
    /// location's pour-rate window) for every tap with a new reading, low battery for every
    /// scale heard from, and clears offline / stale alerts of scales that spoke again. A
    /// location whose evaluation fails is logged and counted in `failed_locations`; the others
    /// are evaluated all the same.
    pub async fn after_batch(&self, batch: &BatchSummary) -> EvalReport {
        type Work = (Vec<(TapId, DeviceId)>, Vec<Device>);
        let mut by_location: BTreeMap<(AccountId, LocationId), Work> = BTreeMap::new();
        for (tap, (account, location, device)) in &batch.readings {
            by_location
                .entry((account.clone(), location.clone()))
                .or_default()
                .0
                .push((tap.clone(), device.clone()));
        }
        for device in batch.statuses.values() {
            if let Some(location) = &device.location_id {
                by_location
                    .entry((device.account_id.clone(), location.clone()))
                    .or_default()
                    .1
                    .push(device.clone());
            }
        }
        let now = self.clock.now_ms();
        let mut watched = self.watched.lock().await;
        let mut report = EvalReport::default();
        for ((account, location), (readings, statuses)) in by_location {
            let result = self
                .batch_location(&mut watched, &account, &location, &readings, &statuses, now)
                .await;
            report.add(Self::settle(&location, result));
        }
        report
    }

    /// A calibration landed for `device`: raises or clears calibration drift at once (a drift
    /// is measured once, it cannot glitch). A calibration without a drift figure clears it.
    pub async fn on_calibration(
        &self,
        account: &AccountId,
        device: &DeviceId,
        drift_pct: Option<f64>,
    ) -> Result<EvalReport, AlertsError> {
        let device = self.store.device(account, device).await?;
        let Some(location) = &device.location_id else {
            return Ok(EvalReport::default());
        };
        let now = self.clock.now_ms();
        let mut watched = self.watched.lock().await;
        let mut run = self.open_run(account, location, now).await?;
        let severity =
            drift_pct.and_then(|d| rules::calibration_drift(Percent(d), &run.settings.thresholds));
        let check = Check {
            key: run.key(AlertKind::CalibrationDrift, device.id.as_str()),
            severity,
            context: AlertContext {
                device_id: Some(device.id.clone()),
                tap_id: device.tap_id.clone(),
                drift_pct,
                ..AlertContext::default()
            },
            grace: Duration::ZERO,
            probe_when_clear: false,
            maintenance: false,
        };
        self.apply(&mut watched, &mut run, vec![check], false, Vec::new())
            .await
    }

    /// The scheduler's minute: scale offline (warning past `offline_warning_secs`, critical
    /// past `offline_critical_secs` since the scale was last heard from, by reading or status),
    /// stale readings (online, but no reading for `stale_readings_secs`), and every grace
    /// period that has run out.
    pub async fn tick(&self) -> Result<EvalReport, AlertsError> {
        let now = self.clock.now_ms();
        // Every device (see `load`): offline is decided per device with its location's thresholds.
        let devices = self.store.silent_devices(i64::MAX).await?;
        let mut watched = self.watched.lock().await;
        let mut by_location: BTreeMap<(AccountId, LocationId), Vec<Device>> = BTreeMap::new();
        for device in devices {
            if let Some(location) = device.location_id.clone() {
                by_location
                    .entry((device.account_id.clone(), location))
                    .or_default()
                    .push(device);
            }
        }
        for (key, account) in &watched.graces {
            by_location
                .entry((account.clone(), key.location.clone()))
                .or_default();
        }
        let mut report = EvalReport::default();
        for ((account, location), devices) in by_location {
            let result = self
                .tick_location(&mut watched, &account, &location, &devices, now)
                .await;
            report.add(Self::settle(&location, result));
        }
        Ok(report)
    }

    fn settle(location: &LocationId, result: Result<EvalReport, AlertsError>) -> EvalReport {
        result.unwrap_or_else(|e| {
            tracing::warn!(location = %location, error = %e, "alert evaluation failed; retried at the next batch or tick");
            EvalReport {
                failed_locations: 1,
                ..EvalReport::default()
            }
        })
    }

    async fn open_run(
        &self,
        account: &AccountId,
        location: &LocationId,
        now: i64,
    ) -> Result<Run, AlertsError> {
        let location = self.store.location(account, location).await?;
        let settings = LocationSettings::of(&location);
        let active = self
            .store
            .active_alerts(account, &location.id)
            .await?
            .into_iter()
            .filter_map(|a| {
                let kind: AlertKind = a.kind.parse().ok()?;
                let key = dom::AlertKey {
                    location: a.location_id.clone(),
                    kind,
                    entity: a.entity.clone(),
                };
                Some((key, a))
            })
            .collect();
        let taps = self
            .store
            .taps(account, &location.id)
            .await?
            .into_iter()
            .map(|v| (v.tap.id.clone(), v))
            .collect();
        Ok(Run {
            account: account.clone(),
            location,
            settings,
            active,
            taps,
            now,
            channels: None,
            beers: HashMap::new(),
        })
    }

    async fn batch_location(
        &self,
        watched: &mut Watched,
        account: &AccountId,
        location: &LocationId,
        readings: &[(TapId, DeviceId)],
        statuses: &[Device],
        now: i64,
    ) -> Result<EvalReport, AlertsError> {
        let mut run = self.open_run(account, location, now).await?;
        let thresholds = run.settings.thresholds;
        let grace = thresholds.grace_period();
        let mut checks = Vec::new();
        for (tap, device) in readings {
            let Some(view) = run.taps.get(tap) else {
                continue;
            };
            let key = run.key(AlertKind::LowKeg, tap.as_str());
            if let Some(level) = view.state.level_pct {
                let mut context = AlertContext {
                    tap_id: Some(tap.clone()),
                    tap_name: Some(view.tap.name.clone()),
                    device_id: Some(device.clone()),
                    level_pct: Some(level),
                    volume_l: view.state.volume_l,
                    ..AlertContext::default()
                };
                let (severity, maintenance) = if view.state.maintenance {
                    (None, true)
                } else {
                    let hours = self
                        .pour_rate(&run, view)
                        .await?
                        .and_then(|r| r.hours_remaining);
                    context.hours_remaining = hours;
                    let current = run.open_severity(&key);
                    (
                        rules::low_keg(Percent(level), hours, current, &thresholds),
                        false,
                    )
                };
                checks.push(Check {
                    key,
                    severity,
                    context,
                    grace,
                    probe_when_clear: true,
                    maintenance,
                });
            }
            // A reading proves the scale is online and sending readings.
            for kind in [AlertKind::ScaleOffline, AlertKind::StaleReadings] {
                checks.push(Self::clear_only(&run, kind, device));
            }
            checks.push(self.battery_check(&run, device, Some(tap)).await?);
        }
        for device in statuses {
            if readings.iter().any(|(_, d)| *d == device.id) {
                continue;
            }
            let last = device.last_seen.unwrap_or(device.created_at);
            if rules::scale_offline(EpochMs(last), EpochMs(now), &thresholds).is_none() {
                checks.push(Self::clear_only(&run, AlertKind::ScaleOffline, &device.id));
            }
            checks.push(
                self.battery_check(&run, &device.id, device.tap_id.as_ref())
                    .await?,
            );
        }
        self.apply(watched, &mut run, checks, false, Vec::new())
            .await
    }

    /// A verdict that only resolves an active alert (the scheduler raises these kinds).
    fn clear_only(run: &Run, kind: AlertKind, device: &DeviceId) -> Check {
        Check {
            key: run.key(kind, device.as_str()),
            severity: None,
            context: AlertContext {
                device_id: Some(device.clone()),
                silent_secs: Some(0),
                ..AlertContext::default()
            },
            grace: Duration::ZERO,
            probe_when_clear: false,
            maintenance: false,
        }
    }

    async fn battery_check(
        &self,
        run: &Run,
        device: &DeviceId,
        tap: Option<&TapId>,
    ) -> Result<Check, AlertsError> {
        let key = run.key(AlertKind::LowBattery, device.as_str());
        let battery = match self.store.telemetry(&run.account, device).await {
            Ok(t) => t.battery_pct,
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e.into()),
        };
        let severity = match battery {
            Some(pct) => rules::low_battery(
                Percent(pct),
                run.open_severity(&key),
                &run.settings.thresholds,
            ),
            // No estimate is no evidence: keep what is open.
            None => run.open_severity(&key),
        };
        Ok(Check {
            key,
            severity,
            context: AlertContext {
                device_id: Some(device.clone()),
                tap_id: tap.cloned(),
                battery_pct: battery,
                ..AlertContext::default()
            },
            grace: run.settings.thresholds.grace_period(),
            probe_when_clear: true,
            maintenance: false,
        })
    }

    /// The current keg's pour rate over the location's window, from the tap's stored readings.
    async fn pour_rate(&self, run: &Run, view: &TapView) -> Result<Option<PourRate>, AlertsError> {
        let Some(series) = &view.state.series else {
            return Ok(None);
        };
        // A scale whose clock runs slightly ahead must not have its newest readings cut off.
        let now = run.now.max(view.state.updated_at.unwrap_or(run.now));
        let config = &run.settings.pour_rate;
        let start = now.saturating_sub(duration_ms(config.window()));
        let readings = self
            .store
            .readings(&run.account, series, start, now + 1, POUR_WINDOW_READINGS)
            .await?;
        let samples: Vec<PourSample<Option<KegId>>> = readings
            .iter()
            .filter_map(|r| {
                Some(PourSample {
                    at: EpochMs(r.ts),
                    volume: Litres(r.volume_l?),
                    keg: r.keg_id.clone(),
                    in_maintenance: false,
                })
            })
            .collect();
        Ok(pour_rate(&samples, EpochMs(now), config))
    }

    async fn tick_location(
        &self,
        watched: &mut Watched,
        account: &AccountId,
        location: &LocationId,
        devices: &[Device],
        now: i64,
    ) -> Result<EvalReport, AlertsError> {
        let mut run = self.open_run(account, location, now).await?;
        let thresholds = run.settings.thresholds;
        let mut checks = Vec::new();
        for device in devices {
            let last = device.last_seen.unwrap_or(device.created_at);
            let offline = rules::scale_offline(EpochMs(last), EpochMs(now), &thresholds);
            let key = run.key(AlertKind::ScaleOffline, device.id.as_str());
            checks.push(Check {
                probe_when_clear: watched.graces.contains_key(&key),
                key,
                severity: offline,
                context: AlertContext {
                    device_id: Some(device.id.clone()),
                    tap_id: device.tap_id.clone(),
                    silent_secs: Some(EpochMs(now).saturating_since(EpochMs(last)).as_secs()),
                    ..AlertContext::default()
                },
                grace: Duration::ZERO,
                maintenance: false,
            });
            let last_reading = device
                .tap_id
                .as_ref()
                .and_then(|t| run.taps.get(t))
                .map(|v| v.state.updated_at.unwrap_or(device.created_at));
            let stale = match last_reading {
                Some(at)
                    if offline.is_none()
                        && device.status == DeviceStatus::Online
                        && !device.maintenance =>
                {
                    rules::stale_readings(EpochMs(at), EpochMs(now), &thresholds)
                }
                _ => None,
            };
            let key = run.key(AlertKind::StaleReadings, device.id.as_str());
            checks.push(Check {
                probe_when_clear: watched.graces.contains_key(&key),
                key,
                severity: stale,
                context: AlertContext {
                    device_id: Some(device.id.clone()),
                    tap_id: device.tap_id.clone(),
                    silent_secs: last_reading
                        .map(|at| EpochMs(now).saturating_since(EpochMs(at)).as_secs()),
                    ..AlertContext::default()
                },
                grace: Duration::ZERO,
                maintenance: false,
            });
        }
        let due: Vec<dom::AlertKey> = watched
            .graces
            .keys()
            .filter(|k| k.location == *location)
            .cloned()
            .collect();
        self.apply(watched, &mut run, checks, true, due).await
    }

    /// Builds the location's book from the store, applies the verdicts (and, on a tick, the
    /// grace deadlines), writes the transitions, then tells and queues.
    async fn apply(
        &self,
        watched: &mut Watched,
        run: &mut Run,
        checks: Vec<Check>,
        tick: bool,
        graces_to_promote: Vec<dom::AlertKey>,
    ) -> Result<EvalReport, AlertsError> {
        let mut alerts: HashMap<dom::AlertKey, dom::Alert> = run
            .active
            .values()
            .filter_map(book_alert)
            .map(|a| (a.key.clone(), a))
            .collect();
        let mut probe: Vec<dom::AlertKey> = checks
            .iter()
            .filter(|c| c.severity.is_some() || c.probe_when_clear || c.maintenance)
            .map(|c| c.key.clone())
            .collect();
        probe.extend(graces_to_promote);
        for key in probe {
            if alerts.contains_key(&key) {
                continue;
            }
            match self.store.grace(&run.account, &store_key(&key)).await? {
                Some(g) => {
                    alerts.insert(key.clone(), grace_alert(&key, &g));
                }
                None => {
                    watched.graces.remove(&key);
                }
            }
        }
        let mut book = AlertBook::try_from(alerts.into_values().collect::<Vec<_>>())
            .map_err(|e| AlertsError::Invalid(e.to_string()))?;

        let now = EpochMs(run.now);
        let mut transitions = Vec::new();
        for check in checks {
            let firing = book
                .get(&check.key)
                .is_some_and(|a| matches!(a.state, DomState::Firing { .. }));
            if check.maintenance && !firing {
                continue;
            }
            transitions.extend(book.observe(
                Condition {
                    key: check.key,
                    severity: if check.maintenance {
                        None
                    } else {
                        check.severity
                    },
                    observed_at: now,
                    context: check.context.to_text(),
                },
                check.grace,
            ));
        }
        if tick {
            transitions.extend(book.tick(now));
        }

        let mut committed = Vec::new();
        for t in &transitions {
            if let Some(c) = self.persist(watched, run, t).await? {
                committed.push(c);
            }
        }
        let mut report = EvalReport::default();
        for c in committed {
            match c.event {
                NoticeEvent::Fired => report.fired += 1,
                NoticeEvent::Escalated => report.escalated += 1,
                NoticeEvent::Resolved => report.cleared += 1,
            }
            self.announce(run, &c);
            report.queued += self.queue(run, &c).await?;
        }
        Ok(report)
    }

    /// Fills in what the tap view knows: tap, beer, the current level.
    async fn enrich(&self, run: &mut Run, key: &dom::AlertKey, context: &mut AlertContext) {
        if key.kind == AlertKind::LowKeg {
            if context.tap_id.is_none() {
                context.tap_id = TapId::try_from(key.entity.as_str()).ok();
            }
        } else {
            if context.device_id.is_none() {
                context.device_id = DeviceId::try_from(key.entity.as_str()).ok();
            }
            if context.tap_id.is_none() {
                context.tap_id = run.tap_of_device(&key.entity);
            }
        }
        let Some(view) = context.tap_id.as_ref().and_then(|t| run.taps.get(t)) else {
            return;
        };
        if context.tap_name.is_none() {
            context.tap_name = Some(view.tap.name.clone());
        }
        if key.kind == AlertKind::LowKeg && context.level_pct.is_none() {
            context.level_pct = view.state.level_pct;
        }
        let beer_id = view.tap.beer_id.clone();
        if let (None, Some(beer)) = (&context.beer, beer_id) {
            if !run.beers.contains_key(&beer) {
                let name = match self.store.beer(&run.account, &beer).await {
                    Ok(b) => Some(b.name),
                    Err(e) => {
                        tracing::debug!(beer = %beer, error = %e, "beer name unavailable for an alert");
                        None
                    }
                };
                run.beers.insert(beer.clone(), name);
            }
            context.beer = run.beers.get(&beer).cloned().flatten();
        }
    }

    /// Writes one transition. `Some` when it is committed and people must be told.
    async fn persist(
        &self,
        watched: &mut Watched,
        run: &mut Run,
        t: &Transition,
    ) -> Result<Option<Committed>, AlertsError> {
        let key = &t.alert.key;
        match t.kind {
            TransitionKind::GraceStarted => {
                // No grace at all: the next transition fires it; a grace row would be noise.
                if t.alert.due_at > t.at {
                    self.store
                        .start_grace(
                            &run.account,
                            &st::Grace {
                                location_id: key.location.clone(),
                                kind: key.kind.as_str().to_owned(),
                                entity: key.entity.clone(),
                                severity: to_store_severity(t.alert.severity),
                                started_at: t.alert.first_seen.0,
                                expires_at: t.alert.due_at.0,
                            },
                        )
                        .await?;
                    watched.graces.insert(key.clone(), run.account.clone());
                }
                Ok(None)
            }
            TransitionKind::GraceAbandoned => {
                self.store
                    .clear_grace(&run.account, &store_key(key))
                    .await?;
                watched.graces.remove(key);
                Ok(None)
            }
            TransitionKind::Acknowledged => Ok(None),
            TransitionKind::Fired => {
                watched.graces.remove(key);
                self.fire(run, t).await
            }
            TransitionKind::Escalated | TransitionKind::Deescalated => self.change(run, t).await,
            TransitionKind::Cleared => self.resolve(run, t).await,
        }
    }

    fn committed(
        t: &Transition,
        event: NoticeEvent,
        state: &'static str,
        context: AlertContext,
    ) -> Committed {
        Committed {
            event,
            key: t.alert.key.clone(),
            severity: t.alert.severity,
            state,
            fired_at: t.alert.fired_at.map_or(t.at.0, |f| f.0),
            at: t.at.0,
            context,
        }
    }

    async fn fire(&self, run: &mut Run, t: &Transition) -> Result<Option<Committed>, AlertsError> {
        let key = &t.alert.key;
        let context = self.stored_context(run, t, "fired").await;
        let alert = st::Alert {
            location_id: key.location.clone(),
            kind: key.kind.as_str().to_owned(),
            entity: key.entity.clone(),
            severity: to_store_severity(t.alert.severity),
            state: AlertState::Active,
            fired_at: t.at.0,
            updated_at: t.at.0,
            acknowledged_by: None,
            acknowledged_at: None,
            context: context.to_json(),
        };
        match self.store.fire_alert(&run.account, &alert).await {
            Ok(_) => Ok(Some(Self::committed(
                t,
                NoticeEvent::Fired,
                "active",
                context,
            ))),
            Err(e) if is_conflict(&e) => {
                // Fired by another evaluation (a restart, another replica): already told.
                tracing::debug!(alert = %key, "alert already active; not fired again");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn change(
        &self,
        run: &mut Run,
        t: &Transition,
    ) -> Result<Option<Committed>, AlertsError> {
        let escalated = t.kind == TransitionKind::Escalated;
        let name = if escalated {
            "escalated"
        } else {
            "deescalated"
        };
        let context = self.stored_context(run, t, name).await;
        let (state, by) = match &t.alert.state {
            DomState::Acknowledged { by, .. } => (AlertState::Acknowledged, Some(by.clone())),
            DomState::Escalated => (AlertState::Escalated, None),
            _ => (AlertState::Active, None),
        };
        let change = AlertChange {
            state,
            severity: to_store_severity(t.alert.severity),
            at: t.at.0,
            by,
            context: context.to_json(),
        };
        match self
            .store
            .change_alert(&run.account, &store_key(&t.alert.key), &change)
            .await
        {
            Ok(_) if escalated => Ok(Some(Self::committed(
                t,
                NoticeEvent::Escalated,
                "escalated",
                context,
            ))),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => {
                tracing::debug!(alert = %t.alert.key, "alert resolved meanwhile; change dropped");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn resolve(
        &self,
        run: &mut Run,
        t: &Transition,
    ) -> Result<Option<Committed>, AlertsError> {
        let context = self.stored_context(run, t, "resolved").await;
        match self
            .store
            .resolve_alert(&run.account, &store_key(&t.alert.key), t.at.0, None)
            .await
        {
            Ok(_) => Ok(Some(Self::committed(
                t,
                NoticeEvent::Resolved,
                "resolved",
                context,
            ))),
            Err(e) if is_not_found(&e) => {
                tracing::debug!(alert = %t.alert.key, "alert already resolved; not cleared again");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn stored_context(
        &self,
        run: &mut Run,
        t: &Transition,
        transition: &str,
    ) -> AlertContext {
        let mut context = AlertContext::from_text(&t.alert.context);
        self.enrich(run, &t.alert.key, &mut context).await;
        context.transition = Some(transition.to_owned());
        context.first_seen = Some(t.alert.first_seen.0);
        context.summary = context.describe(t.alert.key.kind);
        context
    }

    /// The live event, at once, whatever the hour.
    fn announce(&self, run: &Run, c: &Committed) {
        let event = AlertEvent {
            account_id: run.account.clone(),
            location_id: run.location.id.clone(),
            id: c.key.to_string(),
            kind: c.key.kind,
            entity: c.key.entity.clone(),
            severity: c.severity,
            state: c.state,
            fired_at: c.fired_at,
            at: c.at,
            context: c.context.to_json(),
        };
        match c.event {
            NoticeEvent::Fired | NoticeEvent::Escalated => self.events.alert_fired(&event),
            NoticeEvent::Resolved => self.events.alert_cleared(&event),
        }
    }

    /// Queues the change on every channel that wants it: now, or (quiet hours) as part of the
    /// location's digest at the next opening. Returns how many items were newly queued.
    async fn queue(&self, run: &mut Run, c: &Committed) -> Result<usize, AlertsError> {
        if run.channels.is_none() {
            run.channels = Some(self.store.channels(&run.account).await?);
        }
        let channels: Vec<Channel> = run
            .channels
            .iter()
            .flatten()
            .filter(|ch| {
                ch.enabled
                    && ch.location_id.as_ref().is_none_or(|l| *l == run.location.id)
                    // Web Push is not implemented: nothing is queued that nobody would send.
                    && ch.kind != ChannelKind::Push
            })
            .cloned()
            .collect();
        let notice = AlertNotice {
            event: c.event,
            alert_id: c.key.to_string(),
            location_id: run.location.id.clone(),
            location_name: run.location.name.clone(),
            time_zone: run.location.time_zone.clone(),
            kind: c.key.kind,
            entity: c.key.entity.clone(),
            severity: c.severity,
            fired_at: c.fired_at,
            at: c.at,
            context: c.context.clone(),
        };
        let mut queued = 0;
        let mut due_now = false;
        for channel in &channels {
            let rules = ChannelRules::of(channel);
            if !rules.wants(c.key.kind, c.severity)
                || (c.event == NoticeEvent::Resolved && !rules.resolved)
            {
                continue;
            }
            let (key, payload, due) = match run.settings.held_until(channel.kind, c.at) {
                Some(opening) => (
                    digest_key(&run.location.id, opening, &channel.id),
                    Notification::Digest(DigestNotice {
                        location_id: run.location.id.clone(),
                        location_name: run.location.name.clone(),
                        time_zone: run.location.time_zone.clone(),
                        opening,
                    }),
                    opening,
                ),
                None => (
                    alert_key(&notice, &channel.id),
                    Notification::Alert(Box::new(notice.clone())),
                    run.now,
                ),
            };
            let payload = serde_json::to_value(&payload)
                .map_err(|e| AlertsError::Invalid(format!("notification payload: {e}")))?;
            let Enqueued { duplicate, .. } = self
                .store
                .enqueue_notification(
                    &run.account,
                    &NewNotification {
                        channel_id: channel.id.clone(),
                        idempotency_key: key,
                        payload,
                        next_attempt_at: due,
                        created_at: run.now,
                    },
                )
                .await?;
            if !duplicate {
                queued += 1;
                due_now |= due <= run.now;
            }
        }
        if due_now {
            self.outbox.notify_one();
        }
        Ok(queued)
    }
}
