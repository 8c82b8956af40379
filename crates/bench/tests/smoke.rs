//! A tiny `bench ingest` run: proves the bench's accounting against real runs (every reading
//! found exactly once, the ceilings' consumers saw every reading, latencies joined), not its
//! speed. Mosquitto columns need `SCALESENSE_TEST_MQTT`; the Python baseline needs a prepared
//! venv in `SCALESENSE_BENCH_VENV` (the bench would otherwise install paho-mqtt with pip).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use scalesense_bench::ingest::{Column, IngestConfig, MosquittoSource, run};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_run_accounts_for_every_reading() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let mut columns = vec![Column::Embedded, Column::EmbeddedNoop];
    let mosquitto = if let Ok(url) = std::env::var("SCALESENSE_TEST_MQTT") {
        columns.extend([Column::Mosquitto, Column::MosquittoPlain]);
        url.parse()
            .expect("SCALESENSE_TEST_MQTT is mqtt://host:port")
    } else {
        assert!(!ci(), "CI=true but SCALESENSE_TEST_MQTT is not set");
        println!("skipped the Mosquitto columns: SCALESENSE_TEST_MQTT not set");
        "mqtt://127.0.0.1:1".parse().unwrap()
    };
    let venv = std::env::var("SCALESENSE_BENCH_VENV").ok();
    match &venv {
        Some(_) if columns.contains(&Column::Mosquitto) => {
            columns.extend([Column::PythonPerMessage, Column::PythonBatched]);
        }
        _ => println!("skipped the Python baseline: SCALESENSE_BENCH_VENV (a venv) not set"),
    }
    let work = tempfile::tempdir().unwrap();
    let config = IngestConfig {
        columns: columns.clone(),
        mosquitto: MosquittoSource::Url(mosquitto),
        publishers: 4,
        readings: 60,
        rate: 100.0,
        latency_duration: Duration::from_millis(400),
        window: 20,
        publisher_threads: 1,
        python: "python3".into(),
        venv: venv.unwrap_or_default().into(),
        work_dir: work.path().to_owned(),
        idle_timeout: Duration::from_secs(10),
        without_alerts: false,
    };
    let report = run(&config).await.unwrap();
    println!("{report}");
    assert_eq!(report.columns.len(), columns.len());
    for result in &report.columns {
        let name = result.column.name();
        assert!(
            result.throughput.is_some_and(|t| t > 0.0),
            "{name}: no throughput"
        );
        match result.accounting {
            Some(accounting) => {
                // 60 at saturation + 40 at 100/s for 0.4 s.
                assert_eq!(accounting.published, 100, "{name}: {accounting:?}");
                assert!(accounting.is_exact(), "{name}: {accounting:?}");
                let latency = result.latency.unwrap();
                assert_eq!(
                    latency.samples, 40,
                    "{name}: every paced reading has a latency"
                );
                assert!(latency.p50_ms >= 0.0 && latency.p99_ms >= latency.p50_ms);
            }
            // A shared broker may carry a few readings of other clients as well.
            None => assert!(
                result.consumed >= 60,
                "{name}: the ceiling saw every reading"
            ),
        }
    }
}
