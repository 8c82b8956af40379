//! Wi-Fi station, the IP stack, name resolution and SNTP.
//!
//! Seed 000: the scale stays joined and commandable, so it uses modem sleep (set explicitly;
//! it is not the driver's default), never deep sleep. `wifi_task` rejoins after any drop;
//! the RSSI it samples is published through an atomic for the core's readings.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::sync::atomic::{AtomicI32, Ordering};

use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::dns::DnsQueryType;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{DhcpConfig, Runner, Stack, StackResources};
use embassy_time::{Duration, Timer, with_timeout};
use esp_hal::peripherals::WIFI;
use esp_hal::rng::Rng;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, ControllerConfig, Interface, PowerSaveMode, WifiController,
};
use log::{info, warn};
use scalesense_firmware_core::sntp;
use static_cell::StaticCell;

use crate::config;

/// RSSI of the access point in dBm; `i32::MIN` until first measured.
static RSSI: AtomicI32 = AtomicI32::new(i32::MIN);

/// The last measured RSSI, if any.
pub fn rssi() -> Option<i16> {
    let v = RSSI.load(Ordering::Relaxed);
    (v != i32::MIN).then(|| v.clamp(-127, 0) as i16)
}

/// Sockets: MQTT (TCP), SNTP (UDP), DNS.
const SOCKETS: usize = 4;
static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();

/// Starts Wi-Fi and the IP stack; returns the stack and the station MAC address.
pub fn start(spawner: &Spawner, wifi: WIFI<'static>) -> (Stack<'static>, [u8; 6]) {
    let station = Interface::station();
    let mac = station.mac_address();

    let auth = if config::WIFI_PASSWORD.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        match config::WIFI_PASSWORD.try_into() {
            Ok(password) => AuthenticationMethodConfig::Wpa2Personal(password),
            Err(_) => crate::fatal(format_args!(
                "SCALESENSE_WIFI_PASSWORD is longer than 64 bytes"
            )),
        }
    };
    let ssid = match config::WIFI_SSID.try_into() {
        Ok(ssid) => ssid,
        Err(_) => crate::fatal(format_args!("SCALESENSE_WIFI_SSID is longer than 32 bytes")),
    };
    let station_config = StationConfig::default()
        .with_ssid(ssid)
        .with_authentication(auth);
    let mut controller = match WifiController::new(
        wifi,
        ControllerConfig::default().with_initial_config(Config::Station(station_config)),
    ) {
        Ok(c) => c,
        Err(err) => crate::fatal(format_args!("Wi-Fi init failed: {err:?}")),
    };
    // Modem sleep: the radio sleeps between DTIM beacons; MQTT and commands keep working.
    if let Err(err) = controller.set_power_saving(PowerSaveMode::Minimum) {
        warn!("could not enable modem sleep: {err:?}");
    }

    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let (stack, runner) = embassy_net::new(
        station,
        embassy_net::Config::dhcpv4(DhcpConfig::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    match (net_task(runner), wifi_task(controller)) {
        (Ok(net), Ok(wifi)) => {
            spawner.spawn(net);
            spawner.spawn(wifi);
        }
        _ => crate::fatal(format_args!("network tasks could not be spawned")),
    }
    (stack, mac)
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) -> ! {
    runner.run().await
}

/// How often the RSSI is sampled while joined.
const RSSI_PERIOD: Duration = Duration::from_secs(30);

#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) -> ! {
    loop {
        match controller.connect_async().await {
            Ok(info) => {
                info!(
                    "Wi-Fi joined {} on channel {}",
                    info.ssid.as_str(),
                    info.channel
                );
                loop {
                    if let Ok(rssi) = controller.rssi() {
                        RSSI.store(rssi, Ordering::Relaxed);
                    }
                    match select(
                        controller.wait_for_disconnect_async(),
                        Timer::after(RSSI_PERIOD),
                    )
                    .await
                    {
                        Either::First(_) => break,
                        Either::Second(()) => {}
                    }
                }
                warn!("Wi-Fi lost");
            }
            Err(err) => warn!("Wi-Fi join failed: {err:?}"),
        }
        Timer::after_secs(5).await;
    }
}

/// Resolves `host` (or parses it as an IPv4 address).
pub async fn resolve(stack: Stack<'static>, host: &str) -> Option<Ipv4Addr> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(ip);
    }
    match stack.dns_query(host, DnsQueryType::A).await {
        // Only IPv4 is enabled in the stack, so every answer is an IPv4 address.
        Ok(addrs) => addrs.first().map(|embassy_net::IpAddress::Ipv4(v4)| *v4),
        Err(err) => {
            warn!("cannot resolve {host}: {err:?}");
            None
        }
    }
}

/// Asks the SNTP server for the time; `(monotonic ms, epoch ms)` at the moment of the answer.
pub async fn sntp_time(stack: Stack<'static>) -> Option<(u64, u64)> {
    let server = SocketAddrV4::new(resolve(stack, config::NTP_HOST).await?, sntp::PORT);
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx_meta = [PacketMetadata::EMPTY; 2];
    let mut rx = [0u8; 128];
    let mut tx = [0u8; 128];
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    if socket.bind(0).is_err() {
        return None;
    }
    let sent_ms = crate::now_ms();
    let nonce = (u64::from(Rng::new().random()) << 32) | sent_ms;
    socket.send_to(&sntp::request(nonce), server).await.ok()?;
    let mut answer = [0u8; 128];
    let (n, _) = with_timeout(Duration::from_secs(3), socket.recv_from(&mut answer))
        .await
        .ok()?
        .ok()?;
    let received_ms = crate::now_ms();
    match sntp::parse_response(&answer[..n], nonce) {
        Ok(server_ms) => Some((
            received_ms,
            sntp::epoch_at_receive(server_ms, sent_ms, received_ms),
        )),
        Err(err) => {
            warn!("SNTP answer rejected: {err}");
            None
        }
    }
}
