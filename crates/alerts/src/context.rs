//! The facts an alert carries: what was measured when its rule last spoke, and what it is about
//! (tap, beer, scale). Stored as the alert's `context` JSON (active row and history), sent in
//! live events and rendered into e-mails and webhook bodies.
//!
//! The engine writes every field; readers must treat each one as optional, because an alert
//! promoted by the scheduler after a restart may only know what its grace row knew.

use scalesense_domain::alert::AlertKind;
use scalesense_store::{DeviceId, TapId};
use serde::{Deserialize, Serialize};

/// An alert's facts. `transition` says which change wrote this copy (`fired`, `escalated`,
/// `deescalated`, `resolved`), so a history line can be told apart from an acknowledgement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertContext {
    /// One line for people, e.g. `level 9.5 %, about 1.2 h left at the current pour rate`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transition: Option<String>,
    /// When the condition was first seen (the start of the grace period), epoch ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tap_id: Option<TapId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tap_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level_pct: Option<f64>,
    /// Hours until the keg is empty at the pour rate over the location's window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours_remaining: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_l: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    /// How long the scale has been silent (offline) or without a reading (stale), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_pct: Option<f64>,
}

impl AlertContext {
    /// Reads a stored context; anything unreadable becomes empty facts, never an error.
    pub fn from_json(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// Reads the domain book's context string (which the engine wrote with [`Self::to_text`]).
    pub fn from_text(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The one-line description of the measured facts for an alert of `kind`.
    pub fn describe(&self, kind: AlertKind) -> String {
        let mut parts: Vec<String> = Vec::new();
        match kind {
            AlertKind::LowKeg => {
                if let Some(level) = self.level_pct {
                    parts.push(format!("level {level:.1} %"));
                }
                parts.push(self.hours_remaining.map_or_else(
                    || "time remaining unknown (no recent pours)".to_owned(),
                    |h| format!("about {} left at the current pour rate", hours(h)),
                ));
            }
            AlertKind::LowBattery => {
                if let Some(b) = self.battery_pct {
                    parts.push(format!("battery {b:.0} %"));
                }
            }
            AlertKind::ScaleOffline => {
                if let Some(s) = self.silent_secs {
                    parts.push(format!("nothing heard for {}", minutes(s)));
                }
            }
            AlertKind::StaleReadings => {
                if let Some(s) = self.silent_secs {
                    parts.push(format!("online but no reading for {}", minutes(s)));
                }
            }
            AlertKind::CalibrationDrift => {
                if let Some(d) = self.drift_pct {
                    parts.push(format!("calibration drift {d:+.1} %"));
                }
            }
        }
        parts.join(", ")
    }
}

/// `1.2 h`, or `25 min` under an hour.
pub fn hours(h: f64) -> String {
    if h < 1.0 {
        format!("{:.0} min", (h * 60.0).max(0.0))
    } else {
        format!("{h:.1} h")
    }
}

/// `7 min`, or `2.5 h` from two hours on.
fn minutes(secs: u64) -> String {
    if secs >= 7_200 {
        format!("{:.1} h", secs as f64 / 3_600.0)
    } else {
        format!("{} min", secs / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_each_kind() {
        let keg = AlertContext {
            level_pct: Some(9.46),
            hours_remaining: Some(1.25),
            ..AlertContext::default()
        };
        assert_eq!(
            keg.describe(AlertKind::LowKeg),
            "level 9.5 %, about 1.2 h left at the current pour rate"
        );
        let slow = AlertContext {
            level_pct: Some(18.0),
            ..AlertContext::default()
        };
        assert_eq!(
            slow.describe(AlertKind::LowKeg),
            "level 18.0 %, time remaining unknown (no recent pours)"
        );
        assert_eq!(hours(0.5), "30 min");
        let off = AlertContext {
            silent_secs: Some(301),
            ..AlertContext::default()
        };
        assert_eq!(
            off.describe(AlertKind::ScaleOffline),
            "nothing heard for 5 min"
        );
        let drift = AlertContext {
            drift_pct: Some(-2.5),
            ..AlertContext::default()
        };
        assert_eq!(
            drift.describe(AlertKind::CalibrationDrift),
            "calibration drift -2.5 %"
        );
    }

    #[test]
    fn round_trips_and_tolerates_junk() {
        let c = AlertContext {
            transition: Some("fired".into()),
            tap_id: Some(TapId::try_from("loc-001#TAP#07").unwrap()),
            level_pct: Some(12.0),
            ..AlertContext::default()
        };
        assert_eq!(AlertContext::from_text(&c.to_text()), c);
        assert_eq!(AlertContext::from_json(&c.to_json()), c);
        assert_eq!(
            c.to_json(),
            serde_json::json!({"transition": "fired", "tap_id": "loc-001#TAP#07", "level_pct": 12.0})
        );
        assert_eq!(
            AlertContext::from_json(&serde_json::json!("text")),
            AlertContext::default()
        );
    }
}
