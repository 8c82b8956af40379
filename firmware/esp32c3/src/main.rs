//! Scale Sense firmware for the ESP32-C3-MINI-1U scale (seed 000).
//!
//! Thin glue: this binary owns the pins, the radio, the sockets and the flash, and feeds what
//! they report into `scalesense_firmware_core::Scale`, which makes every decision (filtering,
//! readings, the offline buffer, commands, status) and answers with actions that this file
//! carries out. Anything worth testing belongs in the core crate, which is tested on the host;
//! this crate cannot even build for the host.
//!
//! Tasks: `net_task` runs the IP stack, `wifi_task` keeps the station joined (modem sleep on),
//! `ble_task` serves the maintenance GATT service, and `main` runs the load cell, the battery,
//! the display, SNTP and the MQTT session.

#![no_std]
#![no_main]

mod ble;
mod board;
mod config;
mod mqtt;
mod network;

use embassy_executor::Spawner;
use embassy_time::Instant;
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::timer::timg::TimerGroup;
use heapless::String;
use log::{error, info, warn};
use scalesense_firmware_core::settings::FlashStore;
use scalesense_firmware_core::{DeviceConfig, Scale};
use scalesense_proto::DeviceId;
use scalesense_proto::payload::VersionString;

esp_bootloader_esp_idf::esp_app_desc!();

/// Monotonic milliseconds since start-up: the core's notion of time.
pub fn now_ms() -> u64 {
    Instant::now().as_millis()
}

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));

    // esp-radio needs a heap for Wi-Fi and BLE together; the scale logic never allocates.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 64 * 1024);

    // The scheduler must run before the radio is touched.
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    let store = match board::settings_store(peripherals.FLASH) {
        Ok(store) => store,
        Err(err) => fatal(format_args!("settings flash unusable: {err}")),
    };

    let (stack, mac) = network::start(&spawner, peripherals.WIFI);
    let device_id = device_id(&mac);
    info!(
        "scale {device_id} starting, firmware {}",
        env!("CARGO_PKG_VERSION")
    );

    ble::start(&spawner, peripherals.BT, device_id.as_str(), mac);

    let mut firmware = VersionString::new();
    // Cannot fail: the package version is far shorter than the contract's 24 bytes.
    let _ = firmware.push_str(env!("CARGO_PKG_VERSION"));
    let scale: Scale<FlashStore<esp_storage::FlashStorage<'static>>> = match Scale::new(
        DeviceConfig {
            device_id,
            firmware_version: firmware,
        },
        store,
        now_ms(),
    ) {
        Ok(scale) => scale,
        Err(err) => fatal(format_args!("cannot persist the boot counter: {err}")),
    };
    info!("boot {}", scale.boot());

    let hardware = board::Hardware::new(board::Pins {
        hx711_dout: peripherals.GPIO0,
        hx711_clk: peripherals.GPIO10,
        battery: peripherals.GPIO4,
        adc: peripherals.ADC1,
        led: peripherals.GPIO8,
        sda: peripherals.GPIO7,
        scl: peripherals.GPIO3,
        i2c: peripherals.I2C0,
        tsens: peripherals.TSENS,
    });

    mqtt::run(stack, scale, hardware).await
}

/// The configured device id, or `SCALE-` and the last three MAC bytes.
fn device_id(mac: &[u8; 6]) -> DeviceId {
    use core::fmt::Write as _;
    if !config::DEVICE_ID.is_empty() {
        match DeviceId::try_from(config::DEVICE_ID) {
            Ok(id) => return id,
            Err(err) => {
                error!("SCALESENSE_DEVICE_ID is not a valid device id ({err}); using the MAC")
            }
        }
    }
    let mut id: String<16> = String::new();
    // Cannot fail: 12 characters into 16.
    let _ = write!(id, "SCALE-{:02X}{:02X}{:02X}", mac[3], mac[4], mac[5]);
    DeviceId::try_from(id.as_str()).unwrap_or_else(|_| unreachable!("MAC-derived id is valid"))
}

/// Logs why the scale cannot run and restarts it after a pause (a flash or radio fault that a
/// reset may clear; looping fast would only wear the flash).
fn fatal(reason: core::fmt::Arguments<'_>) -> ! {
    error!("{reason}; restarting in 10 s");
    let delay = esp_hal::delay::Delay::new();
    delay.delay_millis(10_000);
    warn!("restarting");
    esp_hal::system::software_reset()
}
