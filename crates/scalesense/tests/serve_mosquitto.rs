//! `scalesense serve`, the real binary, on the local Mosquitto (`SCALESENSE_TEST_MQTT`) with its
//! persistent session: killed with SIGKILL mid-stream and restarted, it loses nothing and
//! doubles nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Scalesense, ci, free_addr, http_status, reading, unique, wait_for};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use scalesense_proto::{DeviceId, LocationId, TapId};
use scalesense_store::{AccountId, NewDevice, Series};

const READINGS: u32 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_stream_loses_nothing_and_doubles_nothing() {
    let Ok(broker) = std::env::var("SCALESENSE_TEST_MQTT") else {
        assert!(
            !ci(),
            "CI=true but SCALESENSE_TEST_MQTT is not set (export SCALESENSE_TEST_MQTT=mqtt://127.0.0.1:1883)"
        );
        println!("skipped: SCALESENSE_TEST_MQTT not set");
        return;
    };
    let (host, port) = broker
        .trim_start_matches("mqtt://")
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.parse::<u16>().unwrap()))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db");
    let (store, account, tap, device) = database_with_one_scale(&db).await;
    let name = unique("kill-");
    let http = free_addr();
    let args = [
        "serve",
        "--database",
        &db.to_string_lossy(),
        "--broker",
        &broker,
        "--http",
        &http.to_string(),
        "--name",
        &name,
    ]
    .map(ToOwned::to_owned);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut serve = Scalesense::start(&args, dir.path());
    wait_for("serve to be ready", Duration::from_mins(1), || async {
        http_status(http, "/readyz") == Some(200)
    })
    .await;

    // A publisher streams readings through Mosquitto; the server is killed half-way.
    let mut options = MqttOptions::new(unique("kill-pub-"), host.clone(), port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let driver = tokio::spawn(async move {
        let mut acked = 0;
        while acked < READINGS {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                acked += 1;
            }
        }
    });
    let topic = format!("keg/readings/{device}");
    let count = || async {
        store
            .readings(&account, &Series::Tap(tap.clone()), 0, i64::MAX, 100_000)
            .await
            .unwrap()
            .len()
    };
    for seq in 0..READINGS {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, reading(1, seq))
            .await
            .unwrap();
        if seq == READINGS / 3 {
            wait_for(
                "some readings stored before the kill",
                Duration::from_secs(30),
                || async { count().await > 0 },
            )
            .await;
            serve.signal("KILL");
            serve.wait(Duration::from_secs(10));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .unwrap()
        .unwrap();

    let mut serve = Scalesense::start(&args, dir.path());
    wait_for(
        "every reading after the restart",
        Duration::from_mins(1),
        || async { count().await >= READINGS as usize },
    )
    .await;
    let rows = store
        .readings(&account, &Series::Tap(tap.clone()), 0, i64::MAX, 100_000)
        .await
        .unwrap();
    assert_eq!(rows.len(), READINGS as usize, "nothing doubled");
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<BTreeSet<_>>(),
        (0..i64::from(READINGS)).collect::<BTreeSet<_>>(),
        "nothing lost"
    );
    serve.signal("TERM");
    assert_eq!(serve.wait(Duration::from_secs(30)), Some(0));
    clear_session(&host, port, &format!("scalesense-server-{name}")).await;
}

/// A database with one account, location, tap and a scale of this test's own.
async fn database_with_one_scale(
    db: &std::path::Path,
) -> (
    std::sync::Arc<dyn scalesense_store::Store>,
    AccountId,
    TapId,
    DeviceId,
) {
    let store = scalesense_store::connect(&db.to_string_lossy())
        .await
        .unwrap();
    let account = AccountId::try_from("acme").unwrap();
    let location = LocationId::try_from("loc-kill").unwrap();
    let device = DeviceId::try_from(unique("K").as_str()).unwrap();
    store.create_account(&account, "Acme", 0).await.unwrap();
    store
        .create_location(
            &account,
            &location,
            &scalesense_store::LocationFields {
                name: "Kill test".into(),
                address: String::new(),
                time_zone: "UTC".into(),
                units: scalesense_store::Units::Metric,
                settings: serde_json_empty(),
            },
            0,
        )
        .await
        .unwrap();
    store
        .create_tap(&account, &location, 1, "tap")
        .await
        .unwrap();
    store
        .register_device(
            &account,
            &NewDevice {
                id: device.clone(),
                location_id: Some(location.clone()),
                fw_version: None,
                created_at: 0,
            },
        )
        .await
        .unwrap();
    let tap = TapId::new(&location, 1).unwrap();
    store
        .assign_device(&account, &device, Some(&tap))
        .await
        .unwrap();

    (store, account, tap, device)
}

fn serde_json_empty() -> serde_json::Value {
    serde_json::json!({})
}

/// Removes the server's persistent session from the broker.
async fn clear_session(host: &str, port: u16, client_id: &str) {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    let _ = client.try_disconnect();
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
