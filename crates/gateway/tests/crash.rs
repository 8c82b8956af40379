//! Process-level crash tests: the gateway runs as a child process (this test binary re-run with
//! `SCALESENSE_GATEWAY_CHILD` set) and is killed with SIGKILL at random moments while scales
//! publish and while it replays a backlog; the server's broker is killed while the gateway
//! forwards. Afterwards every reading a scale got a PUBACK for is stored exactly once and in
//! order per device. Each test is bounded (tens of seconds); the random seed is printed so a
//! failure can be replayed with `SCALESENSE_CRASH_SEED`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Mosquitto, Server, forget_session, gateway_args, local_broker, publish_readings, unique,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use scalesense_gateway::{BrokerUrl, Gateway};

const CHILD_ENV: &str = "SCALESENSE_GATEWAY_CHILD";

/// The gateway process the crash tests start and kill. `SCALESENSE_GATEWAY_CHILD` holds
/// `id local upstream data_dir confirm_timeout_s`.
#[test]
#[ignore = "the gateway process the crash tests start and kill; not a test by itself"]
fn child_gateway_process() {
    let spec = std::env::var(CHILD_ENV).expect("run by the crash tests");
    let parts: Vec<&str> = spec.split(' ').collect();
    let [id, local, upstream, dir, timeout] = parts[..] else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let mut args = gateway_args(
        id,
        &local.parse().unwrap(),
        &upstream.parse().unwrap(),
        Path::new(dir),
    );
    args.confirm_timeout = Duration::from_secs(timeout.parse().unwrap());
    tracing_subscriber::fmt()
        .with_env_filter("scalesense_gateway=debug")
        .with_writer(std::io::stderr)
        .init();
    scalesense_gateway::run(args).unwrap();
}

struct Child9 {
    child: Child,
}

impl Child9 {
    fn spawn(id: &str, local: &BrokerUrl, upstream: &BrokerUrl, dir: &Path) -> Self {
        // Each child appends its log to gateway.log beside the queue, printed when a test fails.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("gateway.log"))
            .unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_gateway_process",
                "--nocapture",
            ])
            .env(
                CHILD_ENV,
                format!("{id} {local} {upstream} {} 2", dir.display()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Child9 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rng() -> SmallRng {
    let seed = std::env::var("SCALESENSE_CRASH_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().unwrap(),
    );
    eprintln!("crash test seed: SCALESENSE_CRASH_SEED={seed}");
    SmallRng::seed_from_u64(seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_scales_publish_loses_and_reorders_nothing() {
    let Some(local) = local_broker("kill_9_while_scales_publish_loses_and_reorders_nothing") else {
        return;
    };
    let mut rng = rng();
    let upstream = Mosquitto::upstream();
    let server = Server::start(&upstream.url()).await;
    let id = unique("gwc-");
    let dir = tempfile::tempdir().unwrap();
    let devices: Vec<String> = (0..10).map(|_| unique("d-")).collect();
    let per_device = 400;

    let mut gateway = Some(Child9::spawn(&id, &local, &upstream.url(), dir.path()));
    // Let the first one subscribe before the scales start, so its session exists.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let scales = {
        let (local, devices) = (local.clone(), devices.clone());
        tokio::spawn(async move { publish_readings(&local, &devices, per_device, Some(500)).await })
    };
    let mut kills = 0;
    while !scales.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..1200))).await;
        if let Some(g) = gateway.take() {
            g.kill9();
            kills += 1;
        }
        gateway = Some(Child9::spawn(&id, &local, &upstream.url(), dir.path()));
    }
    scales.await.unwrap();
    server
        .wait_stored(&devices, per_device, Duration::from_secs(90))
        .await;
    server.assert_exactly_once_in_order(&devices, per_device);
    eprintln!("survived {kills} SIGKILLs while scales published");
    assert!(kills >= 3);
    drop(gateway);
    forget_session(&format!("scalesense-gw-{id}-local"), &local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_replaying_a_backlog_loses_and_reorders_nothing() {
    if local_broker("kill_9_while_replaying_a_backlog_loses_and_reorders_nothing").is_none() {
        return;
    }
    // Publishing 5,000 readings at once overflows the default queues of the shared bar broker
    // (Mosquitto drops beyond 1,000 queued per client): use one configured as documented.
    let bar = Mosquitto::bar();
    let local = bar.url();
    let mut rng = rng();
    let mut upstream = Mosquitto::upstream();
    let server = Server::start(&upstream.url()).await;
    let id = unique("gwc-");
    let dir = tempfile::tempdir().unwrap();
    let devices: Vec<String> = (0..20).map(|_| unique("d-")).collect();
    let per_device = 250;

    // Build a backlog of 5,000 readings with the server's broker down.
    upstream.kill();
    let gateway = Child9::spawn(&id, &local, &upstream.url(), dir.path());
    tokio::time::sleep(Duration::from_millis(700)).await;
    publish_readings(&local, &devices, per_device, None).await;
    let total = u64::from(per_device) * devices.len() as u64;
    common::wait_for("the backlog on disk", Duration::from_mins(1), || async {
        queued_at_least(dir.path(), total)
    })
    .await;
    gateway.kill9();

    // Replay, killing the gateway at random moments.
    upstream.resume();
    let started = Instant::now();
    let mut kills = 0;
    let mut gateway = Child9::spawn(&id, &local, &upstream.url(), dir.path());
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
        gateway.kill9();
        kills += 1;
        gateway = Child9::spawn(&id, &local, &upstream.url(), dir.path());
    }
    server
        .wait_stored(&devices, per_device, Duration::from_secs(90))
        .await;
    server.assert_exactly_once_in_order(&devices, per_device);
    eprintln!(
        "replayed {total} readings through {kills} SIGKILLs in {:?}",
        started.elapsed()
    );
    drop(gateway);
}

/// Whether the queue in `data_dir` holds at least `n` records: read from the segment files'
/// names and sizes would be guesswork, so count the records by opening a copy.
fn queued_at_least(data_dir: &Path, n: u64) -> bool {
    let copy = tempfile::tempdir().unwrap();
    let src = data_dir.join("queue");
    let Ok(entries) = std::fs::read_dir(&src) else {
        return false;
    };
    for e in entries {
        let e = e.unwrap();
        if e.path()
            .extension()
            .is_some_and(|x| x == "seg" || x == "log")
        {
            std::fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
        }
    }
    scalesense_gateway::queue::Queue::open(copy.path(), 256 << 20)
        .is_ok_and(|q| q.stats().depth >= n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_servers_broker_while_forwarding_loses_nothing() {
    let Some(local) = local_broker("kill_9_of_the_servers_broker_while_forwarding_loses_nothing")
    else {
        return;
    };
    let mut rng = rng();
    let mut upstream = Mosquitto::upstream();
    let server = Server::start(&upstream.url()).await;
    let id = unique("gwc-");
    let dir = tempfile::tempdir().unwrap();
    let mut args = gateway_args(&id, &local, &upstream.url(), dir.path());
    args.confirm_timeout = Duration::from_secs(2);
    let gw = Gateway::start(args).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let devices: Vec<String> = (0..10).map(|_| unique("d-")).collect();
    let per_device = 300;
    let scales = {
        let (local, devices) = (local.clone(), devices.clone());
        tokio::spawn(async move { publish_readings(&local, &devices, per_device, Some(600)).await })
    };
    let mut kills = 0;
    while !scales.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1000))).await;
        upstream.kill();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..500))).await;
        upstream.resume();
    }
    scales.await.unwrap();
    server
        .wait_stored(&devices, per_device, Duration::from_secs(90))
        .await;
    // Exactly once, but not necessarily in commit order: this stand-in's broker, killed, drops
    // what arrives before the stand-in has subscribed again, and those are resent after later
    // ones. (The gateway still sends in order; a server whose ingest is in its broker's publish
    // hook never drops from the middle of the stream.)
    server.assert_exactly_once(&devices, per_device);
    eprintln!("survived {kills} SIGKILLs of the server's broker");
    gw.shutdown().await.unwrap();
    forget_session(&format!("scalesense-gw-{id}-local"), &local).await;
}
