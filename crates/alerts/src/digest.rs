//! The overnight digest's content: which lines of a location's alert log quiet hours held until
//! one opening.
//!
//! Nothing is queued per alert while a location is closed. The first e-mail or webhook that
//! quiet hours hold queues one digest item per channel, keyed by the location and the opening
//! (`digest_key`), due at the opening; later ones find it already queued. When it is delivered,
//! this module picks its lines from the append-only alert log: every fired, escalated or
//! resolved line whose notification on that channel would have been held until exactly that
//! opening. The log is the record, so the digest is the same whichever replica queued it and
//! however often it is retried. Pure: no I/O.

use scalesense_domain::alert::{AlertKind, Severity};
use scalesense_store::{AlertHistoryEntry, AlertState, ChannelKind};

use crate::context::AlertContext;
use crate::notify::{DigestEntry, NoticeEvent};
use crate::settings::{ChannelRules, LocationSettings};

/// What a log line announced, if anything people are told about: the engine writes
/// `transition` into every context it stores; acknowledgements and de-escalations are skipped.
fn event_of(entry: &AlertHistoryEntry, context: &AlertContext) -> Option<NoticeEvent> {
    match (entry.state, context.transition.as_deref()) {
        (AlertState::Resolved, _) => Some(NoticeEvent::Resolved),
        (AlertState::Escalated, Some("escalated")) => Some(NoticeEvent::Escalated),
        (AlertState::Active, Some("fired")) => Some(NoticeEvent::Fired),
        _ => None,
    }
}

pub(crate) fn store_severity_to_domain(severity: scalesense_store::Severity) -> Severity {
    match severity {
        scalesense_store::Severity::Critical => Severity::Critical,
        scalesense_store::Severity::Info | scalesense_store::Severity::Warning => Severity::Warning,
    }
}

/// The digest lines for `opening` on a channel of `kind` with `rules`, oldest first, from a
/// location's log (any order).
pub fn entries(
    log: &[AlertHistoryEntry],
    settings: &LocationSettings,
    kind: ChannelKind,
    rules: &ChannelRules,
    opening: i64,
) -> Vec<DigestEntry> {
    let mut out: Vec<(i64, DigestEntry)> = log
        .iter()
        .filter_map(|entry| {
            let context = AlertContext::from_json(&entry.context);
            let event = event_of(entry, &context)?;
            let alert_kind: AlertKind = entry.kind.parse().ok()?;
            let severity = store_severity_to_domain(entry.severity);
            let wanted = rules.wants(alert_kind, severity)
                && (event != NoticeEvent::Resolved || rules.resolved);
            (wanted && settings.held_until(kind, entry.at) == Some(opening)).then(|| {
                (
                    entry.id,
                    DigestEntry {
                        event,
                        alert_id: format!("{}/{}/{}", entry.location_id, entry.kind, entry.entity),
                        kind: alert_kind,
                        entity: entry.entity.clone(),
                        severity,
                        at: entry.at,
                        context,
                    },
                )
            })
        })
        .collect();
    out.sort_by_key(|(id, e)| (e.at, *id));
    out.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalesense_store::{AccountId, Location, LocationId, Units};
    use serde_json::json;

    /// 2026-06-11 00:00 UTC = 01:00 IST.
    const MIDNIGHT_UTC: i64 = 1_781_136_000_000;
    const HOUR: i64 = 3_600_000;

    fn settings() -> LocationSettings {
        LocationSettings::of(&Location {
            id: LocationId::try_from("loc-001").unwrap(),
            account_id: AccountId::try_from("acct").unwrap(),
            name: "The Anchor".into(),
            address: String::new(),
            time_zone: "Europe/Dublin".into(),
            units: Units::Metric,
            settings: json!({"quiet_hours": {"open": "16:00", "close": "01:00"}}),
            created_at: 0,
        })
    }

    fn line(id: i64, state: AlertState, transition: &str, at: i64) -> AlertHistoryEntry {
        AlertHistoryEntry {
            id,
            location_id: LocationId::try_from("loc-001").unwrap(),
            kind: "low_keg".into(),
            entity: "loc-001#TAP#01".into(),
            severity: scalesense_store::Severity::Warning,
            state,
            at,
            by: None,
            context: json!({"transition": transition, "level_pct": 18.0}),
        }
    }

    #[test]
    fn picks_what_was_held_until_this_opening() {
        let s = settings();
        // Opening: 16:00 IST on 2026-06-11 = 15:00 UTC.
        let opening = MIDNIGHT_UTC + 15 * HOUR;
        let log = vec![
            // 00:30 IST: still open, sent at once, not in the digest.
            line(1, AlertState::Active, "fired", MIDNIGHT_UTC - HOUR / 2),
            // 02:00 IST fired, 03:00 escalated, 04:00 acknowledged, 05:00 resolved.
            line(2, AlertState::Active, "fired", MIDNIGHT_UTC + HOUR),
            line(
                3,
                AlertState::Escalated,
                "escalated",
                MIDNIGHT_UTC + 2 * HOUR,
            ),
            line(
                4,
                AlertState::Acknowledged,
                "escalated",
                MIDNIGHT_UTC + 3 * HOUR,
            ),
            line(
                5,
                AlertState::Resolved,
                "escalated",
                MIDNIGHT_UTC + 4 * HOUR,
            ),
            // A de-escalation is not news.
            line(
                6,
                AlertState::Active,
                "deescalated",
                MIDNIGHT_UTC + 5 * HOUR,
            ),
            // 17:00 IST: open again, not held.
            line(7, AlertState::Active, "fired", MIDNIGHT_UTC + 16 * HOUR),
        ];
        let mut reversed = log.clone();
        reversed.reverse();
        let got = entries(
            &reversed,
            &s,
            ChannelKind::Email,
            &ChannelRules::default(),
            opening,
        );
        let events: Vec<(NoticeEvent, i64)> = got.iter().map(|e| (e.event, e.at)).collect();
        assert_eq!(
            events,
            [
                (NoticeEvent::Fired, MIDNIGHT_UTC + HOUR),
                (NoticeEvent::Escalated, MIDNIGHT_UTC + 2 * HOUR),
                (NoticeEvent::Resolved, MIDNIGHT_UTC + 4 * HOUR),
            ]
        );
        assert_eq!(got[0].alert_id, "loc-001/low_keg/loc-001#TAP#01");
        assert_eq!(got[0].context.level_pct, Some(18.0));
        // Another opening gets none of them; a channel that skips resolutions drops one.
        assert!(
            entries(
                &log,
                &s,
                ChannelKind::Email,
                &ChannelRules::default(),
                opening + 24 * HOUR
            )
            .is_empty()
        );
        let no_resolved = ChannelRules {
            resolved: false,
            ..ChannelRules::default()
        };
        assert_eq!(
            entries(&log, &s, ChannelKind::Webhook, &no_resolved, opening).len(),
            2
        );
        let critical_only = ChannelRules {
            severities: vec![Severity::Critical],
            ..ChannelRules::default()
        };
        assert!(entries(&log, &s, ChannelKind::Email, &critical_only, opening).is_empty());
    }
}
