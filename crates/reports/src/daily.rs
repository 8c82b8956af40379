//! The daily export: at each location's local export time (setting `export_time`, `"HH:MM"`,
//! default 10:00; `"off"` disables it), make the inventory PDF and CSV and e-mail the PDF, with
//! a link to the CSV, to the location's managers and admins.
//!
//! It runs as a [`ScheduledJob`] of the alert scheduler, so only the leader replica runs it;
//! the store's `claim_daily_export` (unique per location and local date) makes it fire once
//! per location per local day even across restarts and leader changes. The claim is taken
//! before the e-mail is sent: a crash between the two loses that day's e-mail rather than
//! sending it twice. Each pass also purges exports older than 24 hours.
//!
//! This module must never read the system clock (the job's [`Clock`] is the time), and never
//! let one location's failure stop the others.

use std::fmt::Write as _;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use scalesense_alerts::notify::render::Email;
use scalesense_alerts::{Attachment, Clock, Mailer, ScheduledJob};
use scalesense_store::{Location, Millis, Role, Store};

use crate::error::ReportError;
use crate::exports::{ExportFormat, Exporter};
use crate::report::{FILE_TTL, InventoryReport, ReportScope, inventory};

/// The export time when a location sets none.
pub const DEFAULT_EXPORT_TIME: Time = Time::constant(10, 0, 0, 0);

/// When a location's daily export runs, from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTime {
    At(Time),
    Off,
}

impl ExportTime {
    /// `export_time` from a location's settings: `"HH:MM"`, `"off"`, or missing (10:00). An
    /// unreadable value is logged and read as the default.
    pub fn of(location: &Location) -> Self {
        match location.settings.get("export_time") {
            None | Some(serde_json::Value::Null) => Self::At(DEFAULT_EXPORT_TIME),
            Some(serde_json::Value::String(s)) if s == "off" => Self::Off,
            Some(serde_json::Value::String(s)) => parse_hhmm(s).map_or_else(
                || {
                    tracing::warn!(location = %location.id, export_time = %s, "unreadable export_time; using 10:00");
                    Self::At(DEFAULT_EXPORT_TIME)
                },
                Self::At,
            ),
            Some(other) => {
                tracing::warn!(location = %location.id, export_time = %other, "unreadable export_time; using 10:00");
                Self::At(DEFAULT_EXPORT_TIME)
            }
        }
    }
}

/// `"HH:MM"`, 00:00–23:59.
pub fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// The local date whose export is due at `now`, if any: the local date of `now` once `now` has
/// reached that date's export time. On a spring-forward day an export time inside the gap runs
/// the gap's length later (02:30 → 03:30, the "compatible" rule of RFC 5545 and jiff); on a
/// fall-back day a repeated time runs at its first occurrence.
pub fn due_date(now: Millis, at: Time, tz: &TimeZone) -> Option<Date> {
    let now_ts = Timestamp::from_millisecond(now).ok()?;
    let today = tz.to_datetime(now_ts).date();
    let export_at = tz.to_timestamp(today.to_datetime(at)).ok()?;
    (now_ts >= export_at).then_some(today)
}

/// The daily export, run by the scheduler on the leader.
#[derive(Debug)]
pub struct DailyExportJob {
    store: Arc<dyn Store>,
    exporter: Exporter,
    mailer: Option<Mailer>,
    clock: Arc<dyn Clock>,
    /// Prefix of the links in the e-mail, e.g. `https://bar.example` (no trailing slash).
    public_url: String,
}

/// What one pass did, for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DailyReport {
    /// Locations whose export ran in this pass.
    pub exported: Vec<String>,
    /// E-mails sent.
    pub mailed: usize,
    /// Locations that failed.
    pub failed: usize,
    /// Old export files removed.
    pub purged: usize,
}

impl DailyExportJob {
    /// `mailer: None` still makes the files (and logs that nobody was told).
    pub fn new(
        store: Arc<dyn Store>,
        exporter: Exporter,
        mailer: Option<Mailer>,
        clock: Arc<dyn Clock>,
        public_url: impl Into<String>,
    ) -> Self {
        Self {
            store,
            exporter,
            mailer,
            clock,
            public_url: public_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// One pass at the clock's time: purge, then every location whose export is due and not
    /// yet claimed today.
    pub async fn run_once(&self) -> Result<DailyReport, ReportError> {
        let now = self.clock.now_ms();
        let mut report = DailyReport {
            purged: self.exporter.purge(now).await?,
            ..DailyReport::default()
        };
        for location in self.store.all_locations().await? {
            let ExportTime::At(at) = ExportTime::of(&location) else {
                continue;
            };
            let scope = ReportScope::of(location.account_id.clone(), location, now);
            let Some(date) = due_date(now, at, scope.tz()) else {
                continue;
            };
            match self.run_location(&scope, &date.to_string()).await {
                Ok(None) => {}
                Ok(Some(mailed)) => {
                    report.exported.push(scope.location.id.to_string());
                    report.mailed += usize::from(mailed);
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(location = %scope.location.id, error = %e, "daily export failed");
                }
            }
        }
        Ok(report)
    }

    /// `None` when today's export was already claimed; else whether an e-mail went out.
    async fn run_location(
        &self,
        scope: &ReportScope,
        date: &str,
    ) -> Result<Option<bool>, ReportError> {
        let claimed = self
            .store
            .claim_daily_export(&scope.account, &scope.location.id, date, scope.now)
            .await?;
        if !claimed {
            return Ok(None);
        }
        let report = inventory(&*self.store, scope).await?;
        let pdf = self
            .exporter
            .export(scope, &report, ExportFormat::Pdf, "scheduler")
            .await?;
        let csv = self
            .exporter
            .export(scope, &report, ExportFormat::Csv, "scheduler")
            .await?;
        // The e-mail's link lasts as long as the file does, not the API's 15 minutes.
        let csv_link = self.exporter.signer().sign(
            &csv.record.file_name,
            scope.now + i64::try_from(FILE_TTL.as_millis()).unwrap_or(i64::MAX),
        );
        let recipients = self.recipients(scope).await?;
        let Some(mailer) = &self.mailer else {
            tracing::info!(location = %scope.location.id, date, "daily export made; no SMTP configured, nobody mailed");
            return Ok(Some(false));
        };
        if recipients.is_empty() {
            tracing::info!(location = %scope.location.id, date, "daily export made; the location has no managers to mail");
            return Ok(Some(false));
        }
        let email = daily_email(&report, &format!("{}{}", self.public_url, csv_link.url));
        let attachment = Attachment {
            filename: format!(
                "inventory-{}-{}.pdf",
                scope.location.id, report.header.local_date
            ),
            content_type: "application/pdf".into(),
            bytes: pdf.bytes,
        };
        mailer
            .send_with_attachments(&recipients, &email, &[attachment])
            .await
            .map_err(|e| ReportError::Mail(e.to_string()))?;
        tracing::info!(location = %scope.location.id, date, recipients = recipients.len(), "daily export mailed");
        Ok(Some(true))
    }

    /// The e-mail addresses of the managers and admins who may see the location.
    async fn recipients(&self, scope: &ReportScope) -> Result<Vec<String>, ReportError> {
        let mut to: Vec<String> = self
            .store
            .users(&scope.account)
            .await?
            .into_iter()
            .filter(|u| matches!(u.role, Role::Manager | Role::Admin))
            .filter(|u| {
                u.allowed_locations
                    .as_ref()
                    .is_none_or(|l| l.contains(&scope.location.id))
            })
            .map(|u| u.email)
            .collect();
        to.sort();
        to.dedup();
        Ok(to)
    }
}

#[async_trait::async_trait]
impl ScheduledJob for DailyExportJob {
    fn name(&self) -> &'static str {
        "daily report export"
    }

    async fn run(&self) {
        match self.run_once().await {
            Ok(r) if r != DailyReport::default() => tracing::debug!(?r, "daily export pass"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "daily export pass failed; the next minute retries");
            }
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The daily e-mail: a short summary, the low kegs, and the CSV link.
pub fn daily_email(report: &InventoryReport, csv_url: &str) -> Email {
    let h = &report.header;
    let subject = format!("Daily inventory — {} — {}", h.location_name, h.local_date);
    let mut text = format!(
        "Inventory of {} on {} ({}): {} taps.\n\n",
        h.location_name,
        h.local_time,
        h.time_zone,
        report.taps.len()
    );
    let mut html = format!(
        "<p>Inventory of <strong>{}</strong> on {} ({}): {} taps.</p>",
        html_escape(&h.location_name),
        html_escape(&h.local_time),
        html_escape(&h.time_zone),
        report.taps.len()
    );
    if report.low_kegs.is_empty() {
        text.push_str("No keg is low.\n");
        html.push_str("<p>No keg is low.</p>");
    } else {
        text.push_str("Low kegs:\n");
        html.push_str("<p>Low kegs:</p><ul>");
        for k in &report.low_kegs {
            let line = format!(
                "{} {} — {} · {:.1} % ({})",
                k.tap_number,
                k.tap_name,
                k.beer.as_deref().unwrap_or("no beer"),
                k.level_pct.unwrap_or(0.0),
                k.low.as_deref().unwrap_or("warning")
            );
            let _ = writeln!(text, "- {line}");
            let _ = write!(html, "<li>{}</li>", html_escape(&line));
        }
        html.push_str("</ul>");
    }
    let _ = write!(
        text,
        "\nThe full report is attached (PDF). CSV, for 24 hours: {csv_url}\n\n— Scale Sense\n"
    );
    let _ = write!(
        html,
        "<p>The full report is attached (PDF). <a href=\"{0}\">Download the CSV</a> (for 24 hours).</p><p>— Scale Sense</p>",
        html_escape(csv_url)
    );
    Email {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn export_time_is_local_on_both_berlin_change_days() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let ten = DEFAULT_EXPORT_TIME;
        // 2026-03-29 (CEST from 03:00): 10:00 local is 08:00 UTC.
        assert_eq!(due_date(ms("2026-03-29T07:59:59Z"), ten, &tz), None);
        assert_eq!(
            due_date(ms("2026-03-29T08:00:00Z"), ten, &tz).map(|d| d.to_string()),
            Some("2026-03-29".into())
        );
        // 2026-10-25 (CET from 03:00): 10:00 local is 09:00 UTC.
        assert_eq!(due_date(ms("2026-10-25T08:59:59Z"), ten, &tz), None);
        assert_eq!(
            due_date(ms("2026-10-25T09:00:00Z"), ten, &tz).map(|d| d.to_string()),
            Some("2026-10-25".into())
        );
        // A time in the spring gap (02:30) runs the gap's length later: 03:30 CEST = 01:30 UTC.
        let gap = parse_hhmm("02:30").unwrap();
        assert_eq!(due_date(ms("2026-03-29T01:29:59Z"), gap, &tz), None);
        assert!(due_date(ms("2026-03-29T01:30:00Z"), gap, &tz).is_some());
        // A repeated time (02:30 on the fall day) runs at its first occurrence, 00:30 UTC.
        assert_eq!(due_date(ms("2026-10-25T00:29:59Z"), gap, &tz), None);
        assert!(due_date(ms("2026-10-25T00:30:00Z"), gap, &tz).is_some());
        // Just after local midnight the new day's export is not due yet.
        assert_eq!(due_date(ms("2026-03-28T23:30:00Z"), ten, &tz), None);
    }

    #[test]
    fn export_time_setting_parses_leniently() {
        assert_eq!(parse_hhmm("07:05"), Time::new(7, 5, 0, 0).ok());
        for bad in ["7:05", "24:00", "12:60", "noon", ""] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
        let mut location = Location {
            id: scalesense_store::LocationId::try_from("loc-001").unwrap(),
            account_id: scalesense_store::AccountId::try_from("acme").unwrap(),
            name: "Bar".into(),
            address: String::new(),
            time_zone: "UTC".into(),
            units: scalesense_store::Units::Metric,
            settings: serde_json::json!({}),
            created_at: 0,
        };
        assert_eq!(
            ExportTime::of(&location),
            ExportTime::At(DEFAULT_EXPORT_TIME)
        );
        location.settings = serde_json::json!({"export_time": "06:30"});
        assert_eq!(
            ExportTime::of(&location),
            ExportTime::At(Time::new(6, 30, 0, 0).unwrap())
        );
        location.settings = serde_json::json!({"export_time": "off"});
        assert_eq!(ExportTime::of(&location), ExportTime::Off);
        location.settings = serde_json::json!({"export_time": 5});
        assert_eq!(
            ExportTime::of(&location),
            ExportTime::At(DEFAULT_EXPORT_TIME)
        );
    }
}
