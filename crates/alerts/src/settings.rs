//! The per-location and per-channel settings the alert code reads.
//!
//! A location's settings are one JSON document owned by the API (`thresholds`, `pour_rate`,
//! `quiet_hours`, …; see the API's `routes/locations.rs`); a channel's settings are a JSON
//! document whose keys this module defines (documented in `docs/notifications.md`). Both are
//! parsed leniently: a missing key takes the seed default, and a document that no longer parses
//! is logged and read as the defaults, so a bad setting can never stop alerts from firing.

use jiff::tz::TimeZone;
use scalesense_domain::alert::{AlertKind, Severity};
use scalesense_domain::pour::PourRateConfig;
use scalesense_domain::quiet::{Channel as QuietChannel, QuietHours};
use scalesense_domain::rules::Thresholds;
use scalesense_store::{Channel, ChannelKind, Location};
use serde::Deserialize;

/// The keys of a location's settings document the alert code uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct SettingsDoc {
    thresholds: Thresholds,
    pour_rate: PourRateConfig,
    quiet_hours: Option<QuietHours>,
}

/// A location's alert settings, parsed once per evaluation.
#[derive(Debug, Clone)]
pub struct LocationSettings {
    pub thresholds: Thresholds,
    pub pour_rate: PourRateConfig,
    /// Operating hours; `None`: nothing is ever held.
    pub quiet_hours: Option<QuietHours>,
    /// The location's time zone (UTC when the stored name is unknown).
    pub time_zone: TimeZone,
}

impl LocationSettings {
    pub fn of(location: &Location) -> Self {
        let doc: SettingsDoc = serde_json::from_value(location.settings.clone()).unwrap_or_else(|e| {
            tracing::warn!(location = %location.id, error = %e, "stored settings unreadable; alerting with the defaults");
            SettingsDoc::default()
        });
        let time_zone = TimeZone::get(&location.time_zone).unwrap_or_else(|e| {
            tracing::warn!(location = %location.id, time_zone = %location.time_zone, error = %e, "unknown time zone; using UTC");
            TimeZone::UTC
        });
        Self {
            thresholds: doc.thresholds,
            pour_rate: doc.pour_rate,
            quiet_hours: doc.quiet_hours,
            time_zone,
        }
    }

    /// When a notification on `channel` raised at `at_ms` may go out: `None` at once, or
    /// `Some(opening)` (epoch ms) when quiet hours hold it until the next opening.
    pub fn held_until(&self, channel: ChannelKind, at_ms: i64) -> Option<i64> {
        let quiet = self.quiet_hours?;
        let at = jiff::Timestamp::from_millisecond(at_ms).ok()?;
        let kind = quiet_channel(channel);
        quiet
            .should_hold(kind, at, &self.time_zone)
            .then(|| quiet.next_open_after(at, &self.time_zone).as_millisecond())
    }
}

/// The domain's name for a channel kind (quiet hours are decided per kind).
pub fn quiet_channel(kind: ChannelKind) -> QuietChannel {
    match kind {
        ChannelKind::Email => QuietChannel::Email,
        ChannelKind::Webhook => QuietChannel::Webhook,
        ChannelKind::Push => QuietChannel::Push,
    }
}

/// What a notification channel wants, from its `settings` document:
/// `{"severities": ["critical"], "alert_types": ["low_keg"], "resolved": true,
///   "recipients": ["bar@example.org"], "secret": "…"}`. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ChannelRules {
    /// Only alerts of these severities; empty: all.
    pub severities: Vec<Severity>,
    /// Only these alert kinds; empty: all.
    pub alert_types: Vec<AlertKind>,
    /// Whether resolutions are sent too (default yes).
    pub resolved: bool,
    /// E-mail: more recipients besides the channel's `target`.
    pub recipients: Vec<String>,
    /// Webhook: the HMAC-SHA256 key for `X-ScaleSense-Signature`.
    pub secret: Option<String>,
}

impl Default for ChannelRules {
    fn default() -> Self {
        Self {
            severities: Vec::new(),
            alert_types: Vec::new(),
            resolved: true,
            recipients: Vec::new(),
            secret: None,
        }
    }
}

impl ChannelRules {
    pub fn of(channel: &Channel) -> Self {
        serde_json::from_value(channel.settings.clone()).unwrap_or_else(|e| {
            tracing::warn!(channel = %channel.id, error = %e, "channel settings unreadable; using the defaults");
            Self::default()
        })
    }

    /// Whether an alert of `kind` at `severity` goes to this channel.
    pub fn wants(&self, kind: AlertKind, severity: Severity) -> bool {
        (self.severities.is_empty() || self.severities.contains(&severity))
            && (self.alert_types.is_empty() || self.alert_types.contains(&kind))
    }

    /// Every e-mail recipient: the channel's target (a comma-separated list is accepted) and
    /// `recipients`, trimmed, without empties or repeats.
    pub fn email_recipients(&self, target: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for address in target
            .split(',')
            .chain(self.recipients.iter().map(String::as_str))
        {
            let address = address.trim();
            if !address.is_empty() && !out.iter().any(|a| a.eq_ignore_ascii_case(address)) {
                out.push(address.to_owned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalesense_store::{AccountId, LocationId, RecordId, Units};
    use serde_json::json;

    fn location(settings: serde_json::Value, tz: &str) -> Location {
        Location {
            id: LocationId::try_from("loc-001").unwrap(),
            account_id: AccountId::try_from("acct").unwrap(),
            name: "The Anchor".into(),
            address: String::new(),
            time_zone: tz.into(),
            units: Units::Metric,
            settings,
            created_at: 0,
        }
    }

    fn channel(settings: serde_json::Value) -> Channel {
        Channel {
            id: RecordId::try_from("ch-1").unwrap(),
            account_id: AccountId::try_from("acct").unwrap(),
            location_id: None,
            kind: ChannelKind::Email,
            target: "a@bar.test, b@bar.test".into(),
            settings,
            enabled: true,
        }
    }

    #[test]
    fn location_settings_take_defaults_and_overrides() {
        let s = LocationSettings::of(&location(
            json!({"thresholds": {"grace_period_secs": 60}, "quiet_hours": {"open": "16:00", "close": "01:00"}, "other": 1}),
            "Europe/Dublin",
        ));
        assert_eq!(s.thresholds.grace_period_secs, 60);
        assert_eq!(s.thresholds.offline_warning_secs, 300);
        assert_eq!(s.pour_rate, PourRateConfig::default());
        assert!(s.quiet_hours.is_some());
        // 2026-06-11 02:00 IST (UTC+1) is quiet: held until 16:00 IST.
        let at = "2026-06-11T01:00:00Z".parse::<jiff::Timestamp>().unwrap();
        let open = "2026-06-11T15:00:00Z".parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            s.held_until(ChannelKind::Email, at.as_millisecond()),
            Some(open.as_millisecond())
        );
        assert_eq!(
            s.held_until(ChannelKind::Webhook, open.as_millisecond()),
            None
        );
    }

    #[test]
    fn unreadable_settings_read_as_defaults() {
        let s = LocationSettings::of(&location(json!({"thresholds": "nope"}), "Mars/Olympus"));
        assert_eq!(s.thresholds, Thresholds::default());
        assert!(s.quiet_hours.is_none());
        assert_eq!(s.held_until(ChannelKind::Email, 0), None);
        assert_eq!(s.time_zone, TimeZone::UTC);
    }

    #[test]
    fn channel_rules_filter_and_list_recipients() {
        let all = ChannelRules::of(&channel(json!({})));
        assert!(all.resolved);
        assert!(all.wants(AlertKind::LowBattery, Severity::Warning));
        let picky = ChannelRules::of(&channel(json!({
            "severities": ["critical"], "alert_types": ["low_keg", "scale_offline"],
            "recipients": ["c@bar.test", "A@bar.test"], "resolved": false
        })));
        assert!(picky.wants(AlertKind::LowKeg, Severity::Critical));
        assert!(!picky.wants(AlertKind::LowKeg, Severity::Warning));
        assert!(!picky.wants(AlertKind::LowBattery, Severity::Critical));
        assert!(!picky.resolved);
        assert_eq!(
            picky.email_recipients("a@bar.test, b@bar.test"),
            ["a@bar.test", "b@bar.test", "c@bar.test"]
        );
        let broken = ChannelRules::of(&channel(json!({"severities": "loud"})));
        assert_eq!(broken, ChannelRules::default());
    }
}
