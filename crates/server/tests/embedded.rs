//! Ingest through the embedded broker: a PUBACK means committed, bad input is dead-lettered and
//! acknowledged, a locked database loses nothing, gateways get `gw/ack`, last wills and
//! retained messages work. Each test runs its own broker on a free port.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{ScalePublisher, Server, TestStore, account, reading, unique, wait_for};
use http_body_util::BodyExt;
use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, QoS};
use scalesense_proto::{DeviceId, LocationId};
use scalesense_server::events::Event as BusEvent;
use scalesense_server::http::{AppState, router};
use scalesense_store::DeviceStatus;
use sqlx::Connection;
use tower::ServiceExt;

const PUBACK: Duration = Duration::from_secs(30);

async fn exactly_once(store: &TestStore) {
    let server = Server::embedded(Arc::clone(&store.store)).await;
    let mut events = server
        .events
        .subscribe(&LocationId::try_from("loc-001").unwrap());
    let mut scales = Vec::new();
    for n in 1..=3u16 {
        let addr = server.mqtt_addr;
        scales.push(tokio::spawn(async move {
            let mut scale = ScalePublisher::new(addr, &format!("SCALE-{n:04}"));
            let topic = format!("keg/readings/SCALE-{n:04}");
            for seq in 0..20u32 {
                scale
                    .publish(
                        &topic,
                        reading(1, seq, 90.0 - f64::from(seq)).as_bytes(),
                        PUBACK,
                    )
                    .await;
            }
            // QoS-1 redeliveries and replays of the first five.
            for seq in 0..5u32 {
                scale
                    .publish(
                        &topic,
                        reading(1, seq, 90.0 - f64::from(seq)).as_bytes(),
                        PUBACK,
                    )
                    .await;
            }
            scale.disconnect().await;
        }));
    }
    for scale in scales {
        scale.await.unwrap();
    }
    // Every PUBACK has arrived: every reading must already be in the database, no waiting.
    for n in 1..=3u16 {
        let rows = store.readings(n).await;
        let seqs: BTreeSet<i64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(rows.len(), 20, "tap {n}: stored once each");
        assert_eq!(seqs, (0..20).collect::<BTreeSet<i64>>(), "tap {n}");
        assert!(
            rows.iter()
                .all(|r| r.boot == 1 && (r.weight_kg - 36.514_186).abs() < 1e-6)
        );
    }
    // One live event per new reading, none for the duplicates.
    let mut readings = 0;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
        if matches!(*event, BusEvent::Reading { .. }) {
            readings += 1;
        }
    }
    assert_eq!(readings, 60);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_readings_land_exactly_once_and_puback_means_committed() {
    let store = TestStore::sqlite(3, Duration::from_secs(5)).await;
    exactly_once(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_readings_land_exactly_once_and_puback_means_committed() {
    let Some(store) = TestStore::postgres(3).await else {
        return;
    };
    exactly_once(&store).await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_dead_lettered_with_its_reason_and_ingest_goes_on() {
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let server = Server::embedded(Arc::clone(&store.store)).await;
    let mut scale = ScalePublisher::new(server.mqtt_addr, "SCALE-0001");
    let good = reading(2, 7, 50.0);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "keg/readings/SCALE-0001",
            "{\"v\":1,\"seq\":".to_owned(),
            "malformed payload: not a single JSON object",
        ),
        (
            "keg/readings/SCALE-0999",
            good.clone(),
            "device SCALE-0999 is not registered",
        ),
        (
            "keg/readings/SCALE-0001",
            good.replace("\"v\":1", "\"v\":2"),
            "v: contract version 2 is newer than the supported version 1",
        ),
        (
            "keg/readings/SCALE-0001",
            good.replace("\"level_pct\":50", "\"level_pct\":130"),
            "level_pct: 130 is out of range",
        ),
        (
            "keg/readings/SCALE-0001",
            good.replace("\"seq\":7,", ""),
            "seq: required field is missing",
        ),
        (
            "keg/levels/SCALE-0001",
            good.clone(),
            "unknown topic prefix",
        ),
    ];
    for (topic, payload, _) in &cases {
        // Dead-lettered messages are acknowledged, so a broken scale does not resend forever.
        assert!(
            scale.try_publish(topic, payload.as_bytes(), PUBACK).await,
            "no PUBACK for a dead-lettered message on {topic}"
        );
    }
    scale
        .publish("keg/readings/SCALE-0001", good.as_bytes(), PUBACK)
        .await;
    let rows = store.readings(1).await;
    assert_eq!(
        rows.len(),
        1,
        "the valid reading after the bad ones is stored"
    );
    assert_eq!((rows[0].boot, rows[0].seq), (2, 7));

    let letters = store.dead_letters().await;
    assert_eq!(letters.len(), cases.len());
    for (topic, payload, reason) in &cases {
        assert!(
            letters.iter().any(|l| l.topic == *topic
                && l.payload == payload.as_bytes()
                && l.reason.contains(reason)),
            "no dead letter on {topic} with reason {reason:?}: {letters:#?}"
        );
    }
    let metrics = scalesense_server::telemetry::render();
    for kind in [
        "malformed",
        "unknown_device",
        "unsupported_version",
        "out_of_range",
        "missing",
        "unknown_topic",
    ] {
        assert!(
            metrics.contains(&format!(
                "scalesense_dead_letters_total{{reason=\"{kind}\"}}"
            )),
            "{kind} not counted"
        );
    }
    scale.disconnect().await;
    server.stop().await;
}

async fn readyz(state: AppState) -> (StatusCode, serde_json::Value) {
    let response = router(state)
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_withholds_pubacks_and_loses_nothing() {
    let store = TestStore::sqlite(1, Duration::from_millis(200)).await;
    let server = Server::embedded(Arc::clone(&store.store)).await;
    server.connected().await;
    let state = AppState {
        store: Arc::clone(&store.store),
        health: server.health.clone(),
        events: server.events.clone(),
    };
    assert_eq!(readyz(state.clone()).await.0, StatusCode::OK);
    let mut scale = ScalePublisher::new(server.mqtt_addr, "SCALE-0001");
    scale
        .publish(
            "keg/readings/SCALE-0001",
            reading(1, 0, 80.0).as_bytes(),
            PUBACK,
        )
        .await;

    // Another writer holds the database.
    let mut locker = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        store.path.as_ref().unwrap().display()
    ))
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();

    let publisher = tokio::spawn(async move {
        for seq in 1..=10u32 {
            scale
                .publish(
                    "keg/readings/SCALE-0001",
                    reading(1, seq, 80.0).as_bytes(),
                    Duration::from_mins(2),
                )
                .await;
        }
        scale.disconnect().await;
    });
    wait_for(
        "the pipeline to report the database unavailable",
        Duration::from_secs(20),
        || async { server.health.db_failure().is_some() },
    )
    .await;
    let (code, body) = readyz(state.clone()).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["reasons"][0].as_str().unwrap().contains("database"),
        "{body}"
    );
    assert!(
        !publisher.is_finished(),
        "a reading was acknowledged while the database was locked"
    );

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    locker.close().await.unwrap();
    tokio::time::timeout(Duration::from_mins(2), publisher)
        .await
        .unwrap()
        .unwrap();
    let seqs: BTreeSet<i64> = store.readings(1).await.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..=10).collect::<BTreeSet<i64>>());
    assert_eq!(server.health.db_failure(), None);
    assert_eq!(readyz(state).await.0, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_forwarded_messages_are_confirmed_on_gw_ack() {
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let server = Server::embedded(Arc::clone(&store.store)).await;
    server.connected().await;
    let mut options = MqttOptions::new("gw-test", "127.0.0.1", server.mqtt_addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (gateway, mut eventloop) = AsyncClient::new(options, 64);
    gateway
        .subscribe("gw/ack/gw-test", QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Incoming::SubAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    let forwarded = |payload: &str, gseq: u64| {
        let body = payload.trim_end_matches('}');
        format!("{body},\"gw\":\"gw-test\",\"gseq\":{gseq}}}")
    };
    for gseq in 1..=5u64 {
        let payload = forwarded(&reading(1, u32::try_from(gseq).unwrap(), 70.0), gseq);
        gateway
            .publish("keg/readings/SCALE-0001", QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    // A resend of 3, and an invalid message (no seq) that is final once dead-lettered.
    gateway
        .publish(
            "keg/readings/SCALE-0001",
            QoS::AtLeastOnce,
            false,
            forwarded(&reading(1, 3, 70.0), 3),
        )
        .await
        .unwrap();
    gateway
        .publish(
            "keg/readings/SCALE-0001",
            QoS::AtLeastOnce,
            false,
            forwarded(&reading(1, 9, 70.0).replace("\"seq\":9,", ""), 6),
        )
        .await
        .unwrap();
    let mut confirmed = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while confirmed.len() < 6 {
            if let Event::Incoming(Incoming::Publish(p)) = eventloop.poll().await.unwrap() {
                let ack = scalesense_proto::decode_gateway_ack(&p.payload).unwrap();
                confirmed.extend(ack.gseqs());
            }
        }
    })
    .await
    .expect("gw/ack for every forwarded message");
    assert_eq!(confirmed, (1..=6).collect::<BTreeSet<u64>>());
    // Everything confirmed is committed.
    assert_eq!(store.readings(1).await.len(), 5);
    assert_eq!(store.dead_letters().await.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_wills_and_statuses_reach_the_device_record() {
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let server = Server::embedded(Arc::clone(&store.store)).await;
    let device = DeviceId::try_from("SCALE-0001").unwrap();
    let mut options = MqttOptions::new("SCALE-0001", "127.0.0.1", server.mqtt_addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_last_will(LastWill::new(
        "keg/status/SCALE-0001",
        r#"{"v":1,"state":"offline"}"#,
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .publish(
            "keg/status/SCALE-0001",
            QoS::AtLeastOnce,
            true,
            r#"{"v":1,"state":"online","fw":"1.4.2","battery_pct":81}"#,
        )
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    let row = store.store.device(&account(), &device).await.unwrap();
    assert_eq!(row.status, DeviceStatus::Online);
    assert_eq!(row.fw_version.as_deref(), Some("1.4.2"));

    // A late subscriber sees the retained status.
    let mut options = MqttOptions::new("late", "127.0.0.1", server.mqtt_addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (late, mut late_loop) = AsyncClient::new(options, 16);
    late.subscribe("keg/status/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    let retained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Incoming::Publish(p)) = late_loop.poll().await.unwrap() {
                return p;
            }
        }
    })
    .await
    .unwrap();
    assert!(retained.retain);
    assert_eq!(retained.topic, "keg/status/SCALE-0001");

    // The scale vanishes without DISCONNECT: the broker publishes its last will.
    drop(client);
    drop(eventloop);
    wait_for(
        "the last will to mark the scale offline",
        Duration::from_secs(20),
        || async {
            store
                .store
                .device(&account(), &device)
                .await
                .unwrap()
                .status
                == DeviceStatus::Offline
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscriptions_split_messages_between_members() {
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let server = Server::embedded(Arc::clone(&store.store)).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut members = Vec::new();
    for name in ["member-a", "member-b"] {
        let mut options = MqttOptions::new(name, "127.0.0.1", server.mqtt_addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client
            .subscribe("$share/g/keg/readings/+", QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let Event::Incoming(Incoming::SubAck(_)) = eventloop.poll().await.unwrap() {
                break;
            }
        }
        let tx = tx.clone();
        members.push((
            client,
            tokio::spawn(async move {
                while let Ok(event) = eventloop.poll().await {
                    if let Event::Incoming(Incoming::Publish(_)) = event {
                        let _ = tx.send(name);
                    }
                }
            }),
        ));
    }
    let mut scale = ScalePublisher::new(server.mqtt_addr, "SCALE-0001");
    for seq in 0..10u32 {
        scale
            .publish(
                "keg/readings/SCALE-0001",
                reading(1, seq, 60.0).as_bytes(),
                PUBACK,
            )
            .await;
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        let name = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        got.push(name);
    }
    // Each message went to exactly one member, and both members got some.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err()
    );
    assert!(
        got.contains(&"member-a") && got.contains(&"member-b"),
        "{got:?}"
    );
    for (client, task) in members {
        drop(client);
        task.abort();
    }
    scale.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints_answer() {
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let server = Server::embedded(Arc::clone(&store.store)).await;
    let mut scale = ScalePublisher::new(server.mqtt_addr, "SCALE-0001");
    scale
        .publish(
            "keg/readings/SCALE-0001",
            reading(1, 0, 60.0).as_bytes(),
            PUBACK,
        )
        .await;
    let app = router(AppState {
        store: Arc::clone(&store.store),
        health: server.health.clone(),
        events: server.events.clone(),
    });
    let response = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for name in [
        "scalesense_readings_ingested_total",
        "scalesense_ingest_batches_total",
        "scalesense_ingest_batch_size_bucket",
        "scalesense_ingest_lag_milliseconds_bucket",
        "scalesense_broker_connections",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    scale.disconnect().await;
    server.stop().await;
}

/// Once a scale's answer is committed the server clears the retained command, so a scale that
/// reconnects later is not handed a command it has already run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_command_is_no_longer_retained() {
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let server = Server::embedded(Arc::clone(&store.store)).await;
    server.connected().await;
    let now = 1_800_000_000_000;
    let id = scalesense_proto::CommandId::try_from("cmd-retained-1").unwrap();
    let device = DeviceId::try_from("SCALE-0001").unwrap();
    store
        .store
        .create_command(
            &account(),
            &scalesense_store::NewCommand {
                id: id.clone(),
                device_id: device,
                name: "identify".into(),
                params: serde_json::json!({"duration_s": 5}),
                issued_by: "test".into(),
                issued_at: now,
                expires_at: now + 600_000,
            },
        )
        .await
        .unwrap();
    let topic = "keg/command/SCALE-0001/identify";
    let command = format!(
        r#"{{"v":1,"id":"{id}","params":{{"duration_s":5}},"issued_at":{now},"expires_at":{}}}"#,
        now + 600_000
    );

    // The server's side: the command is retained on the broker (as the API publishes it).
    let mut options = MqttOptions::new("retained-test", "127.0.0.1", server.mqtt_addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .publish(topic, QoS::AtLeastOnce, true, command.into_bytes())
        .await
        .unwrap();
    client
        .publish(
            "keg/response/SCALE-0001",
            QoS::AtLeastOnce,
            false,
            format!(r#"{{"v":1,"id":"{id}","ok":true}}"#).into_bytes(),
        )
        .await
        .unwrap();
    let mut pubacks = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while pubacks < 2 {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                pubacks += 1;
            }
        }
    })
    .await
    .expect("both publishes acknowledged");
    let answered = store.store.command(&account(), &id).await.unwrap();
    assert_eq!(answered.state, scalesense_store::CommandState::Succeeded);

    // A scale (re)subscribing now must not be handed the command again.
    wait_for(
        "the retained command to be cleared",
        Duration::from_secs(20),
        || async { !retained_on(server.mqtt_addr, "keg/command/SCALE-0001/+").await },
    )
    .await;
    server.stop().await;
}

/// Whether a fresh subscriber to `filter` receives a non-empty retained message within a second.
async fn retained_on(addr: std::net::SocketAddr, filter: &str) -> bool {
    let mut options = MqttOptions::new(unique("probe-"), addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (probe, mut eventloop) = AsyncClient::new(options, 16);
    probe.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let found = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) if p.retain && !p.payload.is_empty() => {
                    return true;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = probe.try_disconnect();
    found
}
