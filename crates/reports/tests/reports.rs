//! The reports against a real SQLite store: the inventory snapshot's numbers, the CSV parsed
//! back, the PDF read back with poppler (text, page count, first page as PNG), exports with
//! signed links (fresh, expired, tampered), the purge, and the other location reports.
#![allow(
    clippy::unwrap_used,
    clippy::float_cmp,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

mod common;

use std::sync::Arc;

use common::{DAY, HOUR, MIN, bar, now, three_taps};
use scalesense_reports::report::{self, ReportScope};
use scalesense_reports::{ExportFormat, Exporter, LinkSigner, ReportError, csv, pdf};
use scalesense_store::Units;

/// Splits RFC 4180 text into records of fields (quoted fields may hold commas, quotes, CR, LF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "records end with CRLF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(c),
        }
    }
    assert!(field.is_empty() && record.is_empty(), "text ends with CRLF");
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_numbers_and_csv_round_trip() {
    let b = bar(&three_taps(), Units::Metric).await;
    let scope = ReportScope::load(&*b.store, &b.account, &b.location, now())
        .await
        .unwrap();
    let r = report::inventory(&*b.store, &scope).await.unwrap();
    assert_eq!(r.header.local_date, "2026-03-29");
    assert_eq!(
        r.header.local_time, "2026-03-29 12:30",
        "CEST, the day clocks went forward"
    );
    assert_eq!(r.taps.len(), 3);
    let t1 = &r.taps[0];
    assert_eq!(t1.beer.as_deref(), Some("Pils, \"Extra\""));
    assert!((t1.volume_left.unwrap() - 30.0).abs() < 1e-9);
    assert!(
        (t1.hours_remaining.unwrap() - 5.0).abs() < 1e-9,
        "6 L/h over 2 h"
    );
    assert_eq!(t1.low.as_deref(), Some("warning"), "≤ 8 h left");
    assert_eq!(t1.tapped_date.as_deref(), Some("2026-03-20"));
    assert_eq!(r.taps[1].low.as_deref(), Some("critical"), "5 % left");
    assert_eq!(
        r.taps[1].hours_remaining, None,
        "nothing poured: not running out"
    );
    assert_eq!(r.taps[2].beer, None);
    assert_eq!(r.taps[2].level_pct, None);
    let low: Vec<&str> = r.low_kegs.iter().map(|k| k.tap_name.as_str()).collect();
    assert_eq!(low, vec!["Tap 2", "Tap 1"], "critical first");
    // 12 L poured between 10:30 and 12:30 local (08:30–10:30 UTC) on the day of the change.
    let hours: Vec<(u8, f64)> = r
        .pour_by_hour
        .hours
        .iter()
        .filter(|h| h.total > 0.0)
        .map(|h| (h.hour, h.total))
        .collect();
    assert_eq!(
        hours.iter().map(|h| h.0).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert!((hours.iter().map(|h| h.1).sum::<f64>() - 12.0).abs() < 1e-9);

    let text = csv::inventory_csv(&r);
    let rows = parse_csv(&text);
    assert_eq!(
        rows[0],
        [
            "tap_number",
            "tap_name",
            "beer",
            "style",
            "keg_id",
            "keg_type",
            "level_pct",
            "volume_left_l",
            "hours_remaining_h",
            "tapped_date_local",
            "low"
        ]
    );
    assert_eq!(
        rows[1],
        [
            "1",
            "Tap 1",
            "Pils, \"Extra\"",
            "Pilsner",
            "keg-001",
            "half_barrel",
            "49.9",
            "30.00",
            "5.0",
            "2026-03-20",
            "warning"
        ]
    );
    assert_eq!(rows[2][6], "5.0");
    assert_eq!(rows[2][10], "critical");
    assert_eq!(rows[3], ["3", "Tap 3", "", "", "", "", "", "", "", "", ""]);
    assert_eq!(rows.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imperial_csv_names_gallons() {
    let b = bar(&three_taps(), Units::Imperial).await;
    let scope = ReportScope::load(&*b.store, &b.account, &b.location, now())
        .await
        .unwrap();
    let r = report::inventory(&*b.store, &scope).await.unwrap();
    let rows = parse_csv(&csv::inventory_csv(&r));
    assert_eq!(rows[0][7], "volume_left_gal");
    assert_eq!(rows[1][7], "7.93", "30 L in US gallons");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_reads_back_with_names_levels_and_date() {
    if !common::poppler() {
        return;
    }
    let b = bar(&three_taps(), Units::Metric).await;
    let scope = ReportScope::load(&*b.store, &b.account, &b.location, now())
        .await
        .unwrap();
    let r = report::inventory(&*b.store, &scope).await.unwrap();
    let bytes = pdf::inventory_pdf(&r).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.pdf");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(common::pdf_pages(&path), 1);
    let text = common::pdf_text(&path);
    for expected in [
        "Zum Anker",
        "2026-03-29 12:30",
        "Europe/Berlin",
        "Tap 1",
        "Tap 2",
        "Tap 3",
        "Schwarzbier",
        "49.9",
        "30.0",
        "5.0",
        "2026-03-20",
        "Low kegs",
        "(critical)",
        "Pour volume by hour of day",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let png = common::pdf_png(&path, &dir.path().join("page"));
    let png_bytes = std::fs::read(&png).unwrap();
    assert!(png_bytes.starts_with(b"\x89PNG"));
    assert!(
        png_bytes.len() > 10_000,
        "a rendered page, not a blank: {} bytes",
        png_bytes.len()
    );
    if let Ok(out) = std::env::var("SCALESENSE_REPORT_PNG") {
        std::fs::copy(&png, out).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_taps_fit_two_pages() {
    if !common::poppler() {
        return;
    }
    // Every other tap is low (3 L left, nothing pouring), so the low-keg list runs onto page 2.
    let taps: Vec<_> = (1..=24)
        .map(|i| {
            let volume = if i % 2 == 0 { 3.0 } else { 40.0 };
            common::tap(
                &format!("Tap {i}"),
                Some((&format!("Beer number {i} with a rather long name"), "Lager")),
                vec![volume, volume],
            )
        })
        .collect();
    let b = bar(&taps, Units::Metric).await;
    let scope = ReportScope::load(&*b.store, &b.account, &b.location, now())
        .await
        .unwrap();
    let r = report::inventory(&*b.store, &scope).await.unwrap();
    assert_eq!(r.low_kegs.len(), 12);
    let layout = pdf::layout(&r);
    assert_eq!(layout.pages.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.pdf");
    std::fs::write(&path, pdf::render(&layout, "t").unwrap()).unwrap();
    assert_eq!(common::pdf_pages(&path), 2);
    let text = common::pdf_text(&path);
    assert!(text.contains("Tap 24"));
    assert!(text.contains("page 2 of 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_linked_signed_refused_when_stale_and_purged() {
    let b = bar(&three_taps(), Units::Metric).await;
    let dir = tempfile::tempdir().unwrap();
    let signer = LinkSigner::new(b"a test secret of thirty-two bytes".to_vec());
    let exporter = Exporter::new(Arc::clone(&b.store), dir.path().join("exports"), signer);
    let t = now();
    let pdf = exporter
        .export_inventory(
            &b.account,
            &b.location,
            ExportFormat::Pdf,
            "user:u-manager",
            t,
        )
        .await
        .unwrap();
    let csv = exporter
        .export_inventory(
            &b.account,
            &b.location,
            ExportFormat::Csv,
            "user:u-manager",
            t + MIN,
        )
        .await
        .unwrap();
    assert_eq!(pdf.link.expires_at, t + 15 * MIN);
    assert!(
        pdf.record
            .file_name
            .starts_with("inventory-loc-001-2026-03-29-")
    );
    assert!(
        pdf.link
            .url
            .starts_with("/api/v1/downloads/inventory-loc-001-")
    );
    let (file, expires, sig) = split(&csv.link.url);
    let got = exporter
        .download(&file, expires, &sig, t + 10 * MIN)
        .await
        .unwrap();
    assert_eq!(got.format, ExportFormat::Csv);
    assert_eq!(got.bytes, csv.bytes);
    assert!(
        String::from_utf8(got.bytes)
            .unwrap()
            .starts_with("tap_number,")
    );

    assert!(matches!(
        exporter.download(&file, expires, &sig, t + 16 * MIN).await,
        Err(ReportError::LinkExpired)
    ));
    assert!(matches!(
        exporter.download(&file, expires + 3_600_000, &sig, t).await,
        Err(ReportError::LinkInvalid)
    ));
    let (pdf_file, _, _) = split(&pdf.link.url);
    assert!(matches!(
        exporter.download(&pdf_file, expires, &sig, t).await,
        Err(ReportError::LinkInvalid)
    ));
    let forged = exporter.signer().sign("../download-secret", t + MIN);
    let (f, e, s) = split(&forged.url);
    assert!(
        matches!(
            exporter.download(&f, e, &s, t).await,
            Err(ReportError::LinkInvalid)
        ),
        "a signed but unsafe name is still refused"
    );

    // 24 h later the first export goes, the second (a minute younger) stays.
    assert_eq!(exporter.purge(t + DAY + 1).await.unwrap(), 1);
    assert!(
        !dir.path()
            .join("exports")
            .join(&pdf.record.file_name)
            .exists()
    );
    assert!(
        dir.path()
            .join("exports")
            .join(&csv.record.file_name)
            .exists()
    );
    let relinked = exporter
        .signer()
        .sign(&pdf.record.file_name, t + DAY + HOUR);
    let (f, e, s) = split(&relinked.url);
    assert!(matches!(
        exporter.download(&f, e, &s, t + DAY).await,
        Err(ReportError::Gone)
    ));
    assert_eq!(exporter.purge(t + DAY + 2 * MIN).await.unwrap(), 1);
}

fn split(url: &str) -> (String, i64, String) {
    let (path, query) = url.split_once('?').unwrap();
    let file = path.rsplit('/').next().unwrap().to_owned();
    let mut expires = 0;
    let mut sig = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap();
        match k {
            "expires" => expires = v.parse().unwrap(),
            "sig" => v.clone_into(&mut sig),
            _ => {}
        }
    }
    (file, expires, sig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_reports_from_rollups() {
    let b = bar(&three_taps(), Units::Metric).await;
    let a = &b.account;
    // Kick tap 2's keg now: it lived from its tapping (2026-03-20 09:00 UTC) to now.
    let keg2 = scalesense_store::KegId::try_from("keg-002").unwrap();
    b.store.kick_keg(a, &keg2, now()).await.unwrap();
    let scope = ReportScope::load(&*b.store, a, &b.location, now() + MIN)
        .await
        .unwrap();

    let styles = report::styles(&*b.store, &scope).await.unwrap();
    assert_eq!(
        styles.styles.len(),
        1,
        "only the Pilsner poured: {styles:?}"
    );
    assert_eq!(styles.styles[0].style, "Pilsner");
    assert!((styles.styles[0].volume - 12.0).abs() < 1e-9);
    assert!((styles.styles[0].share_pct - 100.0).abs() < 1e-9);

    let life = report::lifespans(&*b.store, &scope).await.unwrap();
    let kicked = life.kegs.iter().find(|k| k.keg_id == "keg-002").unwrap();
    assert!(kicked.kicked);
    let expected_hours = (now() - common::ms("2026-03-20T09:00:00Z")) as f64 / HOUR as f64;
    assert!((kicked.lifespan_hours.unwrap() - expected_hours).abs() < 1e-9);
    assert_eq!(
        kicked.tapped_at.as_deref(),
        Some("2026-03-20 10:00"),
        "CET before the change"
    );
    assert_eq!(life.average_kicked_hours, kicked.lifespan_hours);
    let running = life.kegs.iter().find(|k| k.keg_id == "keg-001").unwrap();
    assert!(!running.kicked);
    assert!((running.poured - 12.0).abs() < 1e-9);

    let weeks = report::kicked(&*b.store, &scope).await.unwrap();
    assert_eq!(weeks.weeks.len(), 12);
    let last = weeks.weeks.last().unwrap();
    assert_eq!(last.week_start, "2026-03-23");
    assert_eq!(last.kicked, 1);
    assert_eq!(weeks.weeks.iter().map(|w| w.kicked).sum::<u32>(), 1);

    let battery = report::battery(&*b.store, &scope).await.unwrap();
    assert_eq!(battery.devices.len(), 2, "taps with readings");
    let d1 = &battery.devices[0];
    assert_eq!(d1.device_id.as_deref(), Some("SCALE-0001"));
    // Readings 08:30–10:30 UTC with battery 90 % falling 1 point per reading.
    let means: Vec<f64> = d1.points.iter().map(|p| p.battery_pct).collect();
    assert_eq!(means, vec![89.0, 84.5, 79.5], "hourly means");
    assert_eq!(d1.latest_pct, Some(79.5));
}
