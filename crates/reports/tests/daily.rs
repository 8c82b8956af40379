//! The daily export on a fake clock: it fires at 10:00 local on the DST change days, once per
//! location per day (also after a restart), never for a location that turned it off, and the
//! e-mail reaches a real SMTP server (the alerts crate's test sink) with the PDF attached and
//! the CSV link in the text.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{bar, ms, three_taps};
use scalesense_alerts::test_support::{next_mail, smtp_sink};
use scalesense_alerts::{Mailer, ManualClock, SmtpConfig, SmtpSecurity};
use scalesense_reports::{DailyExportJob, Exporter, LinkSigner};
use scalesense_store::Units;

fn mailer(port: u16) -> Mailer {
    Mailer::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        security: SmtpSecurity::Plain,
        username: None,
        password: None,
        from: "Scale Sense <reports@scalesense.test>".into(),
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

/// The decoded plain-text body of a message whose text and HTML sit in a nested
/// `multipart/alternative` (the sink's `Mail::part` cuts parts at the outer boundary only).
fn text_part(data: &str) -> String {
    let start = data.find("Content-Type: text/plain").unwrap();
    let rest = &data[start..];
    let body = &rest[rest.find("\n\n").unwrap() + 2..];
    let body = &body[..body.find("\n--").unwrap()];
    let joined = body.replace("=\n", "");
    let mut bytes = Vec::new();
    let raw = joined.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'=' && i + 2 < raw.len() {
            bytes.push(
                u8::from_str_radix(std::str::from_utf8(&raw[i + 1..i + 3]).unwrap(), 16).unwrap(),
            );
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_once_per_local_day_and_mails_the_pdf() {
    let b = bar(&three_taps(), Units::Metric).await;
    let (port, mut inbox) = smtp_sink().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = LinkSigner::load_or_create(dir.path()).unwrap();
    let exporter = Exporter::new(Arc::clone(&b.store), dir.path().join("exports"), signer);
    // 2026-03-29, the day Berlin moves to CEST: 10:00 local is 08:00 UTC.
    let clock = ManualClock::new(ms("2026-03-29T07:59:00Z"));
    let job = DailyExportJob::new(
        Arc::clone(&b.store),
        exporter.clone(),
        Some(mailer(port)),
        Arc::new(clock.clone()),
        "https://bar.example/",
    );
    let r = job.run_once().await.unwrap();
    assert!(r.exported.is_empty(), "09:59 local: not yet ({r:?})");

    clock.set(ms("2026-03-29T08:00:00Z"));
    let r = job.run_once().await.unwrap();
    assert_eq!(
        r.exported,
        vec!["loc-001".to_owned()],
        "loc-002 has export_time off"
    );
    assert_eq!(r.mailed, 1);
    let mail = next_mail(&mut inbox, 10).await;
    assert_eq!(
        mail.rcpt,
        vec!["manager@anker.test".to_owned()],
        "managers of the location only"
    );
    let subject = mail.header("Subject").unwrap();
    assert!(subject.contains("2026-03-29"), "{subject}");
    let pdf_b64 = mail.part("application/pdf").expect("a PDF attachment");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(pdf_b64.split_whitespace().collect::<String>())
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "the attachment is the PDF");
    assert!(mail.data.contains("attachment"), "sent as an attachment");
    let text = text_part(&mail.data);
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("https://bar.example/api/v1/downloads/"))
        .expect("the CSV link");
    assert!(link.contains(".csv?expires="), "{link}");
    assert!(text.contains("Tap 2"), "low kegs are listed: {text}");

    // Later the same day, and after a restart (a new job on the same store): nothing.
    clock.set(ms("2026-03-29T08:01:00Z"));
    assert!(job.run_once().await.unwrap().exported.is_empty());
    let restarted = DailyExportJob::new(
        Arc::clone(&b.store),
        exporter.clone(),
        Some(mailer(port)),
        Arc::new(clock.clone()),
        "https://bar.example",
    );
    clock.set(ms("2026-03-29T21:59:00Z"));
    assert!(restarted.run_once().await.unwrap().exported.is_empty());
    // 2026-03-30 00:30 local is a new day, but before its export time.
    clock.set(ms("2026-03-29T22:30:00Z"));
    assert!(restarted.run_once().await.unwrap().exported.is_empty());
    clock.set(ms("2026-03-30T08:00:00Z"));
    assert_eq!(restarted.run_once().await.unwrap().exported.len(), 1);
    next_mail(&mut inbox, 10).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), inbox.recv())
            .await
            .is_err(),
        "exactly one e-mail per day"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fall_back_day_fires_at_ten_cet_and_purges_old_files() {
    let b = bar(&three_taps(), Units::Metric).await;
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::new(
        Arc::clone(&b.store),
        dir.path().join("exports"),
        LinkSigner::new(b"0123456789abcdef0123456789abcdef".to_vec()),
    );
    // 2026-10-25, back to CET: 10:00 local is 09:00 UTC. No SMTP: files only.
    let clock = ManualClock::new(ms("2026-10-25T08:59:59Z"));
    let job = DailyExportJob::new(
        Arc::clone(&b.store),
        exporter,
        None,
        Arc::new(clock.clone()),
        "",
    );
    assert!(job.run_once().await.unwrap().exported.is_empty());
    clock.set(ms("2026-10-25T09:00:00Z"));
    let r = job.run_once().await.unwrap();
    assert_eq!(r.exported.len(), 1);
    assert_eq!(r.mailed, 0);
    let files = || {
        std::fs::read_dir(dir.path().join("exports"))
            .unwrap()
            .count()
    };
    assert_eq!(files(), 2, "PDF and CSV");
    clock.set(ms("2026-10-26T09:00:01Z"));
    let r = job.run_once().await.unwrap();
    assert_eq!(r.purged, 2, "yesterday's files are more than 24 h old");
    assert_eq!(r.exported.len(), 1);
    assert_eq!(files(), 2, "today's pair");
}
