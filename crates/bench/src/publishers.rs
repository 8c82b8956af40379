//! Publishers that behave like scales: one MQTT connection per device, QoS 1, one reading in
//! flight at a time, each stamped with its device time (`ts`, epoch ms, strictly increasing per
//! device) and resent on a fresh connection when no PUBACK comes.
//!
//! They run on a runtime of their own whose threads are named [`THREAD_PREFIX`], so the CPU
//! they burn can be told apart from the server's in the same process. Two paces: as fast as
//! the path takes them (optionally bounded by a window of readings not yet consumed, so a
//! broker's bounded queue never overflows while the subscriber behind it is slower), or a fixed
//! total rate spread evenly over the devices.
//!
//! What this module must never do: count a reading as published before its PUBACK, or reuse a
//! connection after a failed publish (rumqttc would resend its own copy as well).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{Barrier, Semaphore};

use crate::BenchError;

/// Name prefix of the publishers' runtime threads.
pub const THREAD_PREFIX: &str = "bench-pub";

/// How long a publisher waits for one PUBACK before it reconnects and resends.
const PUBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a publisher keeps trying one reading before it gives up on it.
const GIVE_UP_AFTER: Duration = Duration::from_mins(1);

/// Microseconds since the Unix epoch (the clock the Python baseline reads too).
pub fn epoch_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// How fast readings go out.
#[derive(Debug, Clone)]
pub enum Pace {
    /// As fast as PUBACKs come back; with a window, a reading also waits for a permit that the
    /// consumer gives back when it has committed one.
    Saturate { window: Option<Arc<Semaphore>> },
    /// This many readings per second in total, evenly spread.
    Rate(f64),
}

/// What one run of publishers sends.
#[derive(Debug, Clone)]
pub struct Plan {
    pub host: String,
    pub port: u16,
    /// Device ids, one connection each.
    pub devices: Vec<String>,
    pub boot: u32,
    pub readings: u64,
    pub pace: Pace,
    /// Prefix of the MQTT client ids (unique per run).
    pub client_prefix: String,
}

impl Plan {
    /// Readings device `index` sends: reading `g` (0-based, over all devices) goes to device
    /// `g % devices`.
    pub fn count_for(&self, index: usize) -> u64 {
        let devices = self.devices.len() as u64;
        let index = index as u64;
        if index >= self.readings {
            0
        } else {
            (self.readings - index).div_ceil(devices)
        }
    }
}

/// One reading that got its PUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub device: usize,
    pub seq: u32,
    pub ts_ms: i64,
    /// When it was handed to the client, epoch µs.
    pub sent_us: i64,
}

/// What the publishers did.
#[derive(Debug, Default)]
pub struct Published {
    pub sent: Vec<Sent>,
    /// Readings given up after [`GIVE_UP_AFTER`] of resending.
    pub abandoned: u64,
    /// Reconnections after a refusal, a lost connection or a missing PUBACK.
    pub resends: u64,
}

/// The publishers' own runtime.
pub fn runtime(threads: usize) -> Result<Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(THREAD_PREFIX)
        .enable_all()
        .build()
        .map_err(|e| BenchError::Io(format!("publisher runtime: {e}")))
}

/// Connects every device's publisher on `runtime`; once all are connected (or gave up
/// connecting for now), `started` is called and they publish. Waits for all of them.
pub async fn run(runtime: &Handle, plan: Arc<Plan>, started: impl FnOnce()) -> Published {
    let barrier = Arc::new(Barrier::new(plan.devices.len() + 1));
    let tasks: Vec<_> = (0..plan.devices.len())
        .map(|index| {
            runtime.spawn(publish_device(
                Arc::clone(&plan),
                index,
                Arc::clone(&barrier),
            ))
        })
        .collect();
    barrier.wait().await;
    started();
    let mut published = Published::default();
    for task in tasks {
        match task.await {
            Ok(device) => {
                published.sent.extend(device.sent);
                published.abandoned += device.abandoned;
                published.resends += device.resends;
            }
            Err(e) => tracing::error!(error = %e, "a publisher task failed"),
        }
    }
    published
}

fn payload(boot: u32, seq: u32, ts_ms: i64) -> String {
    format!(
        r#"{{"v":1,"seq":{seq},"boot":{boot},"ts":{ts_ms},"weight_lbs":80.5,"level_pct":60.0,"battery_v":3.9,"battery_pct":77,"rssi":-61,"stable":true,"tare_status":"complete"}}"#
    )
}

struct Connection {
    options: MqttOptions,
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
}

impl Connection {
    fn new(options: MqttOptions) -> Self {
        let (client, eventloop) = AsyncClient::new(options.clone(), 4);
        Self {
            options,
            client,
            eventloop,
        }
    }

    /// Publishes once and waits for its PUBACK; on anything else starts a fresh connection.
    async fn publish(&mut self, topic: &str, payload: &str) -> bool {
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .is_ok();
        let acked = queued
            && tokio::time::timeout(PUBACK_TIMEOUT, async {
                loop {
                    match self.eventloop.poll().await {
                        Ok(Event::Incoming(Incoming::PubAck(_))) => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            })
            .await
            .unwrap_or(false);
        if !acked {
            *self = Self::new(self.options.clone());
        }
        acked
    }

    /// Waits for the CONNACK (retrying for up to `limit`); false when none came.
    async fn connect(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => return,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await
        .is_ok()
    }

    async fn disconnect(mut self) {
        if self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while self.eventloop.poll().await.is_ok() {}
            })
            .await;
        }
    }
}

async fn publish_device(plan: Arc<Plan>, index: usize, barrier: Arc<Barrier>) -> Published {
    let mut result = Published::default();
    let count = plan.count_for(index);
    let device = &plan.devices[index];
    let topic = format!("keg/readings/{device}");
    let mut options = MqttOptions::new(
        format!("{}-{index}", plan.client_prefix),
        plan.host.clone(),
        plan.port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    let mut connection = Connection::new(options);
    if !connection.connect(Duration::from_secs(30)).await {
        tracing::warn!(device = %device, "publisher not connected after 30 s; it keeps trying");
    }
    barrier.wait().await;
    let start = tokio::time::Instant::now();
    let devices = plan.devices.len() as f64;
    let mut last_ts = 0;
    for k in 0..count {
        match &plan.pace {
            Pace::Saturate {
                window: Some(window),
            } => {
                if let Ok(permit) = window.acquire().await {
                    permit.forget();
                }
            }
            Pace::Saturate { window: None } => {}
            Pace::Rate(rate) => {
                let at = (k as f64 * devices + index as f64) / rate;
                tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
            }
        }
        let seq = u32::try_from(k + 1).unwrap_or(u32::MAX);
        let sent_us = epoch_us();
        let ts_ms = (sent_us / 1000).max(last_ts + 1);
        last_ts = ts_ms;
        let body = payload(plan.boot, seq, ts_ms);
        let began = Instant::now();
        loop {
            if connection.publish(&topic, &body).await {
                result.sent.push(Sent {
                    device: index,
                    seq,
                    ts_ms,
                    sent_us,
                });
                break;
            }
            result.resends += 1;
            if began.elapsed() > GIVE_UP_AFTER {
                tracing::warn!(device = %device, seq, "no PUBACK for a minute; giving up on this reading");
                result.abandoned += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    connection.disconnect().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_spread_over_the_devices() {
        let plan = Plan {
            host: "127.0.0.1".into(),
            port: 1,
            devices: (0..3).map(|i| format!("D{i}")).collect(),
            boot: 1,
            readings: 7,
            pace: Pace::Rate(1.0),
            client_prefix: "t".into(),
        };
        let counts: Vec<u64> = (0..3).map(|i| plan.count_for(i)).collect();
        assert_eq!(counts, vec![3, 2, 2]);
        let few = Plan {
            readings: 2,
            ..plan
        };
        assert_eq!((0..3).map(|i| few.count_for(i)).sum::<u64>(), 2);
    }
}
