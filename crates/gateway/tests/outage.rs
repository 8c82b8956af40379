//! The outage of issue 10: the server's broker is down while one bar's day of readings arrives
//! (50 scales × 1 reading a minute × 24 h = 72,000), then comes back. The gateway must lose and
//! reorder nothing; the replay time is printed. The same outage through a Mosquitto bridge
//! configured as a user would (`mosquitto_bridge_comparison`, run on demand) measures what the
//! seeds' design loses.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Mosquitto, Server, gateway_args, local_broker, publish_readings, unique, wait_for};
use scalesense_gateway::Gateway;

const SCALES: usize = 50;
const READINGS_PER_SCALE: u32 = 1440;

/// Run the outage through our gateway; returns (stored, replay time).
async fn gateway_outage(devices: &[String], per_device: u32) -> (usize, Duration) {
    let bar = Mosquitto::bar();
    let mut upstream = Mosquitto::upstream();
    let server = Server::start(&upstream.url()).await;
    let id = unique("gwo-");
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(gateway_args(&id, &bar.url(), &upstream.url(), dir.path()))
        .await
        .unwrap();
    wait_for(
        "the gateway to connect",
        Duration::from_secs(20),
        || async {
            gw.snapshot()
                .await
                .is_some_and(|s| s.local_connected && s.uplink_connected)
        },
    )
    .await;

    upstream.kill();
    let queued_from = Instant::now();
    publish_readings(&bar.url(), devices, per_device, None).await;
    let total = devices.len() as u64 * u64::from(per_device);
    wait_for("the backlog on disk", Duration::from_mins(5), || async {
        gw.snapshot().await.is_some_and(|s| s.queue.depth >= total)
    })
    .await;
    let s = gw.snapshot().await.unwrap();
    eprintln!(
        "queued {total} readings in {:?} ({} bytes on disk)",
        queued_from.elapsed(),
        s.queue.disk_bytes
    );

    upstream.resume();
    let replay_from = Instant::now();
    server
        .wait_stored(devices, per_device, Duration::from_mins(5))
        .await;
    let replay = replay_from.elapsed();
    wait_for("every confirmation", Duration::from_mins(1), || async {
        gw.snapshot().await.is_some_and(|s| s.queue.depth == 0)
    })
    .await;
    server.assert_exactly_once_in_order(devices, per_device);
    gw.shutdown().await.unwrap();
    (server.stored_count(devices), replay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bars_day_through_an_outage_is_replayed_whole_and_in_order() {
    if local_broker("one_bars_day_through_an_outage_is_replayed_whole_and_in_order").is_none() {
        return;
    }
    let devices: Vec<String> = (0..SCALES).map(|_| unique("d-")).collect();
    let (stored, replay) = gateway_outage(&devices, READINGS_PER_SCALE).await;
    assert_eq!(stored, SCALES * READINGS_PER_SCALE as usize);
    eprintln!(
        "replayed {stored} readings in {replay:?} ({:.0}/s; debug build, the stand-in server included)",
        stored as f64 / replay.as_secs_f64()
    );
}

/// The outage through a Mosquitto bridge at the bar (`extra` configures the bar's broker);
/// returns how many readings reached the server.
async fn bridge_outage(devices: &[String], per_device: u32, extra: &str) -> usize {
    let mut upstream = Mosquitto::upstream();
    let server = Server::start(&upstream.url()).await;
    let bridge = format!(
        "{extra}\nconnection upstream\naddress 127.0.0.1:{}\ntopic keg/readings/# out 1\n",
        upstream.port
    );
    let bar = Mosquitto::start(&bridge);
    // Let the bridge connect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    upstream.kill();
    publish_readings(&bar.url(), devices, per_device, None).await;
    upstream.resume();
    // The bridge reconnects on its own schedule; wait until nothing more arrives.
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = server.stored_count(devices);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (several minutes): cargo test --release -p scalesense-gateway --test outage -- --ignored --nocapture"]
async fn mosquitto_bridge_comparison() {
    if local_broker("mosquitto_bridge_comparison").is_none() {
        return;
    }
    let total = SCALES * READINGS_PER_SCALE as usize;
    let mut rows = Vec::new();
    for (name, extra) in [
        ("Mosquitto bridge, defaults", String::new()),
        ("Mosquitto bridge, persistence on", {
            let dir = tempfile::tempdir().unwrap().keep();
            format!("persistence true\npersistence_location {}/", dir.display())
        }),
    ] {
        let devices: Vec<String> = (0..SCALES).map(|_| unique("d-")).collect();
        let stored = bridge_outage(&devices, READINGS_PER_SCALE, &extra).await;
        rows.push((name, stored, None));
    }
    let devices: Vec<String> = (0..SCALES).map(|_| unique("d-")).collect();
    let (stored, replay) = gateway_outage(&devices, READINGS_PER_SCALE).await;
    rows.push(("scalesense gateway", stored, Some(replay)));
    eprintln!("\n| path | sent | reached the server | lost | replay |\n|---|---|---|---|---|");
    for (name, stored, replay) in &rows {
        eprintln!(
            "| {name} | {total} | {stored} | {} ({:.1} %) | {} |",
            total - stored,
            100.0 * (total - stored) as f64 / total as f64,
            replay.map_or_else(|| "—".to_owned(), |r| format!("{:.1} s", r.as_secs_f64()))
        );
    }
    assert_eq!(rows.last().unwrap().1, total, "the gateway lost readings");
}
