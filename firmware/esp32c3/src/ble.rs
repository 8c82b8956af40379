//! The BLE maintenance service (`docs/ble.md`) on trouble-host.
//!
//! The GATT table is built from the UUIDs in `scalesense_firmware_core::ble`, so the board, the
//! docs and the phone app share one definition. This task only moves bytes: writes go to the
//! main loop through [`WRITES`] (the core decodes and runs them), and the main loop hands back
//! live weight, responses and status through the signals below. One phone at a time; no
//! pairing (seed 000).

use embassy_futures::select::{Either4, select4};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::signal::Signal;
use esp_hal::peripherals::BT;
use esp_radio::ble::controller::BleConnector;
use heapless::Vec;
use log::{info, warn};
use scalesense_firmware_core::ble as spec;
use static_cell::StaticCell;
use trouble_host::prelude::*;

/// A characteristic value: a command, response or status JSON.
pub type Value = Vec<u8, { spec::MAX_VALUE_LEN }>;

/// A write from the phone, for the core (`Scale::on_ble_write`).
pub struct Write {
    pub characteristic: u128,
    pub value: Value,
}

/// Writes waiting for the main loop.
pub static WRITES: Channel<CriticalSectionRawMutex, Write, 4> = Channel::new();
/// The newest live-weight value to notify.
pub static LIVE_WEIGHT: Signal<CriticalSectionRawMutex, [u8; spec::LIVE_WEIGHT_LEN]> =
    Signal::new();
/// The newest response JSON to store and notify.
pub static RESPONSE: Signal<CriticalSectionRawMutex, Value> = Signal::new();
/// The newest status JSON to store for reads.
pub static STATUS: Signal<CriticalSectionRawMutex, Value> = Signal::new();

const CONNECTIONS: usize = 1;
/// Signalling and ATT.
const L2CAP_CHANNELS: usize = 2;
/// HCI command slots of the external controller.
const HCI_SLOTS: usize = 20;

type Controller = ExternalController<BleConnector<'static>, HCI_SLOTS>;
type Resources = HostResources<Controller, DefaultPacketPool, CONNECTIONS, L2CAP_CHANNELS>;

#[gatt_server]
struct Server {
    scale: ScaleService,
}

#[gatt_service(uuid = spec::SERVICE_UUID)]
struct ScaleService {
    #[characteristic(uuid = spec::LIVE_WEIGHT_UUID, read, notify)]
    live_weight: [u8; spec::LIVE_WEIGHT_LEN],
    #[characteristic(uuid = spec::IDENTIFY_UUID, write)]
    identify: Vec<u8, 2>,
    #[characteristic(uuid = spec::TARE_EMPTY_UUID, write)]
    tare_empty: Value,
    #[characteristic(uuid = spec::TARE_FULL_UUID, write)]
    tare_full: Value,
    #[characteristic(uuid = spec::CALIBRATE_UUID, write)]
    calibrate: Value,
    #[characteristic(uuid = spec::RESPONSE_UUID, read, notify)]
    response: Value,
    #[characteristic(uuid = spec::STATUS_UUID, read)]
    status: Value,
}

static RESOURCES: StaticCell<Resources> = StaticCell::new();
static NAME: StaticCell<heapless::String<32>> = StaticCell::new();

/// Starts the BLE task, advertising as `name` (the device id).
pub fn start(spawner: &embassy_executor::Spawner, bt: BT<'static>, name: &str, mac: [u8; 6]) {
    let connector = match BleConnector::new(bt, Default::default()) {
        Ok(connector) => connector,
        Err(err) => {
            warn!("BLE unavailable: {err:?}");
            return;
        }
    };
    let mut stored = heapless::String::new();
    // Cannot fail: device ids are at most 32 bytes.
    let _ = stored.push_str(name);
    let name: &'static str = NAME.init(stored).as_str();
    match ble_task(ExternalController::new(connector), name, mac) {
        Ok(task) => spawner.spawn(task),
        Err(_) => warn!("BLE task could not be spawned"),
    }
}

#[embassy_executor::task]
async fn ble_task(controller: Controller, name: &'static str, mac: [u8; 6]) {
    // A static random address derived from the Wi-Fi MAC (the two top bits mark it static).
    let mut addr = mac;
    addr[5] |= 0xC0;
    let stack = trouble_host::new(controller, RESOURCES.init(HostResources::new()))
        .set_random_address(Address::random(addr))
        .build();
    let server = match Server::new_with_config(GapConfig::Peripheral(PeripheralConfig {
        name,
        appearance: &appearance::UNKNOWN,
    })) {
        Ok(server) => server,
        Err(err) => {
            warn!("BLE GATT table: {err}");
            return;
        }
    };
    let mut runner = stack.runner();
    let mut peripheral = stack.peripheral();
    let result = embassy_futures::join::join(runner.run(), async {
        loop {
            if serve_one(&mut peripheral, &server, name).await.is_err() {
                embassy_time::Timer::after_secs(1).await;
            }
        }
    })
    .await;
    warn!("BLE host stopped: {:?}", result.0);
}

/// Advertises, accepts one phone and serves it until it disconnects. Errors are logged here;
/// `Err` tells the caller to pause before advertising again.
async fn serve_one(
    peripheral: &mut Peripheral<'_, Controller, DefaultPacketPool>,
    server: &Server<'_>,
    name: &str,
) -> Result<(), ()> {
    let service_uuid = [spec::uuid_le_bytes(spec::SERVICE_UUID)];
    let mut adv_data = [0u8; 31];
    let adv_len = AdStructure::encode_slice(
        &[
            AdStructure::Flags(LE_GENERAL_DISCOVERABLE | BR_EDR_NOT_SUPPORTED),
            AdStructure::CompleteServiceUuids128(&service_uuid),
        ],
        &mut adv_data,
    )
    .map_err(|err| warn!("BLE advertising data: {err:?}"))?;
    let mut scan_data = [0u8; 31];
    let scan_len = AdStructure::encode_slice(
        &[AdStructure::CompleteLocalName(name.as_bytes())],
        &mut scan_data,
    )
    .map_err(|err| warn!("BLE scan data: {err:?}"))?;
    let advertiser = peripheral
        .advertise(
            &AdvertisementParameters::default(),
            Advertisement::ConnectableScannableUndirected {
                adv_data: &adv_data[..adv_len],
                scan_data: &scan_data[..scan_len],
            },
        )
        .await
        .map_err(|err| warn!("BLE advertise: {err:?}"))?;
    let conn = advertiser
        .accept()
        .await
        .map_err(|err| warn!("BLE accept: {err:?}"))?
        .with_attribute_server(server)
        .map_err(|err| warn!("BLE GATT: {err:?}"))?;
    info!("BLE phone connected");
    let service = &server.scale;
    loop {
        match select4(
            conn.next(),
            LIVE_WEIGHT.wait(),
            RESPONSE.wait(),
            STATUS.wait(),
        )
        .await
        {
            Either4::First(GattConnectionEvent::Disconnected { reason }) => {
                info!("BLE phone disconnected: {reason:?}");
                return Ok(());
            }
            Either4::First(GattConnectionEvent::Gatt { event }) => {
                if let GattEvent::Write(write) = &event {
                    let handle = write.handle();
                    let characteristic = [
                        (service.identify.handle, spec::IDENTIFY_UUID),
                        (service.tare_empty.handle, spec::TARE_EMPTY_UUID),
                        (service.tare_full.handle, spec::TARE_FULL_UUID),
                        (service.calibrate.handle, spec::CALIBRATE_UUID),
                    ]
                    .into_iter()
                    .find_map(|(h, uuid)| (h == handle).then_some(uuid));
                    if let Some(characteristic) = characteristic {
                        let value = write.with_data(|offset, data| {
                            (offset == 0)
                                .then(|| Value::from_slice(data).ok())
                                .flatten()
                        });
                        let sent = value.is_some_and(|value| {
                            WRITES
                                .try_send(Write {
                                    characteristic,
                                    value,
                                })
                                .is_ok()
                        });
                        if !sent {
                            warn!("BLE write dropped (too long, offset, or queue full)");
                        }
                    }
                }
                match event.accept() {
                    Ok(reply) => reply.send().await,
                    Err(err) => warn!("BLE reply: {err:?}"),
                }
            }
            Either4::First(_) => {}
            Either4::Second(value) => {
                let _ = service.live_weight.notify(&conn, &value, true).await;
            }
            Either4::Third(value) => {
                let _ = service.response.notify(&conn, &value, true).await;
            }
            Either4::Fourth(value) => {
                let _ = service.status.set(server, &value);
            }
        }
    }
}
