//! The alert state machine (seed 001): `none → firing → active → escalated → acknowledged →
//! resolved`, with a grace period before an alert fires.
//!
//! An [`AlertBook`] holds at most one alert per [`AlertKey`] (location, kind, entity) because it
//! is a map keyed by it: two active alerts for one key cannot be represented. It is driven only
//! by values: a [`Condition`] (a rule's verdict at an instant), a tick with the current time, an
//! acknowledgement. Each call returns the [`Transition`]s it made, which the server turns into
//! history rows and live events. Whether a condition holds, including the hysteresis that stops
//! an alert flapping, is decided by [`crate::rules`]; this module only sequences. It must never
//! read a clock or notify anyone itself.
//!
//! The book is serialisable: persisted and reloaded, it resumes grace periods where they were
//! and never re-fires an alert that is already active.

use core::fmt;
use core::str::FromStr;
use std::collections::HashMap;
use std::time::Duration;

use scalesense_proto::ids::LocationId;
use serde::{Deserialize, Serialize};

use crate::units::EpochMs;

/// What an alert is about. Names are the seeds' (`stale_reading` is singular there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    LowKeg,
    ScaleOffline,
    LowBattery,
    CalibrationDrift,
    #[serde(rename = "stale_reading")]
    StaleReadings,
}

impl AlertKind {
    pub const ALL: [Self; 5] = [
        Self::LowKeg,
        Self::ScaleOffline,
        Self::LowBattery,
        Self::CalibrationDrift,
        Self::StaleReadings,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LowKeg => "low_keg",
            Self::ScaleOffline => "scale_offline",
            Self::LowBattery => "low_battery",
            Self::CalibrationDrift => "calibration_drift",
            Self::StaleReadings => "stale_reading",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertKind {
    type Err = AlertError;
    fn from_str(s: &str) -> Result<Self, AlertError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| AlertError::UnknownKind(s.to_owned()))
    }
}

/// How bad it is. `Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

/// Identifies an alert: at most one is open per key. `entity` is the tap id for keg alerts and
/// the device id for device alerts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertKey {
    pub location: LocationId,
    pub kind: AlertKind,
    pub entity: String,
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.location, self.kind, self.entity)
    }
}

/// Where an alert is in its life. "None" is the absence of an alert in the book; `Resolved` only
/// appears in the transition that removes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum AlertState {
    /// The condition holds, the grace period has not passed; nobody has been told.
    Firing { since: EpochMs },
    /// Fired and told.
    Active,
    /// Became critical after firing.
    Escalated,
    /// Somebody has seen it; it stays until the condition clears.
    Acknowledged { by: String, at: EpochMs },
    /// The condition cleared.
    Resolved,
}

impl AlertState {
    /// The state's snake_case name, as stored and shown.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Firing { .. } => "firing",
            Self::Active => "active",
            Self::Escalated => "escalated",
            Self::Acknowledged { .. } => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    /// Whether the alert has fired (people were told) and not yet resolved.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            Self::Active | Self::Escalated | Self::Acknowledged { .. }
        )
    }
}

/// One alert as the book holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub key: AlertKey,
    pub severity: Severity,
    pub state: AlertState,
    /// When the condition was first observed: the start of the grace period.
    pub first_seen: EpochMs,
    /// When the grace period ends; the alert fires at the first observation or tick at or after.
    pub due_at: EpochMs,
    pub fired_at: Option<EpochMs>,
    /// The latest observation applied; older observations are ignored.
    pub last_seen: EpochMs,
    pub resolved_at: Option<EpochMs>,
    /// Facts from the latest observation, e.g. `level 9.5 %, 1.2 h left`.
    pub context: String,
}

/// A rule's verdict for one key at one instant: `severity` `None` means the condition is clear
/// (after the rule's hysteresis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub key: AlertKey,
    pub severity: Option<Severity>,
    pub observed_at: EpochMs,
    pub context: String,
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// none → firing: the grace period started (a grace row; nobody is told).
    GraceStarted,
    /// firing → none: the condition went away during the grace period (nobody is told).
    GraceAbandoned,
    /// firing → active: `alert_fired`.
    Fired,
    /// active/acknowledged → escalated: became critical.
    Escalated,
    /// Back to warning: escalated → active, or acknowledged stays acknowledged.
    Deescalated,
    /// active/escalated → acknowledged.
    Acknowledged,
    /// open → resolved: `alert_cleared`.
    Cleared,
}

impl TransitionKind {
    /// Whether people are told about it (live event and notification channels).
    pub fn notifies(self) -> bool {
        matches!(self, Self::Fired | Self::Escalated | Self::Cleared)
    }
}

/// One state change, for a history row and, if [`TransitionKind::notifies`], a live event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub kind: TransitionKind,
    pub at: EpochMs,
    /// `None` = no alert before.
    pub from: Option<AlertState>,
    /// `None` = no alert after (grace abandoned).
    pub to: Option<AlertState>,
    /// The alert as of this transition (for `Cleared`, with state `Resolved`).
    pub alert: Alert,
}

/// Why an alert operation or a stored book was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("no alert {0}")]
    NotFound(String),
    #[error("alert {0} is still in its grace period and cannot be acknowledged yet")]
    NotFired(String),
    #[error("stored alert book holds {0} twice")]
    DuplicateKey(String),
    #[error("stored alert book holds resolved alert {0}; resolved alerts leave the book")]
    ResolvedInBook(String),
    #[error("unknown alert kind {0:?}")]
    UnknownKind(String),
}

/// All alerts not yet resolved, at most one per key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "Vec<Alert>", try_from = "Vec<Alert>")]
pub struct AlertBook {
    alerts: HashMap<AlertKey, Alert>,
}

impl From<AlertBook> for Vec<Alert> {
    fn from(book: AlertBook) -> Self {
        let mut alerts: Vec<Alert> = book.alerts.into_values().collect();
        alerts.sort_by(|a, b| a.key.cmp(&b.key));
        alerts
    }
}

impl TryFrom<Vec<Alert>> for AlertBook {
    type Error = AlertError;
    fn try_from(alerts: Vec<Alert>) -> Result<Self, AlertError> {
        let mut book = HashMap::with_capacity(alerts.len());
        for alert in alerts {
            if alert.state == AlertState::Resolved {
                return Err(AlertError::ResolvedInBook(alert.key.to_string()));
            }
            let key = alert.key.clone();
            if book.insert(key.clone(), alert).is_some() {
                return Err(AlertError::DuplicateKey(key.to_string()));
            }
        }
        Ok(Self { alerts: book })
    }
}

impl AlertBook {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &AlertKey) -> Option<&Alert> {
        self.alerts.get(key)
    }

    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// Every alert in the book (firing and open), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// Alerts that have fired and are not resolved, in no particular order.
    pub fn open(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().filter(|a| a.state.is_open())
    }

    /// The severity of the open alert for `key`, to give a rule its hysteresis. `None` while the
    /// alert is only in its grace period: a condition must hold plainly for the whole grace
    /// period, so hysteresis does not help it through.
    pub fn open_severity(&self, key: &AlertKey) -> Option<Severity> {
        self.alerts
            .get(key)
            .filter(|a| a.state.is_open())
            .map(|a| a.severity)
    }

    /// The earliest grace deadline, so the caller knows when to [`tick`](Self::tick) next.
    pub fn next_due(&self) -> Option<EpochMs> {
        self.alerts
            .values()
            .filter(|a| matches!(a.state, AlertState::Firing { .. }))
            .map(|a| a.due_at)
            .min()
    }

    /// Applies a rule's verdict. A new condition starts a grace period of `grace` (from the
    /// location's thresholds); observations older than the alert's latest are ignored, so a
    /// replayed reading cannot undo a newer one.
    pub fn observe(&mut self, condition: Condition, grace: Duration) -> Vec<Transition> {
        let Condition {
            key,
            severity,
            observed_at: at,
            context,
        } = condition;
        let Some(alert) = self.alerts.get_mut(&key) else {
            let Some(severity) = severity else {
                return Vec::new();
            };
            let alert = Alert {
                key: key.clone(),
                severity,
                state: AlertState::Firing { since: at },
                first_seen: at,
                due_at: at.plus(grace),
                fired_at: None,
                last_seen: at,
                resolved_at: None,
                context,
            };
            let started = Transition {
                kind: TransitionKind::GraceStarted,
                at,
                from: None,
                to: Some(alert.state.clone()),
                alert: alert.clone(),
            };
            self.alerts.insert(key.clone(), alert);
            let mut out = vec![started];
            out.extend(self.promote(&key, at));
            return out;
        };
        if at < alert.last_seen {
            return Vec::new();
        }
        alert.last_seen = at;
        alert.context = context;

        let Some(severity) = severity else {
            return self.remove(&key, at).into_iter().collect();
        };
        let from = alert.state.clone();
        let kind = match (&alert.state, severity.cmp(&alert.severity)) {
            (AlertState::Firing { .. }, _) => {
                // Fires at the latest severity once the grace period has passed.
                alert.severity = severity;
                return self.promote(&key, at).into_iter().collect();
            }
            (_, core::cmp::Ordering::Equal) => return Vec::new(),
            (_, core::cmp::Ordering::Greater) => {
                alert.state = AlertState::Escalated;
                TransitionKind::Escalated
            }
            (_, core::cmp::Ordering::Less) => {
                if alert.state == AlertState::Escalated {
                    alert.state = AlertState::Active;
                }
                TransitionKind::Deescalated
            }
        };
        alert.severity = severity;
        vec![Transition {
            kind,
            at,
            from: Some(from),
            to: Some(alert.state.clone()),
            alert: alert.clone(),
        }]
    }

    /// Fires every alert whose grace period has passed by `now`. Transitions come back ordered
    /// by key.
    pub fn tick(&mut self, now: EpochMs) -> Vec<Transition> {
        let mut due: Vec<AlertKey> = self
            .alerts
            .values()
            .filter(|a| matches!(a.state, AlertState::Firing { .. }) && a.due_at <= now)
            .map(|a| a.key.clone())
            .collect();
        due.sort();
        due.iter().filter_map(|k| self.promote(k, now)).collect()
    }

    /// Marks an open alert as seen by `by`. Acknowledging twice is not an error (`Ok(None)`);
    /// an alert still in its grace period cannot be acknowledged, nobody has been told of it.
    pub fn acknowledge(
        &mut self,
        key: &AlertKey,
        by: &str,
        at: EpochMs,
    ) -> Result<Option<Transition>, AlertError> {
        let alert = self
            .alerts
            .get_mut(key)
            .ok_or_else(|| AlertError::NotFound(key.to_string()))?;
        let from = alert.state.clone();
        match from {
            AlertState::Firing { .. } => Err(AlertError::NotFired(key.to_string())),
            AlertState::Acknowledged { .. } => Ok(None),
            // Resolved alerts leave the book; a stored book holding one is refused on load.
            AlertState::Resolved => Err(AlertError::NotFound(key.to_string())),
            AlertState::Active | AlertState::Escalated => {
                alert.state = AlertState::Acknowledged {
                    by: by.to_owned(),
                    at,
                };
                Ok(Some(Transition {
                    kind: TransitionKind::Acknowledged,
                    at,
                    from: Some(from),
                    to: Some(alert.state.clone()),
                    alert: alert.clone(),
                }))
            }
        }
    }

    /// firing → active for `key` if its grace period has passed by `at`.
    fn promote(&mut self, key: &AlertKey, at: EpochMs) -> Option<Transition> {
        let alert = self.alerts.get_mut(key)?;
        if !matches!(alert.state, AlertState::Firing { .. }) || at < alert.due_at {
            return None;
        }
        let from = core::mem::replace(&mut alert.state, AlertState::Active);
        alert.fired_at = Some(at);
        Some(Transition {
            kind: TransitionKind::Fired,
            at,
            from: Some(from),
            to: Some(AlertState::Active),
            alert: alert.clone(),
        })
    }

    /// The condition cleared: a firing alert is dropped quietly, an open one resolves.
    fn remove(&mut self, key: &AlertKey, at: EpochMs) -> Option<Transition> {
        let mut alert = self.alerts.remove(key)?;
        let from = alert.state.clone();
        if let AlertState::Firing { .. } = from {
            return Some(Transition {
                kind: TransitionKind::GraceAbandoned,
                at,
                from: Some(from),
                to: None,
                alert,
            });
        }
        alert.state = AlertState::Resolved;
        alert.resolved_at = Some(at);
        Some(Transition {
            kind: TransitionKind::Cleared,
            at,
            from: Some(from),
            to: Some(AlertState::Resolved),
            alert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GRACE: Duration = Duration::from_mins(2);
    const S: i64 = 1_000;

    fn key(kind: AlertKind, entity: &str) -> AlertKey {
        AlertKey {
            location: LocationId::try_from("loc-001").unwrap(),
            kind,
            entity: entity.to_owned(),
        }
    }

    fn tap7() -> AlertKey {
        key(AlertKind::LowKeg, "loc-001#TAP#07")
    }

    fn cond(k: &AlertKey, severity: Option<Severity>, at_s: i64) -> Condition {
        Condition {
            key: k.clone(),
            severity,
            observed_at: EpochMs(at_s * S),
            context: format!("at {at_s}s"),
        }
    }

    fn kinds(ts: &[Transition]) -> Vec<TransitionKind> {
        ts.iter().map(|t| t.kind).collect()
    }

    use Severity::{Critical, Warning};
    use TransitionKind as T;

    #[test]
    fn kinds_use_seed_names() {
        let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "low_keg",
                "scale_offline",
                "low_battery",
                "calibration_drift",
                "stale_reading"
            ]
        );
        for k in AlertKind::ALL {
            assert_eq!(k.as_str().parse::<AlertKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("stale_readings".parse::<AlertKind>().is_err());
        assert!(Warning < Critical);
        assert_eq!(tap7().to_string(), "loc-001/low_keg/loc-001#TAP#07");
    }

    #[test]
    fn fires_only_after_the_whole_grace_period() {
        let mut book = AlertBook::new();
        let k = tap7();
        assert_eq!(
            kinds(&book.observe(cond(&k, Some(Warning), 0), GRACE)),
            [T::GraceStarted]
        );
        assert_eq!(
            book.get(&k).unwrap().state,
            AlertState::Firing { since: EpochMs(0) }
        );
        assert_eq!(book.next_due(), Some(EpochMs(120 * S)));
        assert!(book.observe(cond(&k, Some(Warning), 60), GRACE).is_empty());
        assert!(book.tick(EpochMs(119_999)).is_empty());
        assert_eq!(book.open_severity(&k), None);
        let fired = book.tick(EpochMs(120 * S));
        assert_eq!(kinds(&fired), [T::Fired]);
        assert!(fired[0].kind.notifies());
        assert_eq!(fired[0].alert.fired_at, Some(EpochMs(120 * S)));
        assert_eq!(
            fired[0].from,
            Some(AlertState::Firing { since: EpochMs(0) })
        );
        assert_eq!(book.get(&k).unwrap().state, AlertState::Active);
        assert_eq!(book.open_severity(&k), Some(Warning));
        assert_eq!(book.next_due(), None);
        // Holding on does not fire again.
        assert!(book.observe(cond(&k, Some(Warning), 180), GRACE).is_empty());
        assert!(book.tick(EpochMs(999 * S)).is_empty());
        assert_eq!(book.get(&k).unwrap().context, "at 180s");
    }

    #[test]
    fn an_observation_after_the_grace_period_fires_too() {
        let mut book = AlertBook::new();
        let k = tap7();
        book.observe(cond(&k, Some(Warning), 0), GRACE);
        // Went critical during the grace period: fires straight at critical.
        let t = book.observe(cond(&k, Some(Critical), 130), GRACE);
        assert_eq!(kinds(&t), [T::Fired]);
        assert_eq!(t[0].alert.severity, Critical);
        assert_eq!(t[0].to, Some(AlertState::Active));
        // No grace at all: starts and fires in one call.
        let k2 = key(AlertKind::ScaleOffline, "SCALE-0042");
        assert_eq!(
            kinds(&book.observe(cond(&k2, Some(Warning), 0), Duration::ZERO)),
            [T::GraceStarted, T::Fired]
        );
    }

    #[test]
    fn condition_gone_during_grace_is_silent() {
        let mut book = AlertBook::new();
        let k = tap7();
        book.observe(cond(&k, Some(Warning), 0), GRACE);
        let t = book.observe(cond(&k, None, 60), GRACE);
        assert_eq!(kinds(&t), [T::GraceAbandoned]);
        assert!(!t[0].kind.notifies());
        assert_eq!(t[0].to, None);
        assert!(book.is_empty());
        assert!(book.tick(EpochMs(1_000 * S)).is_empty());
        // Clearing what is not there does nothing.
        assert!(book.observe(cond(&k, None, 70), GRACE).is_empty());
        // A new condition needs a whole new grace period.
        book.observe(cond(&k, Some(Warning), 100), GRACE);
        assert!(book.tick(EpochMs(200 * S)).is_empty());
        assert_eq!(kinds(&book.tick(EpochMs(220 * S))), [T::Fired]);
    }

    #[test]
    fn escalation_acknowledgement_and_resolution() {
        let mut book = AlertBook::new();
        let k = tap7();
        book.observe(cond(&k, Some(Warning), 0), GRACE);
        book.tick(EpochMs(120 * S));

        let t = book.observe(cond(&k, Some(Critical), 200), GRACE);
        assert_eq!(kinds(&t), [T::Escalated]);
        assert!(t[0].kind.notifies());
        assert_eq!(book.get(&k).unwrap().state, AlertState::Escalated);

        let ack = book
            .acknowledge(&k, "sam", EpochMs(300 * S))
            .unwrap()
            .unwrap();
        assert_eq!(ack.kind, T::Acknowledged);
        assert_eq!(ack.from, Some(AlertState::Escalated));
        let acked = AlertState::Acknowledged {
            by: "sam".into(),
            at: EpochMs(300 * S),
        };
        assert_eq!(book.get(&k).unwrap().state, acked);
        assert_eq!(book.acknowledge(&k, "kim", EpochMs(310 * S)), Ok(None));

        // Back to warning while acknowledged: stays acknowledged.
        let t = book.observe(cond(&k, Some(Warning), 400), GRACE);
        assert_eq!(kinds(&t), [T::Deescalated]);
        assert!(!t[0].kind.notifies());
        assert_eq!(book.get(&k).unwrap().state, acked);
        // Critical again: escalates past the acknowledgement.
        let t = book.observe(cond(&k, Some(Critical), 500), GRACE);
        assert_eq!(kinds(&t), [T::Escalated]);
        assert_eq!(book.get(&k).unwrap().state, AlertState::Escalated);
        // De-escalating from escalated goes back to active.
        book.observe(cond(&k, Some(Warning), 550), GRACE);
        assert_eq!(book.get(&k).unwrap().state, AlertState::Active);

        let t = book.observe(cond(&k, None, 600), GRACE);
        assert_eq!(kinds(&t), [T::Cleared]);
        assert_eq!(t[0].to, Some(AlertState::Resolved));
        assert_eq!(t[0].alert.resolved_at, Some(EpochMs(600 * S)));
        assert_eq!(t[0].alert.fired_at, Some(EpochMs(120 * S)));
        assert!(book.is_empty());

        // After resolving, the same condition starts over with a new grace period.
        assert_eq!(
            kinds(&book.observe(cond(&k, Some(Warning), 700), GRACE)),
            [T::GraceStarted]
        );
        assert_eq!(book.get(&k).unwrap().fired_at, None);
    }

    #[test]
    fn acknowledge_errors() {
        let mut book = AlertBook::new();
        let k = tap7();
        assert_eq!(
            book.acknowledge(&k, "sam", EpochMs(0)),
            Err(AlertError::NotFound(k.to_string()))
        );
        book.observe(cond(&k, Some(Warning), 0), GRACE);
        assert_eq!(
            book.acknowledge(&k, "sam", EpochMs(0)),
            Err(AlertError::NotFired(k.to_string()))
        );
    }

    #[test]
    fn stale_observations_are_ignored() {
        let mut book = AlertBook::new();
        let k = tap7();
        book.observe(cond(&k, Some(Warning), 0), GRACE);
        book.tick(EpochMs(120 * S));
        book.observe(cond(&k, Some(Warning), 300), GRACE);
        // A replayed clear from before the latest observation does not resolve it.
        assert!(book.observe(cond(&k, None, 200), GRACE).is_empty());
        assert!(book.get(&k).unwrap().state.is_open());
    }

    #[test]
    fn keys_are_independent() {
        let mut book = AlertBook::new();
        let a = tap7();
        let b = key(AlertKind::LowKeg, "loc-001#TAP#08");
        let c = key(AlertKind::LowBattery, "SCALE-0042");
        for k in [&a, &b, &c] {
            book.observe(cond(k, Some(Warning), 0), GRACE);
        }
        let fired = book.tick(EpochMs(120 * S));
        assert_eq!(fired.len(), 3);
        // Sorted by key: kind first (low_keg < low_battery in declaration order), then entity.
        let order: Vec<&AlertKey> = fired.iter().map(|t| &t.alert.key).collect();
        assert_eq!(order, [&a, &b, &c]);
        book.observe(cond(&b, None, 130), GRACE);
        assert_eq!(book.open().count(), 2);
        assert!(book.get(&b).is_none());
    }

    #[test]
    fn survives_a_restart_without_refiring() {
        let mut book = AlertBook::new();
        let active = tap7();
        let firing = key(AlertKind::ScaleOffline, "SCALE-0042");
        book.observe(cond(&active, Some(Warning), 0), GRACE);
        book.tick(EpochMs(120 * S));
        book.observe(cond(&firing, Some(Critical), 100), GRACE);

        let json = serde_json::to_string(&book).unwrap();
        let mut resumed: AlertBook = serde_json::from_str(&json).unwrap();
        assert_eq!(resumed, book);
        // The active alert stays active: no second alert_fired.
        assert!(
            resumed
                .observe(cond(&active, Some(Warning), 400), GRACE)
                .is_empty()
        );
        // The grace period carries on from where it was, not from the restart.
        let t = resumed.tick(EpochMs(220 * S));
        assert_eq!(kinds(&t), [T::Fired]);
        assert_eq!(t[0].alert.key, firing);
        assert!(resumed.tick(EpochMs(400 * S)).is_empty());
    }

    #[test]
    fn stored_books_are_checked() {
        let mut book = AlertBook::new();
        let k = tap7();
        book.observe(cond(&k, Some(Warning), 0), GRACE);
        let one = serde_json::to_value(&book).unwrap();
        let alert = one[0].clone();
        let twice = serde_json::Value::Array(vec![alert.clone(), alert.clone()]);
        let err = serde_json::from_value::<AlertBook>(twice).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let mut resolved = alert;
        resolved["state"] = serde_json::json!({"state": "resolved"});
        assert!(
            serde_json::from_value::<AlertBook>(serde_json::Value::Array(vec![resolved])).is_err()
        );
        assert_eq!(
            one[0]["state"],
            serde_json::json!({"state": "firing", "since": 0})
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Observe(usize, Option<Severity>),
        Tick,
        Ack(usize),
        Restart,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let sev = prop_oneof![Just(None), Just(Some(Warning)), Just(Some(Critical))];
        prop_oneof![
            4 => (0usize..3, sev).prop_map(|(k, s)| Op::Observe(k, s)),
            2 => Just(Op::Tick),
            1 => (0usize..3).prop_map(Op::Ack),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        #[test]
        fn one_open_alert_per_key_and_all_clearable(
            ops in proptest::collection::vec((arb_op(), 0i64..90), 0..120),
        ) {
            let keys = [tap7(), key(AlertKind::LowKeg, "loc-001#TAP#08"), key(AlertKind::ScaleOffline, "SCALE-1")];
            let mut book = AlertBook::new();
            let mut open = [false; 3];
            let mut now = 0i64;
            let check = |ts: &[Transition], open: &mut [bool; 3]| -> Result<(), TestCaseError> {
                for t in ts {
                    let i = keys.iter().position(|k| *k == t.alert.key).unwrap();
                    match t.kind {
                        T::Fired => { prop_assert!(!open[i], "fired twice"); open[i] = true; }
                        T::Cleared => { prop_assert!(open[i], "cleared while not open"); open[i] = false; }
                        T::GraceStarted | T::GraceAbandoned => prop_assert!(!open[i]),
                        T::Escalated | T::Deescalated | T::Acknowledged => prop_assert!(open[i]),
                    }
                }
                Ok(())
            };
            for (op, dt) in ops {
                now += dt * S;
                let ts = match op {
                    Op::Observe(k, s) => book.observe(cond(&keys[k], s, now / S), GRACE),
                    Op::Tick => book.tick(EpochMs(now)),
                    Op::Ack(k) => book.acknowledge(&keys[k], "sam", EpochMs(now)).ok().flatten().into_iter().collect(),
                    Op::Restart => {
                        book = serde_json::from_str(&serde_json::to_string(&book).unwrap()).unwrap();
                        Vec::new()
                    }
                };
                check(&ts, &mut open)?;
                prop_assert!(book.len() <= keys.len());
                for (i, k) in keys.iter().enumerate() {
                    prop_assert_eq!(book.get(k).is_some_and(|a| a.state.is_open()), open[i]);
                }
            }
            // Every alert, whatever its state, clears when its condition clears.
            now += S;
            for k in &keys {
                let ts = book.observe(cond(k, None, now / S), GRACE);
                check(&ts, &mut open)?;
            }
            prop_assert!(book.is_empty());
            prop_assert_eq!(open, [false; 3]);
        }
    }
}
