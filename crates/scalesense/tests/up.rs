//! `scalesense up`, the real binary: it stores the simulated scales' readings, stops cleanly on
//! SIGTERM, keeps every PUBACKed reading across a SIGKILL, and follows the port rules.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ScalePublisher, Scalesense, free_addr, http_status, reading, wait_for};
use scalesense_store::{AccountId, KegId, Series};

async fn readings_of(db: &std::path::Path, boots: Option<&[i64]>) -> Vec<(i64, i64)> {
    let store = scalesense_store::connect(&db.to_string_lossy())
        .await
        .unwrap();
    let account = AccountId::try_from("demo").unwrap();
    let mut rows = Vec::new();
    for keg in ["keg-demo-0001", "keg-demo-0002"] {
        let series = Series::Keg(KegId::try_from(keg).unwrap());
        if let Ok(found) = store
            .readings(&account, &series, 0, i64::MAX, 1_000_000)
            .await
        {
            rows.extend(
                found
                    .into_iter()
                    .filter(|r| boots.is_none_or(|b| b.contains(&r.boot)))
                    .map(|r| (r.boot, r.seq)),
            );
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_stores_simulated_readings_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (http, mqtt) = (free_addr(), free_addr());
    let mut up = Scalesense::start(
        &[
            "up",
            "--data-dir",
            "data",
            "--http",
            &http.to_string(),
            "--mqtt",
            &mqtt.to_string(),
            "--scales",
            "2",
            "--speed",
            "60",
        ],
        dir.path(),
    );
    let summary = up.stdout_until("Press Ctrl-C to stop.", Duration::from_mins(1));
    let summary = summary.join("\n");
    assert!(
        summary.contains(&format!("MQTT broker  mqtt://{mqtt}")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("dashboard    http://{http}/")),
        "{summary}"
    );
    assert!(
        summary.contains("admin@demo.local / "),
        "a generated password is shown: {summary}"
    );
    assert_eq!(http_status(http, "/healthz"), Some(200));

    let db = dir.path().join("data/scalesense.db");
    wait_for(
        "simulated readings in the database",
        Duration::from_secs(30),
        || async { !readings_of(&db, None).await.is_empty() },
    )
    .await;
    wait_for("readiness", Duration::from_secs(10), || async {
        http_status(http, "/readyz") == Some(200)
    })
    .await;

    up.signal("TERM");
    assert_eq!(
        up.wait(Duration::from_secs(30)),
        Some(0),
        "clean exit on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_puback_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (http, mqtt) = (free_addr(), free_addr());
    let args = [
        "up",
        "--data-dir",
        "data",
        "--http",
        &http.to_string(),
        "--mqtt",
        &mqtt.to_string(),
        "--scales",
        "1",
    ]
    .map(str::to_owned);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut up = Scalesense::start(&args, dir.path());
    let first = up
        .stdout_until("Press Ctrl-C to stop.", Duration::from_mins(1))
        .join("\n");
    assert!(
        first.contains("(generated; shown only this once)"),
        "{first}"
    );

    let acked: Arc<Mutex<BTreeSet<(i64, i64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishers = spawn_publishers(mqtt, &acked, &stop);
    let acked_at_least = |n: usize| {
        let acked = Arc::clone(&acked);
        move || {
            let acked = Arc::clone(&acked);
            async move { acked.lock().unwrap().len() >= n }
        }
    };
    wait_for(
        "200 acknowledged readings",
        Duration::from_mins(1),
        acked_at_least(200),
    )
    .await;
    up.signal("KILL");
    up.wait(Duration::from_secs(10));
    let before_restart = acked.lock().unwrap().len();

    let mut up = Scalesense::start(&args, dir.path());
    let second = up
        .stdout_until("Press Ctrl-C to stop.", Duration::from_mins(1))
        .join("\n");
    assert!(
        !second.contains("generated"),
        "the demo data exists: {second}"
    );
    wait_for(
        "readings acknowledged after the restart",
        Duration::from_mins(1),
        acked_at_least(before_restart + 200),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for publisher in publishers {
        publisher.await.unwrap();
    }
    up.signal("TERM");
    assert_eq!(up.wait(Duration::from_secs(30)), Some(0));

    let acked = acked.lock().unwrap().clone();
    let stored: BTreeSet<(i64, i64)> = readings_of(
        &dir.path().join("data/scalesense.db"),
        Some(&[900_000, 900_001, 900_002, 900_003]),
    )
    .await
    .into_iter()
    .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(acked.len() >= 400);
}

/// Four publishers on SCALE-0001 with boots of their own, each resending what was not
/// acknowledged and recording what was, until `stop`.
fn spawn_publishers(
    mqtt: std::net::SocketAddr,
    acked: &Arc<Mutex<BTreeSet<(i64, i64)>>>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut publishers = Vec::new();
    for p in 0..4u32 {
        let acked = Arc::clone(acked);
        let stop = Arc::clone(stop);
        publishers.push(tokio::spawn(async move {
            let boot = 900_000 + p;
            let mut scale = ScalePublisher::new(mqtt, &format!("kill-test-{p}"));
            let mut seq = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let payload = reading(boot, seq);
                if scale
                    .try_publish(
                        "keg/readings/SCALE-0001",
                        payload.as_bytes(),
                        Duration::from_secs(2),
                    )
                    .await
                {
                    acked
                        .lock()
                        .unwrap()
                        .insert((i64::from(boot), i64::from(seq)));
                    seq += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    publishers
}

#[test]
fn an_explicit_port_that_is_taken_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    for (flag, other) in [("--mqtt", "--http"), ("--http", "--mqtt")] {
        let mut up = Scalesense::start(
            &[
                "up",
                "--data-dir",
                "data",
                flag,
                &port.to_string(),
                other,
                &free_addr().to_string(),
            ],
            dir.path(),
        );
        let code = up.wait(Duration::from_mins(1));
        assert_ne!(code, Some(0));
        let stderr: Vec<String> = up.stderr.try_iter().collect();
        // Everything on stderr that is not a log line (timestamped) is the error.
        let errors: Vec<&String> = stderr
            .iter()
            .filter(|l| !l.starts_with("20") && !l.trim().is_empty())
            .collect();
        assert_eq!(
            errors,
            vec![&format!(
                "Error: {port} is already in use; choose another address with {flag}"
            )],
            "{stderr:#?}"
        );
    }
}

#[test]
fn a_taken_default_port_is_replaced_and_reported() {
    // Make sure the defaults are taken: by whatever runs there (Mosquitto on 1883), or by us.
    let _mqtt = TcpListener::bind("127.0.0.1:1883").ok();
    let _http = TcpListener::bind("127.0.0.1:8080").ok();
    let dir = tempfile::tempdir().unwrap();
    let mut up = Scalesense::start(&["up", "--data-dir", "data", "--scales", "1"], dir.path());
    let summary = up
        .stdout_until("Press Ctrl-C to stop.", Duration::from_mins(1))
        .join("\n");
    assert!(
        summary.contains("note: port 1883 is taken; the MQTT broker listens on 127.0.0.1:"),
        "{summary}"
    );
    assert!(
        summary.contains("note: port 8080 is taken; HTTP listens on 127.0.0.1:"),
        "{summary}"
    );
    assert!(!summary.contains("mqtt://127.0.0.1:1883\n"), "{summary}");
    up.signal("TERM");
    assert_eq!(up.wait(Duration::from_secs(30)), Some(0));
}
