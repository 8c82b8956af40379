//! Reports benchmark (issue 9 targets), printed as a table: the inventory PDF of a 24-tap
//! location (< 200 ms), and the 30-day pour-by-hour report over a year of hourly data from the
//! rollups (< 50 ms). Not a test: run it in release with `cargo bench -p scalesense-reports`.
//!
//! Data: one SQLite location (Europe/Berlin) with 24 taps, each with a scale, a beer and a
//! keg, and a year of readings, one an hour per tap (≈ 210 k readings), sent through
//! `Store::ingest_batch` so the rollups are built the real way. The PDF is also written to
//! `$CARGO_TARGET_DIR/inventory-bench.pdf` for a look (or `SCALESENSE_BENCH_PDF`).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{DAY, EMPTY_KG, FULL_KG, HOUR, bar, now, tap};
use scalesense_reports::report::{self, ReportScope};
use scalesense_reports::{csv, pdf};
use scalesense_store::{DeviceId, IngestReading, Units};

const TAPS: u16 = 24;
const RUNS: usize = 20;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let specs: Vec<_> = (1..=TAPS)
        .map(|i| {
            tap(
                &format!("Tap {i}"),
                Some((
                    &format!("House beer no. {i}"),
                    ["Lager", "IPA", "Stout", "Pilsner"][usize::from(i % 4)],
                )),
                Vec::new(),
            )
        })
        .collect();
    let b = bar(&specs, Units::Metric).await;
    // A year of hourly readings per tap: 0.2–0.45 L an hour poured, a fresh keg every 5 days.
    let start = now() - 365 * DAY;
    let hours = (now() - start) / HOUR;
    let setup = Instant::now();
    let mut batch = Vec::with_capacity(5_000);
    let mut total = 0usize;
    for h in 0..=hours {
        for t in 1..=TAPS {
            let rate = 0.2 + 0.05 * f64::from(t % 6);
            let volume = 58.0 - rate * ((h + 13 * i64::from(t)) % 120) as f64;
            batch.push(IngestReading {
                device_id: DeviceId::try_from(format!("SCALE-{t:04}").as_str()).unwrap(),
                boot: 1,
                seq: h + 1,
                ts: start + h * HOUR,
                weight_kg: EMPTY_KG + volume,
                level_pct: volume / (FULL_KG - EMPTY_KG) * 100.0,
                battery_v: Some(3.9),
                battery_pct: Some(95.0 - (h % 500) as f64 / 10.0),
                rssi: Some(-60),
                stable: true,
                tare_status: Some("ok".into()),
            });
        }
        if batch.len() >= 4_800 {
            total += batch.len();
            b.store.ingest_batch(&batch).await.unwrap();
            batch.clear();
        }
    }
    total += batch.len();
    b.store.ingest_batch(&batch).await.unwrap();
    println!(
        "setup: {total} readings (24 taps × 1 year hourly) ingested in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let scope = ReportScope::load(&*b.store, &b.account, &b.location, now())
        .await
        .unwrap();
    let inventory = report::inventory(&*b.store, &scope).await.unwrap();
    assert_eq!(inventory.taps.len(), usize::from(TAPS));

    let mut pdf_times = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        bytes = pdf::inventory_pdf(&inventory).unwrap();
        pdf_times.push(t.elapsed());
    }
    let mut csv_times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        std::hint::black_box(csv::inventory_csv(&inventory));
        csv_times.push(t.elapsed());
    }
    let mut inventory_times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = report::inventory(&*b.store, &scope).await.unwrap();
        std::hint::black_box(pdf::inventory_pdf(&r).unwrap());
        inventory_times.push(t.elapsed());
    }
    let mut pbh_times = Vec::new();
    let mut poured = 0.0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = report::pour_by_hour(&*b.store, &scope).await.unwrap();
        pbh_times.push(t.elapsed());
        poured = r.hours.iter().map(|h| h.total).sum::<f64>();
    }
    assert!(poured > 0.0, "the rollups hold a year of pours");

    let out = std::env::var("SCALESENSE_BENCH_PDF").unwrap_or_else(|_| {
        let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{dir}/inventory-bench.pdf")
    });
    std::fs::write(&out, &bytes).unwrap();

    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "measure (runs: 20)", "median", "max", "target"
    );
    for (name, samples, target) in [
        (
            "inventory PDF, 24 taps (render only)",
            pdf_times,
            "< 200 ms",
        ),
        (
            "inventory report from the store + PDF, 24 taps",
            inventory_times,
            "—",
        ),
        ("inventory CSV, 24 taps (render only)", csv_times, "—"),
        (
            "pour-by-hour, 30 days over 1 year of rollups",
            pbh_times,
            "< 50 ms",
        ),
    ] {
        let (median, max) = stats(samples);
        println!(
            "{name:<52} {:>7.2} ms {:>7.2} ms {target:>10}",
            ms(median),
            ms(max)
        );
    }
    println!(
        "PDF: {} bytes, {} page(s), written to {out}",
        bytes.len(),
        pdf::layout(&inventory).pages.len()
    );
}
