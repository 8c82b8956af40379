//! Turns a notification into what a person reads: an e-mail's subject, plain-text body and HTML
//! body, naming the tap, the beer, the level, the hours remaining and a link to the tap in the
//! dashboard (`{base_url}/#/taps/{url-encoded tap id}`).
//!
//! Pure: no I/O, no clock. Every value that came from a user (tap and location names, beer
//! names) is HTML-escaped in the HTML body.

use core::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use scalesense_domain::alert::{AlertKind, Severity};
use scalesense_store::TapId;

use super::{AlertNotice, DigestEntry, DigestNotice, NoticeEvent, TestNotice};
use crate::context::{AlertContext, hours};

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The product name in subjects and signatures.
const PRODUCT: &str = "Scale Sense";

/// An alert kind as people say it.
pub fn kind_title(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::LowKeg => "Low keg",
        AlertKind::ScaleOffline => "Scale offline",
        AlertKind::LowBattery => "Low battery",
        AlertKind::CalibrationDrift => "Calibration drift",
        AlertKind::StaleReadings => "Stale readings",
    }
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// The dashboard's page for a tap: `{base_url}/#/taps/{tap id, percent-encoded}`.
pub fn tap_link(base_url: &str, tap: &TapId) -> String {
    format!(
        "{}/#/taps/{}",
        base_url.trim_end_matches('/'),
        encode_segment(tap.as_str())
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`#` becomes `%23`).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-06-11 02:00 IST` in the location's zone (UTC when the zone is unknown).
pub fn local_time(ms: i64, time_zone: &str) -> String {
    let tz = TimeZone::get(time_zone).unwrap_or(TimeZone::UTC);
    Timestamp::from_millisecond(ms).map_or_else(
        |_| format!("{ms} ms"),
        |ts| {
            ts.to_zoned_datetime(tz)
                .strftime("%Y-%m-%d %H:%M %Z")
                .to_string()
        },
    )
}

/// `16:00` in the location's zone.
fn local_clock(ms: i64, time_zone: &str) -> String {
    let tz = TimeZone::get(time_zone).unwrap_or(TimeZone::UTC);
    Timestamp::from_millisecond(ms).map_or_else(
        |_| format!("{ms} ms"),
        |ts| ts.to_zoned_datetime(tz).strftime("%H:%M").to_string(),
    )
}

/// What the alert is about, for a subject: `Tap 7 (Guinness)` or `scale SCALE-0042 on Tap 7`.
fn subject_of(kind: AlertKind, entity: &str, c: &AlertContext) -> String {
    let tap = c
        .tap_name
        .clone()
        .or_else(|| c.tap_id.as_ref().map(ToString::to_string));
    match kind {
        AlertKind::LowKeg => {
            let tap = tap.unwrap_or_else(|| entity.to_owned());
            match &c.beer {
                Some(beer) => format!("{tap} ({beer})"),
                None => tap,
            }
        }
        _ => match tap {
            Some(tap) => format!("scale {entity} on {tap}"),
            None => format!("scale {entity}"),
        },
    }
}

/// Label/value lines describing an alert's facts.
fn fact_lines(kind: AlertKind, entity: &str, c: &AlertContext) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    if let Some(tap) = c
        .tap_name
        .clone()
        .or_else(|| c.tap_id.as_ref().map(ToString::to_string))
    {
        lines.push(("Tap", tap));
    }
    if let Some(beer) = &c.beer {
        lines.push(("Beer", beer.clone()));
    }
    if kind != AlertKind::LowKeg {
        lines.push(("Scale", entity.to_owned()));
    }
    if let Some(level) = c.level_pct {
        lines.push(("Level", format!("{level:.1} %")));
    }
    if kind == AlertKind::LowKeg {
        lines.push((
            "Hours remaining",
            c.hours_remaining.map_or_else(
                || "unknown (no recent pours)".to_owned(),
                |h| format!("about {} at the current pour rate", hours(h)),
            ),
        ));
    }
    if let Some(b) = c.battery_pct {
        lines.push(("Battery", format!("{b:.0} %")));
    }
    if let (Some(s), AlertKind::ScaleOffline | AlertKind::StaleReadings) = (c.silent_secs, kind) {
        lines.push(("Silent for", format!("{} min", s / 60)));
    }
    if let Some(d) = c.drift_pct {
        lines.push(("Calibration drift", format!("{d:+.1} %")));
    }
    lines
}

fn text_block(lines: &[(&str, String)]) -> String {
    lines.iter().fold(String::new(), |mut out, (label, value)| {
        let _ = writeln!(out, "{label}: {value}");
        out
    })
}

fn html_table(lines: &[(&str, String)]) -> String {
    let rows = lines.iter().fold(String::new(), |mut out, (label, value)| {
        let _ = write!(
            out,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape_html(label),
            escape_html(value)
        );
        out
    });
    format!("<table cellpadding=\"4\">{rows}</table>")
}

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif\">{body}<p style=\"color:#666\">— {PRODUCT}</p>\
         </body></html>",
        t = escape_html(title)
    )
}

/// The e-mail for one alert change.
pub fn alert_email(n: &AlertNotice, base_url: &str) -> Email {
    let title = kind_title(n.kind);
    let what = subject_of(n.kind, &n.entity, &n.context);
    let severity = severity_word(n.severity);
    let (subject, heading, when_label) = match n.event {
        NoticeEvent::Fired => (
            format!(
                "[{PRODUCT}] {title} ({severity}): {what} at {}",
                n.location_name
            ),
            format!("{title} — {severity}"),
            "Fired",
        ),
        NoticeEvent::Escalated => (
            format!(
                "[{PRODUCT}] {title} now {severity}: {what} at {}",
                n.location_name
            ),
            format!("{title} — escalated to {severity}"),
            "Escalated",
        ),
        NoticeEvent::Resolved => (
            format!(
                "[{PRODUCT}] Resolved: {title}, {what} at {}",
                n.location_name
            ),
            format!("{title} — resolved"),
            "Resolved",
        ),
    };
    let mut lines = vec![("Location", n.location_name.clone())];
    lines.extend(fact_lines(n.kind, &n.entity, &n.context));
    if n.event != NoticeEvent::Fired {
        lines.push(("Fired", local_time(n.fired_at, &n.time_zone)));
    }
    lines.push((when_label, local_time(n.at, &n.time_zone)));
    let link = n.context.tap_id.as_ref().map(|t| tap_link(base_url, t));

    let mut text = format!("{heading}\n\n{}", text_block(&lines));
    let mut html = format!("<h2>{}</h2>{}", escape_html(&heading), html_table(&lines));
    if let Some(link) = &link {
        let _ = write!(text, "\nOpen the tap: {link}\n");
        let _ = write!(
            html,
            "<p><a href=\"{l}\">Open the tap in the dashboard</a><br>{l}</p>",
            l = escape_html(link)
        );
    }
    let _ = write!(text, "\n-- \n{PRODUCT}\n");
    Email {
        html: html_page(&subject, &html),
        subject,
        text,
    }
}

/// The overnight digest: every line quiet hours held until `digest.opening`, oldest first.
pub fn digest_email(digest: &DigestNotice, entries: &[DigestEntry], base_url: &str) -> Email {
    let count = |e: NoticeEvent| entries.iter().filter(|x| x.event == e).count();
    let subject = format!(
        "[{PRODUCT}] Overnight digest for {}: {} fired, {} escalated, {} resolved",
        digest.location_name,
        count(NoticeEvent::Fired),
        count(NoticeEvent::Escalated),
        count(NoticeEvent::Resolved)
    );
    let heading = format!("Overnight digest for {}", digest.location_name);
    let intro = format!(
        "While the bar was closed, until opening at {}:",
        local_time(digest.opening, &digest.time_zone)
    );
    let mut text = format!("{heading}\n{intro}\n\n");
    let mut rows = String::new();
    for e in entries {
        let what = subject_of(e.kind, &e.entity, &e.context);
        let event = match e.event {
            NoticeEvent::Fired => "fired",
            NoticeEvent::Escalated => "escalated",
            NoticeEvent::Resolved => "resolved",
        };
        let facts = if e.event == NoticeEvent::Resolved {
            String::new()
        } else {
            e.context.describe(e.kind)
        };
        let title = format!("{} ({})", kind_title(e.kind), severity_word(e.severity));
        let time = local_clock(e.at, &digest.time_zone);
        let link = e.context.tap_id.as_ref().map(|t| tap_link(base_url, t));
        let _ = write!(text, "{time}  {event:<9} {title}: {what}");
        if !facts.is_empty() {
            let _ = write!(text, " — {facts}");
        }
        text.push('\n');
        if let Some(link) = &link {
            let _ = writeln!(text, "       {link}");
        }
        let what_html = match &link {
            Some(l) => format!("<a href=\"{}\">{}</a>", escape_html(l), escape_html(&what)),
            None => escape_html(&what),
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(&time),
            event,
            escape_html(&title),
            what_html,
            escape_html(&facts)
        );
    }
    if entries.is_empty() {
        text.push_str("Nothing happened.\n");
    }
    let _ = write!(text, "\n-- \n{PRODUCT}\n");
    let html = format!(
        "<h2>{}</h2><p>{}</p><table cellpadding=\"4\"><tr><th>Time</th><th>Event</th>\
         <th>Alert</th><th>What</th><th>Facts</th></tr>{rows}</table>",
        escape_html(&heading),
        escape_html(&intro)
    );
    Email {
        html: html_page(&subject, &html),
        subject,
        text,
    }
}

/// The answer to "send test notification".
pub fn test_email(t: &TestNotice, base_url: &str) -> Email {
    let subject = format!("[{PRODUCT}] Test notification");
    let text = format!(
        "This is a test notification for channel {}.\nAlerts for this channel will arrive like \
         this one.\n\nDashboard: {}/\n\n-- \n{PRODUCT}\n",
        t.channel_id,
        base_url.trim_end_matches('/')
    );
    let html = format!(
        "<h2>Test notification</h2><p>This is a test notification for channel {}. Alerts for \
         this channel will arrive like this one.</p>",
        escape_html(t.channel_id.as_str())
    );
    Email {
        html: html_page(&subject, &html),
        subject,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalesense_store::{LocationId, RecordId};

    const BASE: &str = "http://bar.test:8080/";

    fn notice(event: NoticeEvent) -> AlertNotice {
        AlertNotice {
            event,
            alert_id: "loc-001/low_keg/loc-001#TAP#07".into(),
            location_id: LocationId::try_from("loc-001").unwrap(),
            location_name: "The <Anchor>".into(),
            time_zone: "Europe/Dublin".into(),
            kind: AlertKind::LowKeg,
            entity: "loc-001#TAP#07".into(),
            severity: Severity::Critical,
            // 2026-06-10 20:14 IST.
            fired_at: 1_781_118_840_000,
            at: 1_781_118_840_000,
            context: AlertContext {
                tap_id: Some(TapId::try_from("loc-001#TAP#07").unwrap()),
                tap_name: Some("Tap 7".into()),
                beer: Some("Guinness Draught".into()),
                level_pct: Some(9.46),
                hours_remaining: Some(1.25),
                ..AlertContext::default()
            },
        }
    }

    #[test]
    fn link_encodes_the_tap_id() {
        let tap = TapId::try_from("loc-001#TAP#07").unwrap();
        assert_eq!(
            tap_link(BASE, &tap),
            "http://bar.test:8080/#/taps/loc-001%23TAP%2307"
        );
        assert_eq!(encode_segment("a b~é"), "a%20b~%C3%A9");
    }

    #[test]
    fn alert_email_names_everything() {
        let e = alert_email(&notice(NoticeEvent::Fired), BASE);
        assert_eq!(
            e.subject,
            "[Scale Sense] Low keg (critical): Tap 7 (Guinness Draught) at The <Anchor>"
        );
        assert_eq!(
            e.text,
            "Low keg — critical\n\nLocation: The <Anchor>\nTap: Tap 7\nBeer: Guinness Draught\n\
             Level: 9.5 %\nHours remaining: about 1.2 h at the current pour rate\n\
             Fired: 2026-06-10 20:14 IST\n\n\
             Open the tap: http://bar.test:8080/#/taps/loc-001%23TAP%2307\n\n-- \nScale Sense\n"
        );
        assert!(e.html.contains("The &lt;Anchor&gt;"), "{}", e.html);
        assert!(!e.html.contains("<Anchor>"));
        assert!(
            e.html
                .contains("href=\"http://bar.test:8080/#/taps/loc-001%23TAP%2307\"")
        );
        let r = alert_email(&notice(NoticeEvent::Resolved), BASE);
        assert!(r.subject.starts_with("[Scale Sense] Resolved: Low keg"));
        assert!(r.text.contains("Resolved: 2026-06-10 20:14 IST"));
    }

    #[test]
    fn digest_lists_lines_in_local_time() {
        let n = notice(NoticeEvent::Fired);
        let digest = DigestNotice {
            location_id: n.location_id.clone(),
            location_name: "The Anchor".into(),
            time_zone: "Europe/Dublin".into(),
            // 2026-06-11 16:00 IST.
            opening: 1_781_190_000_000,
        };
        let fired = DigestEntry {
            event: NoticeEvent::Fired,
            alert_id: n.alert_id.clone(),
            kind: n.kind,
            entity: n.entity.clone(),
            severity: Severity::Warning,
            // 02:00 IST.
            at: 1_781_139_600_000,
            context: n.context.clone(),
        };
        let resolved = DigestEntry {
            event: NoticeEvent::Resolved,
            at: 1_781_143_200_000,
            ..fired.clone()
        };
        let e = digest_email(&digest, &[fired, resolved], BASE);
        assert_eq!(
            e.subject,
            "[Scale Sense] Overnight digest for The Anchor: 1 fired, 0 escalated, 1 resolved"
        );
        assert_eq!(
            e.text,
            "Overnight digest for The Anchor\n\
             While the bar was closed, until opening at 2026-06-11 16:00 IST:\n\n\
             02:00  fired     Low keg (warning): Tap 7 (Guinness Draught) — level 9.5 %, about 1.2 h left at the current pour rate\n\
             \x20      http://bar.test:8080/#/taps/loc-001%23TAP%2307\n\
             03:00  resolved  Low keg (warning): Tap 7 (Guinness Draught)\n\
             \x20      http://bar.test:8080/#/taps/loc-001%23TAP%2307\n\
             \n-- \nScale Sense\n"
        );
    }

    #[test]
    fn test_email_names_the_channel() {
        let e = test_email(
            &TestNotice {
                channel_id: RecordId::try_from("ch-1").unwrap(),
                requested_at: 0,
            },
            BASE,
        );
        assert_eq!(e.subject, "[Scale Sense] Test notification");
        assert!(e.text.contains("channel ch-1"));
        assert!(e.text.contains("Dashboard: http://bar.test:8080/"));
    }
}
