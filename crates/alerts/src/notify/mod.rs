//! Notifications: what goes into the outbox (the [`Notification`] payload and its idempotency
//! key), how it is rendered for people ([`render`]), and the two ways out: e-mail over SMTP
//! ([`email`]) and signed webhooks ([`webhook`]). Web Push is not implemented: push channels
//! are never queued.
//!
//! A payload is stored once and delivered at least once: everything a delivery needs is in it
//! (or, for a digest, in the alert log it names), so a retry after a restart sends the same
//! message with the same idempotency key.

pub mod email;
pub mod render;
pub mod webhook;

use scalesense_domain::alert::{AlertKind, Severity};
use scalesense_store::{LocationId, RecordId};
use serde::{Deserialize, Serialize};

use crate::context::AlertContext;

/// An outbox payload, stored as JSON with a `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notification {
    /// One alert fired, escalated or resolved during operating hours.
    Alert(Box<AlertNotice>),
    /// What quiet hours held back at a location, due at its opening.
    Digest(DigestNotice),
    /// "Send test notification" from the settings page.
    Test(TestNotice),
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeEvent {
    Fired,
    Escalated,
    Resolved,
}

impl NoticeEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::Escalated => "escalated",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert change, with everything its message needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotice {
    pub event: NoticeEvent,
    /// `{location}/{kind}/{entity}`, as in live events.
    pub alert_id: String,
    pub location_id: LocationId,
    pub location_name: String,
    /// IANA name, for local times in the message.
    pub time_zone: String,
    pub kind: AlertKind,
    pub entity: String,
    pub severity: Severity,
    pub fired_at: i64,
    /// When this change happened.
    pub at: i64,
    pub context: AlertContext,
}

/// The overnight digest of a location for the opening at `opening` (epoch ms). Its entries are
/// read from the alert log when it is delivered: every fired, escalated or resolved line that
/// quiet hours held until this opening.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestNotice {
    pub location_id: LocationId,
    pub location_name: String,
    pub time_zone: String,
    pub opening: i64,
}

/// One line of a digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestEntry {
    pub event: NoticeEvent,
    pub alert_id: String,
    pub kind: AlertKind,
    pub entity: String,
    pub severity: Severity,
    pub at: i64,
    pub context: AlertContext,
}

/// A test message for one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestNotice {
    pub channel_id: RecordId,
    pub requested_at: i64,
}

/// The outbox idempotency key of an alert change on one channel: one per alert instance (its
/// `fired_at`) and event, escalations also per time (an alert may escalate twice).
pub fn alert_key(notice: &AlertNotice, channel: &RecordId) -> String {
    let base = format!("alert:{}@{}", notice.alert_id, notice.fired_at);
    match notice.event {
        NoticeEvent::Fired | NoticeEvent::Resolved => {
            format!("{base}:{}:{channel}", notice.event.as_str())
        }
        NoticeEvent::Escalated => format!("{base}:escalated@{}:{channel}", notice.at),
    }
}

/// The key of a location's digest for one opening on one channel: the outbox stores it once,
/// so each location gets exactly one digest per opening per channel, whichever replica or
/// restart queues it.
pub fn digest_key(location: &LocationId, opening: i64, channel: &RecordId) -> String {
    format!("digest:{location}@{opening}:{channel}")
}

/// The key of a test message.
pub fn test_key(channel: &RecordId, at: i64) -> String {
    format!("test:{channel}@{at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(event: NoticeEvent, at: i64) -> AlertNotice {
        AlertNotice {
            event,
            alert_id: "loc-001/low_keg/loc-001#TAP#07".into(),
            location_id: LocationId::try_from("loc-001").unwrap(),
            location_name: "The Anchor".into(),
            time_zone: "Europe/Dublin".into(),
            kind: AlertKind::LowKeg,
            entity: "loc-001#TAP#07".into(),
            severity: Severity::Warning,
            fired_at: 1_000,
            at,
            context: AlertContext::default(),
        }
    }

    #[test]
    fn keys_name_the_alert_instance_event_and_channel() {
        let ch = RecordId::try_from("ch-1").unwrap();
        assert_eq!(
            alert_key(&notice(NoticeEvent::Fired, 1_000), &ch),
            "alert:loc-001/low_keg/loc-001#TAP#07@1000:fired:ch-1"
        );
        // A resolution is keyed by the instance, not the time: a replay cannot send it twice.
        assert_eq!(
            alert_key(&notice(NoticeEvent::Resolved, 9_000), &ch),
            alert_key(&notice(NoticeEvent::Resolved, 9_500), &ch)
        );
        assert_ne!(
            alert_key(&notice(NoticeEvent::Escalated, 2_000), &ch),
            alert_key(&notice(NoticeEvent::Escalated, 3_000), &ch)
        );
        assert_eq!(
            digest_key(&LocationId::try_from("loc-001").unwrap(), 5, &ch),
            "digest:loc-001@5:ch-1"
        );
    }

    #[test]
    fn payloads_are_tagged_json() {
        let n = Notification::Alert(Box::new(notice(NoticeEvent::Fired, 1_000)));
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["type"], "alert");
        assert_eq!(v["event"], "fired");
        assert_eq!(v["kind"], "low_keg");
        assert_eq!(serde_json::from_value::<Notification>(v).unwrap(), n);
    }
}
