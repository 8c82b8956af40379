//! Shared test fixtures: a bar in a SQLite store (temp file), a recording event sink, a
//! readings helper, and a real SMTP server (the crate's `test_support` sink, shared with the
//! `up` end-to-end test).
#![allow(dead_code, clippy::unwrap_used, clippy::too_many_lines)]

use std::sync::{Arc, Mutex};

use scalesense_alerts::{
    AlertEngine, AlertEvent, AlertEvents, BatchSummary, EvalReport, ManualClock,
};
use scalesense_store::{
    AccountId, Beer, BeerId, ChannelKind, DeviceId, IngestReading, KegId, LocationFields,
    LocationId, NewChannel, NewDevice, NewKeg, RecordId, SqliteStore, Store, TapId, Units,
};
use serde_json::json;
use tokio::sync::mpsc;

/// 2026-06-10 12:00:00 UTC (13:00 in Dublin): inside any test bar's opening hours.
pub const T0: i64 = 1_781_092_800_000;
pub const SEC: i64 = 1_000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;

/// Keg tare weights of the fixture's half barrel (kg): volume = weight − empty (SG 1.0).
pub const EMPTY_KG: f64 = 13.15;

/// Records live events in order.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(&'static str, AlertEvent)>>,
}

impl Recorder {
    pub fn take(&self) -> Vec<(&'static str, AlertEvent)> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    pub fn summary(&self) -> Vec<(&'static str, String, &'static str, String)> {
        self.take()
            .into_iter()
            .map(|(what, e)| {
                (
                    what,
                    e.kind.to_string(),
                    e.state,
                    format!("{:?}", e.severity).to_lowercase(),
                )
            })
            .collect()
    }
}

impl AlertEvents for Recorder {
    fn alert_fired(&self, alert: &AlertEvent) {
        self.events.lock().unwrap().push(("fired", alert.clone()));
    }
    fn alert_cleared(&self, alert: &AlertEvent) {
        self.events.lock().unwrap().push(("cleared", alert.clone()));
    }
}

/// One bar: location `loc-001` ("The Anchor", Dublin), tap 1 with scale `SCALE-0001`, a keg of
/// Guinness Draught tapped on it, tap 2 without a scale.
pub struct World {
    pub _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    pub events: Arc<Recorder>,
    pub engine: AlertEngine,
    pub account: AccountId,
    pub location: LocationId,
    pub tap: TapId,
    pub device: DeviceId,
    pub seq: i64,
}

impl World {
    pub async fn new(settings: serde_json::Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.db");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        let account = AccountId::try_from("acct-anchor").unwrap();
        let location = LocationId::try_from("loc-001").unwrap();
        store
            .create_account(&account, "Anchor Ltd", T0 - HOUR)
            .await
            .unwrap();
        store
            .create_location(
                &account,
                &location,
                &LocationFields {
                    name: "The Anchor".into(),
                    address: "1 Quay St".into(),
                    time_zone: "Europe/Dublin".into(),
                    units: Units::Metric,
                    settings,
                },
                T0 - HOUR,
            )
            .await
            .unwrap();
        let tap = store
            .create_tap(&account, &location, 1, "Tap 1")
            .await
            .unwrap()
            .id;
        store
            .create_tap(&account, &location, 2, "Tap 2")
            .await
            .unwrap();
        let device = DeviceId::try_from("SCALE-0001").unwrap();
        store
            .register_device(
                &account,
                &NewDevice {
                    id: device.clone(),
                    location_id: Some(location.clone()),
                    fw_version: Some("1.0.0".into()),
                    created_at: T0 - HOUR,
                },
            )
            .await
            .unwrap();
        store
            .assign_device(&account, &device, Some(&tap))
            .await
            .unwrap();
        let beer = BeerId::try_from("loc-001#guinness").unwrap();
        store
            .create_custom_beer(
                &account,
                &Beer {
                    id: beer.clone(),
                    location_id: Some(location.clone()),
                    name: "Guinness Draught".into(),
                    brewery: "St. James's Gate".into(),
                    style: "Stout".into(),
                    abv: 4.2,
                    specific_gravity: 1.0,
                },
            )
            .await
            .unwrap();
        store
            .set_tap_beer(&account, &tap, Some(&beer))
            .await
            .unwrap();
        let keg = KegId::try_from("keg-001").unwrap();
        store
            .create_keg(
                &account,
                &NewKeg {
                    id: keg.clone(),
                    location_id: location.clone(),
                    beer_id: beer,
                    keg_type: "half_barrel".into(),
                    full_kg: 73.25,
                    empty_kg: EMPTY_KG,
                    specific_gravity: 1.0,
                    created_at: T0 - HOUR,
                },
            )
            .await
            .unwrap();
        store
            .tap_keg(&account, &keg, &tap, T0 - HOUR)
            .await
            .unwrap();
        let clock = ManualClock::new(T0);
        let events = Arc::new(Recorder::default());
        let engine = AlertEngine::new(store.clone(), Arc::new(clock.clone()), events.clone());
        Self {
            _dir: dir,
            path,
            store,
            clock,
            events,
            engine,
            account,
            location,
            tap,
            device,
            seq: 0,
        }
    }

    /// A fresh engine on the same store, as after a restart.
    pub fn restart(&mut self) {
        self.events = Arc::new(Recorder::default());
        self.engine = AlertEngine::new(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            self.events.clone(),
        );
    }

    pub fn at(&self, ms: i64) {
        self.clock.set(ms);
    }

    /// A reading from the tap's scale at the clock's time, stored (not evaluated).
    pub async fn ingest(
        &mut self,
        level_pct: f64,
        volume_l: f64,
        battery_pct: f64,
    ) -> BatchSummary {
        self.seq += 1;
        let reading = IngestReading {
            device_id: self.device.clone(),
            boot: 1,
            seq: self.seq,
            ts: self.clock_now(),
            weight_kg: EMPTY_KG + volume_l,
            level_pct,
            battery_v: Some(3.9),
            battery_pct: Some(battery_pct),
            rssi: Some(-60),
            stable: true,
            tare_status: Some("ok".into()),
        };
        let batch = [reading];
        let outcome = self.store.ingest_batch(&batch).await.unwrap();
        assert_eq!(outcome.stored(), 1, "{outcome:?}");
        let mut summary = BatchSummary::new();
        summary.add_ingest(&batch, &outcome);
        summary
    }

    /// A reading from the tap's scale at the clock's time, stored and evaluated.
    pub async fn reading(&mut self, level_pct: f64, volume_l: f64, battery_pct: f64) -> EvalReport {
        let summary = self.ingest(level_pct, volume_l, battery_pct).await;
        self.engine.after_batch(&summary).await
    }

    /// A level-only reading (no pouring: volume fixed at 20 L, battery fine).
    pub async fn level(&mut self, level_pct: f64) -> EvalReport {
        self.reading(level_pct, 20.0, 90.0).await
    }

    pub fn clock_now(&self) -> i64 {
        use scalesense_alerts::Clock;
        self.clock.now_ms()
    }

    pub async fn channel(
        &self,
        id: &str,
        kind: ChannelKind,
        target: &str,
        settings: serde_json::Value,
    ) -> RecordId {
        let id = RecordId::try_from(id).unwrap();
        self.store
            .create_channel(
                &self.account,
                &NewChannel {
                    id: id.clone(),
                    location_id: Some(self.location.clone()),
                    kind,
                    target: target.into(),
                    settings,
                    enabled: true,
                },
            )
            .await
            .unwrap();
        id
    }

    pub async fn active(&self) -> Vec<scalesense_store::Alert> {
        self.store
            .active_alerts(&self.account, &self.location)
            .await
            .unwrap()
    }

    /// The alert log, oldest first, as `(kind, state, severity)`.
    pub async fn history(&self) -> Vec<(String, String, String)> {
        let mut lines = self
            .store
            .alert_history(&self.account, &self.location, 1_000)
            .await
            .unwrap();
        lines.reverse();
        lines
            .into_iter()
            .map(|l| {
                (
                    l.kind,
                    l.state.as_str().to_owned(),
                    l.severity.as_str().to_owned(),
                )
            })
            .collect()
    }

    pub async fn outbox(&self) -> Vec<scalesense_store::OutboxItem> {
        let mut items = self.store.outbox(&self.account, 1_000).await.unwrap();
        items.reverse();
        items
    }
}

/// Default settings: no quiet hours.
pub fn open_all_day() -> serde_json::Value {
    json!({})
}

#[allow(unused_imports)] // not every test binary reads mail
pub use scalesense_alerts::test_support::{Mail, next_mail};

/// A real SMTP server on a free loopback port (see `scalesense_alerts::test_support`).
pub async fn smtp_sink() -> (u16, mpsc::UnboundedReceiver<Mail>) {
    scalesense_alerts::test_support::smtp_sink().await.unwrap()
}
