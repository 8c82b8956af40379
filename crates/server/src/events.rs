//! The live event bus (BRIEF §5): every committed change becomes a typed [`Event`] on its
//! location's channel, for the dashboard's WebSocket and any other in-process listener.
//!
//! One bounded `tokio::sync::broadcast` channel per location. Publishing never waits: a
//! subscriber that falls behind by more than the channel's capacity loses the oldest events
//! (counted in `scalesense_event_bus_dropped_total`) and carries on; it can reload state from
//! the REST API. The bus must never block or slow ingest, and it is not a record: events are
//! emitted only after the commit they describe, and a crash loses nothing the database has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use scalesense_alerts::{AlertEvent, AlertEvents};
use scalesense_proto::{CommandId, DeviceId, LocationId, TapId};
use scalesense_store::{BeerKegWeight, DeviceStatus, KegId, Millis, Series, TareKind};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::telemetry;

/// Events kept per location for a subscriber that is momentarily slow.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A committed change, serialised for WebSocket clients as `{"type":"reading",…}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A new reading was stored.
    Reading {
        location_id: LocationId,
        tap_id: TapId,
        device_id: DeviceId,
        keg_id: Option<KegId>,
        series: Series,
        ts: Millis,
        weight_kg: f64,
        level_pct: f64,
        volume_l: Option<f64>,
        battery_pct: Option<f64>,
        stable: bool,
    },
    /// A scale's status (online/offline, firmware, telemetry) was recorded.
    DeviceStatus {
        location_id: LocationId,
        device_id: DeviceId,
        tap_id: Option<TapId>,
        status: DeviceStatus,
        fw_version: Option<String>,
        maintenance: bool,
        battery_pct: Option<f64>,
        rssi: Option<i64>,
        at: Millis,
    },
    /// A scale reported it entered maintenance mode.
    MaintenanceEntered {
        location_id: LocationId,
        device_id: DeviceId,
        tap_id: Option<TapId>,
        at: Millis,
    },
    /// A scale reported it left maintenance mode.
    MaintenanceExited {
        location_id: LocationId,
        device_id: DeviceId,
        tap_id: Option<TapId>,
        at: Millis,
    },
    /// An alert fired, or escalated (`alert.state` says which).
    AlertFired {
        location_id: LocationId,
        alert: AlertEvent,
    },
    /// An alert's condition cleared: it is resolved.
    AlertCleared {
        location_id: LocationId,
        alert_id: String,
        alert: AlertEvent,
    },
    /// A scale answered a command and the answer was recorded.
    CommandCompleted {
        location_id: LocationId,
        device_id: DeviceId,
        command_id: CommandId,
        name: String,
        ok: bool,
        at: Millis,
    },
    /// A scale's tare answer was recorded on the keg of its tap (and copied to the scale's
    /// telemetry). After a full tare, `beer_weight` is the beer's keg-type weight it updated
    /// (its badge: `set` after one measurement, `calculated` after several).
    TareUpdated {
        location_id: LocationId,
        tap_id: TapId,
        device_id: DeviceId,
        keg_id: KegId,
        kind: TareKind,
        weight_kg: f64,
        beer_weight: Option<BeerKegWeight>,
        at: Millis,
    },
    /// A scale's current calibration changed; `drift_pct` is against the previous one.
    CalibrationUpdated {
        location_id: LocationId,
        device_id: DeviceId,
        tap_id: Option<TapId>,
        scale_factor: f64,
        drift_pct: Option<f64>,
        at: Millis,
    },
    /// Something the tap view shows changed other than by a reading (beer, keg, scale,
    /// maintenance, a suspected empty keg); `changed` names the tap view's fields.
    TapUpdated {
        location_id: LocationId,
        tap_id: TapId,
        changed: Vec<String>,
        at: Millis,
    },
}

impl Event {
    /// The location whose channel carries the event.
    pub fn location(&self) -> &LocationId {
        match self {
            Self::Reading { location_id, .. }
            | Self::DeviceStatus { location_id, .. }
            | Self::MaintenanceEntered { location_id, .. }
            | Self::MaintenanceExited { location_id, .. }
            | Self::AlertFired { location_id, .. }
            | Self::AlertCleared { location_id, .. }
            | Self::CommandCompleted { location_id, .. }
            | Self::TareUpdated { location_id, .. }
            | Self::CalibrationUpdated { location_id, .. }
            | Self::TapUpdated { location_id, .. } => location_id,
        }
    }

    /// The wire name of the event type (`reading`, `device_status`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Reading { .. } => "reading",
            Self::DeviceStatus { .. } => "device_status",
            Self::MaintenanceEntered { .. } => "maintenance_entered",
            Self::MaintenanceExited { .. } => "maintenance_exited",
            Self::AlertFired { .. } => "alert_fired",
            Self::AlertCleared { .. } => "alert_cleared",
            Self::CommandCompleted { .. } => "command_completed",
            Self::TareUpdated { .. } => "tare_updated",
            Self::CalibrationUpdated { .. } => "calibration_updated",
            Self::TapUpdated { .. } => "tap_updated",
        }
    }
}

/// The per-location channels. Cheap to clone; every clone is the same bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    channels: Arc<Mutex<HashMap<LocationId, broadcast::Sender<Arc<Event>>>>>,
    capacity: usize,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl EventBus {
    /// A bus keeping up to `capacity` events per location for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        Self {
            channels: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// Publishes an event on its location's channel. Never waits; with no subscriber the event
    /// is simply not kept.
    pub fn publish(&self, event: Event) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let location = event.location().clone();
        let Some(sender) = channels.get(&location) else {
            return;
        };
        metrics::counter!(telemetry::EVENTS_PUBLISHED, "type" => event.kind()).increment(1);
        if sender.send(Arc::new(event)).is_err() {
            // Every subscriber of this location is gone: forget the channel.
            channels.remove(&location);
        }
    }

    /// Subscribes to one location's events from now on.
    pub fn subscribe(&self, location: &LocationId) -> Subscription {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = channels
            .entry(location.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        Subscription { receiver }
    }
}

/// The alert engine's live events go out on the bus at once, whatever the hour: quiet hours hold
/// e-mail and webhooks, never the dashboard.
impl AlertEvents for EventBus {
    fn alert_fired(&self, alert: &AlertEvent) {
        self.publish(Event::AlertFired {
            location_id: alert.location_id.clone(),
            alert: alert.clone(),
        });
    }

    fn alert_cleared(&self, alert: &AlertEvent) {
        self.publish(Event::AlertCleared {
            location_id: alert.location_id.clone(),
            alert_id: alert.id.clone(),
            alert: alert.clone(),
        });
    }
}

/// One listener's view of a location's events.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Event>>,
}

impl Subscription {
    /// The next event, or `None` when the bus is gone. Events missed because this subscriber
    /// lagged are counted and skipped.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    metrics::counter!(telemetry::EVENT_BUS_DROPPED).increment(missed);
                    tracing::debug!(missed, "event subscriber lagged behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> LocationId {
        LocationId::try_from(s).unwrap()
    }

    fn completed(location: &str, n: u16) -> Event {
        Event::CommandCompleted {
            location_id: loc(location),
            device_id: DeviceId::try_from("SCALE-0001").unwrap(),
            command_id: CommandId::try_from(format!("cmd-{n}").as_str()).unwrap(),
            name: "identify".into(),
            ok: true,
            at: i64::from(n),
        }
    }

    #[tokio::test]
    async fn subscribers_get_only_their_locations_events() {
        let bus = EventBus::new(8);
        let mut one = bus.subscribe(&loc("loc-001"));
        let mut two = bus.subscribe(&loc("loc-002"));
        bus.publish(completed("loc-001", 1));
        bus.publish(completed("loc-002", 2));
        bus.publish(completed("loc-003", 3));
        assert_eq!(*one.recv().await.unwrap(), completed("loc-001", 1));
        assert_eq!(*two.recv().await.unwrap(), completed("loc-002", 2));
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_and_never_blocks_the_publisher() {
        let bus = EventBus::new(4);
        let mut slow = bus.subscribe(&loc("loc-001"));
        for n in 0..100 {
            bus.publish(completed("loc-001", n));
        }
        // The oldest 96 were dropped for this subscriber; it resumes at the newest four.
        assert_eq!(*slow.recv().await.unwrap(), completed("loc-001", 96));
        assert_eq!(*slow.recv().await.unwrap(), completed("loc-001", 97));
    }

    /// The `<!-- ws-example: {kind} -->` payload of `docs/contract.md`.
    fn documented(kind: &str) -> serde_json::Value {
        let doc = include_str!("../../../docs/contract.md");
        let marker = format!("<!-- ws-example: {kind} -->");
        let start = doc.find(&marker).expect("the contract documents the event");
        let json = doc[start..]
            .lines()
            .nth(2)
            .expect("the example follows the marker");
        serde_json::from_str(json).unwrap()
    }

    fn keys(value: &serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The events this module adds look exactly like their examples in the contract.
    #[test]
    fn new_events_match_the_contract_examples() {
        let location = loc("loc-001");
        let tap = TapId::try_from("loc-001#TAP#07").unwrap();
        let device = DeviceId::try_from("SCALE-0042").unwrap();
        let keg = KegId::try_from("keg-20260318-007").unwrap();
        let events = [
            Event::TareUpdated {
                location_id: location.clone(),
                tap_id: tap.clone(),
                device_id: device.clone(),
                keg_id: keg,
                kind: TareKind::Full,
                weight_kg: 58.6,
                beer_weight: Some(BeerKegWeight {
                    beer_id: scalesense_store::BeerId::try_from("beer-guinness").unwrap(),
                    keg_type: "half_barrel".into(),
                    full_kg: 58.6,
                    empty_kg: 13.6,
                    measured_at: Some(1_773_830_405_000),
                    measured_count: 1,
                    source: scalesense_store::WeightSource::Set,
                }),
                at: 1_773_830_405_000,
            },
            Event::CalibrationUpdated {
                location_id: location.clone(),
                device_id: device,
                tap_id: Some(tap.clone()),
                scale_factor: 21_432.5,
                drift_pct: Some(0.8),
                at: 1_773_830_405_000,
            },
            Event::TapUpdated {
                location_id: location,
                tap_id: tap,
                changed: vec!["beer_id".into(), "keg_id".into()],
                at: 1_773_830_405_000,
            },
        ];
        for event in events {
            let ours = serde_json::to_value(&event).unwrap();
            let doc = documented(event.kind());
            assert_eq!(ours["type"], event.kind());
            assert_eq!(keys(&ours), keys(&doc), "{}", event.kind());
            assert_eq!(ours, doc, "{}", event.kind());
        }
    }

    #[test]
    fn events_serialise_with_their_type() {
        let json = serde_json::to_value(completed("loc-001", 7)).unwrap();
        assert_eq!(json["type"], "command_completed");
        assert_eq!(json["location_id"], "loc-001");
        assert_eq!(json["command_id"], "cmd-7");
    }
}
