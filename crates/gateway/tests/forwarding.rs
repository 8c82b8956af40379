//! The gateway between two real brokers: the bar's Mosquitto (`SCALESENSE_TEST_MQTT`) and a
//! private upstream Mosquitto, with the test server stand-in confirming commits.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Mosquitto, Server, forget_session, gateway_args, local_broker, options, publish_readings,
    unique, wait_for,
};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use scalesense_gateway::{BrokerUrl, Gateway};

type Seen = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;

/// Subscribe to `filter` with a fresh clean session and collect what arrives.
async fn collect(broker: &BrokerUrl, filter: &str) -> (AsyncClient, Seen) {
    let mut o = options(&unique("test-sub-"), broker);
    o.set_clean_session(true);
    let (client, mut ev) = AsyncClient::new(o, 100);
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sub = client.clone();
    let filter = filter.to_owned();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        while let Ok(e) = ev.poll().await {
            match e {
                Event::Incoming(Packet::ConnAck(_)) => {
                    sub.subscribe(filter.clone(), QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    out.lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                _ => {}
            }
        }
    });
    ready_rx.await.unwrap();
    (client, seen)
}

async fn connected(gw: &Gateway) {
    wait_for(
        "the gateway to connect both sides",
        Duration::from_secs(20),
        || async {
            gw.snapshot()
                .await
                .is_some_and(|s| s.local_connected && s.uplink_connected)
        },
    )
    .await;
}

async fn stop(gw: Gateway, id: &str, local: &BrokerUrl) {
    gw.shutdown().await.unwrap();
    forget_session(&format!("scalesense-gw-{id}-local"), local).await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_leave_the_queue_only_when_the_server_confirms_them() {
    let Some(local) = local_broker("messages_leave_the_queue_only_when_the_server_confirms_them")
    else {
        return;
    };
    let upstream = Mosquitto::upstream();
    let server = Server::start(&upstream.url()).await;
    server.set_confirming(false);
    let id = unique("gwt-");
    let dir = tempfile::tempdir().unwrap();
    let mut args = gateway_args(&id, &local, &upstream.url(), dir.path());
    args.confirm_timeout = Duration::from_secs(1);
    let gw = Gateway::start(args).await.unwrap();
    connected(&gw).await;

    let devices = vec![unique("d-"), unique("d-")];
    publish_readings(&local, &devices, 25, None).await;
    server
        .wait_stored(&devices, 25, Duration::from_secs(30))
        .await;
    {
        // The bar's broker is shared with other tests, so this gateway also forwards their
        // traffic: look at our devices' readings only.
        let t = server.table.lock().unwrap();
        let mut all = std::collections::BTreeSet::new();
        for d in &devices {
            let gseqs = &t.stored_gseqs[d];
            assert!(
                gseqs.windows(2).all(|w| w[0] < w[1]),
                "gseq grows with seq: {gseqs:?}"
            );
            all.extend(gseqs.iter().copied());
        }
        assert_eq!(all.len(), 50, "one gseq per message");
        assert!(all.iter().all(|g| *g >= 1));
    }
    // Delivered and PUBACKed by the broker, yet unconfirmed: all still queued.
    let s = gw.snapshot().await.unwrap();
    assert!(s.queue.depth >= 50, "{}", s.queue.depth);
    assert_eq!(s.confirmed, 0);

    // Once the server confirms, the resends (after the confirmation timeout) are confirmed and
    // the queue empties.
    server.set_confirming(true);
    wait_for("the queue to empty", Duration::from_secs(30), || async {
        gw.snapshot().await.is_some_and(|s| s.queue.depth == 0)
    })
    .await;
    let s = gw.snapshot().await.unwrap();
    assert!(s.confirmed >= 50, "{}", s.confirmed);
    assert!(
        s.published >= 100,
        "every message was sent again: {}",
        s.published
    );
    assert!(s.restarts >= 2, "a connect and at least one timeout");
    server.assert_exactly_once_in_order(&devices, 25);

    let metrics = http_get(gw.health_addr(), "/metrics").await;
    assert!(
        metrics.contains("# TYPE scalesense_gateway_queue_depth gauge\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scalesense_gateway_uplink_connected 1\n"),
        "{metrics}"
    );
    let health = http_get(gw.health_addr(), "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");

    // Health is published retained upstream.
    let (_c, status) = collect(&upstream.url(), &format!("gw/status/{id}")).await;
    wait_for("a retained gw/status", Duration::from_secs(10), || {
        let status = status.clone();
        async move { !status.lock().unwrap().is_empty() }
    })
    .await;
    let (_, payload, retained) = status.lock().unwrap()[0].clone();
    assert!(retained);
    let status = scalesense_proto::from_slice::<scalesense_proto::GatewayStatus>(&payload).unwrap();
    assert_eq!(status.version.as_str(), env!("CARGO_PKG_VERSION"));
    stop(gw, &id, &local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_ota_notices_reach_the_bar() {
    let Some(local) = local_broker("commands_and_ota_notices_reach_the_bar") else {
        return;
    };
    let upstream = Mosquitto::upstream();
    let id = unique("gwt-");
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(gateway_args(&id, &local, &upstream.url(), dir.path()))
        .await
        .unwrap();
    connected(&gw).await;
    let device = unique("d-");
    let (_ota_sub, ota_seen) = collect(&local, &format!("keg/ota/{device}")).await;

    let server = common::connect(&unique("test-cmd-"), &upstream.url(), true).await;
    let identify = format!("keg/command/{device}/identify");
    let reboot = format!("keg/command/{device}/reboot");
    let command =
        br#"{"v":1,"id":"cmd-1","params":{},"issued_at":1750000000000,"expires_at":1750000600000}"#;
    server
        .publish(&identify, QoS::AtLeastOnce, true, command.to_vec())
        .await
        .unwrap();
    let ota = br#"{"v":1,"job_id":"job-1","version":"1.2.3","url":"http://gw.local/fw.bin","sha256":"00","size":1}"#;
    server
        .publish(
            format!("keg/ota/{device}"),
            QoS::AtLeastOnce,
            false,
            ota.to_vec(),
        )
        .await
        .unwrap();

    // A scale that subscribes later still gets the command: it is retained at the bar.
    wait_for("the OTA notice at the bar", Duration::from_secs(10), || {
        let seen = ota_seen.clone();
        async move { !seen.lock().unwrap().is_empty() }
    })
    .await;
    assert_eq!(ota_seen.lock().unwrap()[0].1, ota.to_vec());
    let (_sub, seen) = collect(&local, &format!("keg/command/{device}/+")).await;
    wait_for(
        "the retained command at the bar",
        Duration::from_secs(10),
        || {
            let seen = seen.clone();
            async move { !seen.lock().unwrap().is_empty() }
        },
    )
    .await;
    let (topic, payload, retained) = seen.lock().unwrap()[0].clone();
    assert_eq!(
        (topic.as_str(), payload.as_slice(), retained),
        (identify.as_str(), &command[..], true)
    );

    // Clearing the retained command upstream clears it at the bar; the later reboot command
    // shows the clear was relayed first.
    server
        .publish(&identify, QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
    server
        .publish(&reboot, QoS::AtLeastOnce, true, command.to_vec())
        .await
        .unwrap();
    wait_for("the second command", Duration::from_secs(10), || {
        let seen = seen.clone();
        let reboot = reboot.clone();
        async move { seen.lock().unwrap().iter().any(|(t, _, _)| *t == reboot) }
    })
    .await;
    let (_late, late_seen) = collect(&local, &format!("keg/command/{device}/+")).await;
    wait_for(
        "the retained reboot command",
        Duration::from_secs(10),
        || {
            let seen = late_seen.clone();
            async move { !seen.lock().unwrap().is_empty() }
        },
    )
    .await;
    let late: Vec<String> = late_seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.0.clone())
        .collect();
    assert_eq!(late, vec![reboot.clone()], "the cleared command is gone");
    assert!(gw.snapshot().await.unwrap().downlink >= 4);

    // Leave no retained message behind on the shared broker.
    let bar = common::connect(&unique("test-clean-"), &local, true).await;
    bar.publish(&reboot, QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(gw, &id, &local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_outage_loses_and_reorders_nothing() {
    let Some(local) = local_broker("an_upstream_outage_loses_and_reorders_nothing") else {
        return;
    };
    let mut upstream = Mosquitto::upstream();
    let server = Server::start(&upstream.url()).await;
    let id = unique("gwt-");
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(gateway_args(&id, &local, &upstream.url(), dir.path()))
        .await
        .unwrap();
    connected(&gw).await;

    let devices: Vec<String> = (0..10).map(|_| unique("d-")).collect();
    let scales = {
        let local = local.clone();
        let devices = devices.clone();
        tokio::spawn(async move { publish_readings(&local, &devices, 200, Some(1000)).await })
    };
    wait_for("some readings stored", Duration::from_secs(20), || async {
        server.table.lock().unwrap().received > 200
    })
    .await;
    upstream.kill();
    wait_for("a backlog to build up", Duration::from_secs(20), || async {
        gw.snapshot()
            .await
            .is_some_and(|s| s.queue.depth > 500 && !s.uplink_connected)
    })
    .await;
    upstream.resume();
    scales.await.unwrap();
    server
        .wait_stored(&devices, 200, Duration::from_mins(1))
        .await;
    server.assert_exactly_once_in_order(&devices, 200);
    wait_for("the queue to empty", Duration::from_secs(30), || async {
        gw.snapshot().await.is_some_and(|s| s.queue.depth == 0)
    })
    .await;
    stop(gw, &id, &local).await;
}
