//! Ingest from an external broker (the local Mosquitto from `SCALESENSE_TEST_MQTT`) through the
//! server's persistent session with manual acks. Topics are shared with anything else using
//! that broker, so every test uses its own device ids and client ids and filters on them, and
//! removes its session at the end.
//!
//! The ack ordering rule itself is unit-tested in `subscriber.rs`; these tests check what reaches
//! the database. (A broker with its default queue limits drops messages for a subscriber that
//! falls behind, e.g. while other tests flood it: Mosquitto logs "Outgoing messages are being
//! dropped". Production brokers need `max_queued_messages 0` and persistence.)
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Server, TestStore, clear_session, reading, test_mqtt, unique, wait_for};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use scalesense_server::subscriber::BrokerUrl;
use sqlx::Connection;

/// Publishes each payload with QoS 1 and waits for the broker's PUBACKs.
async fn publish_all(broker: &BrokerUrl, messages: &[(String, String)]) {
    let mut options = MqttOptions::new(unique("pub-"), broker.host.clone(), broker.port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, messages.len() + 8);
    for (topic, payload) in messages {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    let mut acked = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while acked < messages.len() {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                acked += 1;
            }
        }
    })
    .await
    .expect("the broker acknowledges every publish");
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_readings_land_exactly_once() {
    let Some(broker) = test_mqtt() else { return };
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let device = store.add_scale(100, &unique("T")).await;
    let client_id = unique("scalesense-server-test-");
    let server = Server::external(Arc::clone(&store.store), &broker, &client_id);
    server.connected().await;
    let topic = format!("keg/readings/{device}");
    let mut messages: Vec<(String, String)> = (0..50u32)
        .map(|seq| (topic.clone(), reading(4, seq, 75.0)))
        .collect();
    messages.extend((0..10u32).map(|seq| (topic.clone(), reading(4, seq * 3, 75.0))));
    publish_all(&broker, &messages).await;
    wait_for(
        "50 readings in the database",
        Duration::from_secs(30),
        || async { store.tap_readings(100).await.len() >= 50 },
    )
    .await;
    let rows = store.tap_readings(100).await;
    assert_eq!(rows.len(), 50);
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<BTreeSet<_>>(),
        (0..50).collect::<BTreeSet<i64>>()
    );
    server.stop().await;
    clear_session(&broker, &client_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_bad_input_is_dead_lettered_and_ingest_goes_on() {
    let Some(broker) = test_mqtt() else { return };
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let device = store.add_scale(100, &unique("T")).await;
    let client_id = unique("scalesense-server-test-");
    let server = Server::external(Arc::clone(&store.store), &broker, &client_id);
    server.connected().await;
    let topic = format!("keg/readings/{device}");
    let stranger = format!("keg/readings/{}", unique("U"));
    let bad_topic = format!("keg/readings/{} x", unique("U"));
    let good = reading(1, 1, 40.0);
    let cases = [
        (topic.clone(), "not json".to_owned(), "malformed payload"),
        (stranger.clone(), good.clone(), "is not registered"),
        (
            topic.clone(),
            good.replace("\"v\":1", "\"v\":9"),
            "v: contract version 9",
        ),
        (
            topic.clone(),
            good.replace("\"battery_v\":3.9", "\"battery_v\":99"),
            "battery_v: 99 is out of range",
        ),
        (
            topic.clone(),
            good.replace("\"boot\":1,", ""),
            "boot: required field is missing",
        ),
        (bad_topic.clone(), good.clone(), "bad id in topic"),
    ];
    let mut messages: Vec<(String, String)> = cases
        .iter()
        .map(|(t, p, _)| (t.clone(), p.clone()))
        .collect();
    messages.push((topic.clone(), good.clone()));
    publish_all(&broker, &messages).await;
    // Dead letters are written after the batch's readings: wait for both.
    let ours = || async {
        store
            .dead_letters()
            .await
            .into_iter()
            .filter(|l| [&topic, &stranger, &bad_topic].contains(&&l.topic))
            .collect::<Vec<_>>()
    };
    wait_for(
        "the bad messages' dead letters and the valid reading",
        Duration::from_secs(30),
        || async { ours().await.len() >= cases.len() && store.tap_readings(100).await.len() == 1 },
    )
    .await;
    let ours = ours().await;
    let missing: Vec<_> = cases
        .iter()
        .filter(|(topic, payload, reason)| {
            !ours.iter().any(|l| {
                &l.topic == topic && l.payload == payload.as_bytes() && l.reason.contains(reason)
            })
        })
        .map(|(topic, _, reason)| (topic, reason))
        .collect();
    let found: Vec<_> = ours.iter().map(|l| (&l.topic, &l.reason)).collect();
    assert!(
        missing.is_empty(),
        "no dead letter for {missing:#?}; found {found:#?}"
    );
    assert_eq!(ours.len(), cases.len());
    server.stop().await;
    clear_session(&broker, &client_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_database_outage_acknowledges_nothing_and_loses_nothing() {
    let Some(broker) = test_mqtt() else { return };
    let store = TestStore::sqlite(1, Duration::from_millis(200)).await;
    let device = store.add_scale(100, &unique("T")).await;
    let client_id = unique("scalesense-server-test-");
    let server = Server::external(Arc::clone(&store.store), &broker, &client_id);
    server.connected().await;
    let topic = format!("keg/readings/{device}");

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
    let messages: Vec<(String, String)> = (0..20u32)
        .map(|seq| (topic.clone(), reading(2, seq, 66.0)))
        .collect();
    publish_all(&broker, &messages).await;
    wait_for(
        "the database failure to be noticed",
        Duration::from_mins(1),
        || async { server.health.db_failure().is_some() },
    )
    .await;
    assert!(store.tap_readings(100).await.is_empty());
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    locker.close().await.unwrap();

    // The link reconnects, the broker redelivers what was never acknowledged.
    wait_for(
        "all 20 readings after the outage",
        Duration::from_mins(1),
        || async { store.tap_readings(100).await.len() >= 20 },
    )
    .await;
    let rows = store.tap_readings(100).await;
    assert_eq!(rows.len(), 20);
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<BTreeSet<_>>(),
        (0..20).collect::<BTreeSet<i64>>()
    );
    wait_for(
        "readiness to come back",
        Duration::from_secs(20),
        || async { server.health.db_failure().is_none() && server.health.broker_connected() },
    )
    .await;
    server.stop().await;
    clear_session(&broker, &client_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_keeps_messages_for_the_persistent_session_while_the_server_is_down() {
    let Some(broker) = test_mqtt() else { return };
    let store = TestStore::sqlite(1, Duration::from_secs(5)).await;
    let device = store.add_scale(100, &unique("T")).await;
    let client_id = unique("scalesense-server-test-");
    let server = Server::external(Arc::clone(&store.store), &broker, &client_id);
    server.connected().await;
    server.stop().await;

    let topic = format!("keg/readings/{device}");
    let messages: Vec<(String, String)> = (0..15u32)
        .map(|seq| (topic.clone(), reading(3, seq, 55.0)))
        .collect();
    publish_all(&broker, &messages).await;
    assert!(store.tap_readings(100).await.is_empty());

    let server = Server::external(Arc::clone(&store.store), &broker, &client_id);
    wait_for(
        "the readings queued while the server was down",
        Duration::from_secs(30),
        || async { store.tap_readings(100).await.len() >= 15 },
    )
    .await;
    assert_eq!(store.tap_readings(100).await.len(), 15);
    server.stop().await;
    clear_session(&broker, &client_id).await;
}
