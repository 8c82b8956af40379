//! The main loop: sample, tick the core, carry out its actions, and keep one MQTT session.
//!
//! Offline, the loop keeps sampling (the core buffers readings) and retries the broker with a
//! growing back-off. Online, it waits for whichever comes first: the next sample, a core
//! deadline, or an inbound message; PUBACKs are matched to the core's publish ids through
//! minimq's operation handles. The MQTT last will is the contract's retained
//! `{"v":1,"state":"offline"}` on `keg/status/{id}`.

use core::net::SocketAddrV4;

use embassy_futures::select::{Either, Either3, select, select3};
use embassy_net::Stack;
use embassy_net::tcp::TcpSocket;
use embassy_time::{Duration, Instant, Timer, with_timeout};
use heapless::Vec;
use log::{info, warn};
use minimq::{Buffers, ConfigBuilder, Op, Publication, QoS, Session, TopicFilter, Will};
use scalesense_firmware_core::ring::PublishId;
use scalesense_firmware_core::scale::SAMPLE_PERIOD_MS;
use scalesense_firmware_core::settings::SettingsStore;
use scalesense_firmware_core::{Action, Publish, Scale};
use static_cell::ConstStaticCell;

use crate::board::Hardware;
use crate::{ble, config, network, now_ms};

/// Largest inbound packet: a command or OTA notice with its topic and properties.
const MQTT_RX: usize = 1_024;
/// Outbound arena: in-flight QoS 1 publishes (up to 4 readings, 4 responses, a status) plus
/// encoding room.
const MQTT_TX: usize = 6_144;
const TCP_RX: usize = 1_536;
const TCP_TX: usize = 2_048;
/// Seconds between MQTT keep-alive pings.
const KEEPALIVE_S: u16 = 60;

static MQTT_RX_BUF: ConstStaticCell<[u8; MQTT_RX]> = ConstStaticCell::new([0; MQTT_RX]);
static MQTT_TX_BUF: ConstStaticCell<[u8; MQTT_TX]> = ConstStaticCell::new([0; MQTT_TX]);
static TCP_RX_BUF: ConstStaticCell<[u8; TCP_RX]> = ConstStaticCell::new([0; TCP_RX]);
static TCP_TX_BUF: ConstStaticCell<[u8; TCP_TX]> = ConstStaticCell::new([0; TCP_TX]);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const BATTERY_PERIOD: Duration = Duration::from_secs(30);
/// The clock is re-synchronised this often, and retried this often until it first succeeds.
const SNTP_PERIOD: Duration = Duration::from_secs(6 * 3_600);
const SNTP_RETRY: Duration = Duration::from_secs(60);

/// When the loop's own periodic jobs are due.
struct Schedule {
    sample: Instant,
    battery: Instant,
    sntp: Instant,
}

/// Runs the scale for ever.
pub async fn run<S: SettingsStore>(
    stack: Stack<'static>,
    mut scale: Scale<S>,
    mut hw: Hardware,
) -> ! {
    let (will_topic, will_payload) = scale.last_will();
    let subscriptions = scale.subscriptions();
    let will = match Will::new(will_topic.as_str(), will_payload.as_bytes(), &[]) {
        Ok(will) => will.retained().qos(QoS::AtLeastOnce),
        Err(err) => crate::fatal(format_args!("MQTT last will rejected: {err:?}")),
    };
    let config = ConfigBuilder::new(Buffers::new(MQTT_RX_BUF.take(), MQTT_TX_BUF.take()))
        .client_id(scale.device_id().as_str())
        .and_then(|c| c.keepalive_interval(KEEPALIVE_S).will(will));
    let mut session = match config {
        Ok(config) => Session::new(config),
        Err(err) => crate::fatal(format_args!("MQTT configuration rejected: {err:?}")),
    };
    let tcp_rx = TCP_RX_BUF.take();
    let tcp_tx = TCP_TX_BUF.take();

    let now = Instant::now();
    let mut schedule = Schedule {
        sample: now,
        battery: now,
        sntp: now,
    };
    scale.on_battery(hw.battery());
    let mut backoff = BACKOFF_MIN;
    let mut next_attempt = now;

    loop {
        // Offline: keep measuring until the network is up and it is time to try the broker.
        while !(stack.is_config_up() && Instant::now() >= next_attempt) {
            step(&mut scale, &mut hw, &mut schedule).await;
            run_local_actions(&mut scale, &mut hw);
            if let Either::Second(write) =
                select(Timer::at(wake_at(&scale, &schedule)), ble::WRITES.receive()).await
            {
                ble_write(&mut scale, &write);
                run_local_actions(&mut scale, &mut hw);
            }
        }
        sync_clock(stack, &mut scale, &mut schedule).await;

        let Some(broker) = network::resolve(stack, config::BROKER_HOST).await else {
            retry_later(&mut next_attempt, &mut backoff);
            continue;
        };
        let mut socket = TcpSocket::new(stack, tcp_rx, tcp_tx);
        socket.set_timeout(Some(Duration::from_secs(u64::from(KEEPALIVE_S) * 2)));
        let endpoint = SocketAddrV4::new(broker, config::BROKER_PORT);
        let connected = match with_timeout(CONNECT_TIMEOUT, socket.connect(endpoint)).await {
            Ok(Ok(())) => with_timeout(CONNECT_TIMEOUT, session.connect(socket)).await,
            Ok(Err(err)) => {
                warn!("TCP connect to {endpoint} failed: {err:?}");
                retry_later(&mut next_attempt, &mut backoff);
                continue;
            }
            Err(_) => {
                warn!("TCP connect to {endpoint} timed out");
                retry_later(&mut next_attempt, &mut backoff);
                continue;
            }
        };
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => {
                warn!("MQTT connect failed: {err:?}");
                retry_later(&mut next_attempt, &mut backoff);
                continue;
            }
            Err(_) => {
                warn!("MQTT connect timed out");
                retry_later(&mut next_attempt, &mut backoff);
                continue;
            }
        };
        let filters = [
            TopicFilter::new(subscriptions[0].as_str()),
            TopicFilter::new(subscriptions[1].as_str()),
        ];
        if let Err(err) = conn.subscribe(&filters, &[]).await {
            warn!("MQTT subscribe failed: {err:?}");
            retry_later(&mut next_attempt, &mut backoff);
            continue;
        }
        info!("MQTT connected to {endpoint}");
        backoff = BACKOFF_MIN;
        scale.on_connected(now_ms());

        // Publishes waiting for their PUBACK, by minimq operation.
        let mut pending: Vec<(Op, PublishId), 16> = Vec::new();
        'online: loop {
            while let Some(action) = scale.poll() {
                let Some(publish) = local_action(&mut hw, action) else {
                    continue;
                };
                let mut publication =
                    Publication::new(publish.topic.as_str(), publish.payload.as_slice())
                        .qos(QoS::AtLeastOnce);
                if publish.retain {
                    publication = publication.retain();
                }
                match conn.publish(publication).await {
                    Ok(Some(op)) => {
                        if let Some(id) = publish.ack
                            && pending.push((op, id)).is_err()
                        {
                            // More in flight than the core ever allows: treat as a broken link.
                            warn!("too many publishes in flight");
                            break 'online;
                        }
                    }
                    Ok(None) => {}
                    Err(err) => {
                        warn!("MQTT publish failed: {err:?}");
                        break 'online;
                    }
                }
            }
            pending.retain(|(op, id)| {
                if conn.is_complete(op) {
                    scale.on_puback(*id);
                    false
                } else {
                    !conn.is_invalidated(op)
                }
            });
            if Instant::now() >= schedule.sntp {
                sync_clock(stack, &mut scale, &mut schedule).await;
            }

            match select3(
                Timer::at(wake_at(&scale, &schedule)),
                conn.poll(),
                ble::WRITES.receive(),
            )
            .await
            {
                Either3::First(()) => step(&mut scale, &mut hw, &mut schedule).await,
                Either3::Second(Ok(Some(message))) => {
                    match scale.on_message(now_ms(), message.topic(), message.payload()) {
                        Ok(handled) => info!("{}: {handled:?}", message.topic()),
                        Err(err) => warn!("{}: {err}", message.topic()),
                    }
                }
                Either3::Second(Ok(None)) => {}
                Either3::Second(Err(err)) => {
                    warn!("MQTT connection lost: {err:?}");
                    break 'online;
                }
                Either3::Third(write) => ble_write(&mut scale, &write),
            }
        }
        drop(conn);
        scale.on_disconnected(now_ms());
        next_attempt = Instant::now() + backoff;
    }
}

/// Schedules the next broker attempt and doubles the back-off, up to its maximum.
fn retry_later(next_attempt: &mut Instant, backoff: &mut Duration) {
    *next_attempt = Instant::now() + *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

/// The earliest of the next sample, the next battery read and the core's next deadline.
fn wake_at<S: SettingsStore>(scale: &Scale<S>, schedule: &Schedule) -> Instant {
    let core = Instant::from_millis(scale.next_deadline());
    schedule.sample.min(schedule.battery).min(core)
}

/// Feeds the core whatever is due: a load-cell sample, the battery, the RSSI, then the timers.
async fn step<S: SettingsStore>(scale: &mut Scale<S>, hw: &mut Hardware, schedule: &mut Schedule) {
    let now = Instant::now();
    if now >= schedule.sample {
        match hw.sample().await {
            Some(raw) => scale.on_sample(now_ms(), raw, hw.temperature_c()),
            None => warn!("HX711 did not answer"),
        }
        schedule.sample += Duration::from_millis(SAMPLE_PERIOD_MS);
        if schedule.sample < now {
            schedule.sample = now + Duration::from_millis(SAMPLE_PERIOD_MS);
        }
    }
    if now >= schedule.battery {
        scale.on_battery(hw.battery());
        schedule.battery = now + BATTERY_PERIOD;
        // Refresh the BLE status characteristic with the same JSON as `keg/status/{id}`.
        let mut status = ble::Value::new();
        if status
            .resize(scalesense_firmware_core::ble::MAX_VALUE_LEN, 0)
            .is_ok()
            && let Ok(n) = scalesense_proto::encode(&scale.status(), &mut status)
        {
            status.truncate(n);
            ble::STATUS.signal(status);
        }
    }
    if let Some(rssi) = network::rssi() {
        scale.on_rssi(rssi);
    }
    scale.tick(now_ms());
}

/// Sets the core's clock from SNTP; retried every minute until it works, then every 6 hours.
async fn sync_clock<S: SettingsStore>(
    stack: Stack<'static>,
    scale: &mut Scale<S>,
    schedule: &mut Schedule,
) {
    if Instant::now() < schedule.sntp {
        return;
    }
    match network::sntp_time(stack).await {
        Some((mono_ms, epoch_ms)) => {
            scale.on_clock(mono_ms, epoch_ms);
            info!("clock set: epoch {epoch_ms} ms");
            schedule.sntp = Instant::now() + SNTP_PERIOD;
        }
        None => {
            warn!("SNTP failed; commands wait for the clock");
            schedule.sntp = Instant::now() + SNTP_RETRY;
        }
    }
}

/// Hands a BLE write to the core.
fn ble_write<S: SettingsStore>(scale: &mut Scale<S>, write: &ble::Write) {
    match scale.on_ble_write(now_ms(), write.characteristic, &write.value) {
        Ok(handled) => info!("BLE: {handled:?}"),
        Err(err) => warn!("BLE: {err}"),
    }
}

/// Carries out every pending action that needs no broker (offline there are no publishes).
fn run_local_actions<S: SettingsStore>(scale: &mut Scale<S>, hw: &mut Hardware) {
    while let Some(action) = scale.poll() {
        if let Some(publish) = local_action(hw, action) {
            // The core only publishes while connected; nothing to do with a stray one.
            warn!("publish on {} while offline dropped", publish.topic);
        }
    }
}

/// Carries out an action on the board; hands publishes back to the caller.
fn local_action(hw: &mut Hardware, action: Action) -> Option<Publish> {
    match action {
        Action::Publish(publish) => return Some(publish),
        Action::SetLed(on) => hw.set_led(on),
        Action::Display(screen) => hw.show(&screen),
        Action::BleLiveWeight(weight) => ble::LIVE_WEIGHT.signal(weight.encode()),
        Action::BleResponse(payload) => match ble::Value::from_slice(&payload) {
            Ok(value) => ble::RESPONSE.signal(value),
            Err(_) => warn!("BLE response longer than a characteristic value"),
        },
        Action::OtaOffered(ota) => warn!(
            "OTA {} offered (job {}), but this firmware cannot download updates yet",
            ota.version.as_str(),
            ota.job_id
        ),
        Action::Reboot => {
            info!("rebooting on command");
            esp_hal::system::software_reset();
        }
    }
    None
}
