//! The scale as one deterministic state machine: events in, actions out.
//!
//! The board (and the simulator, against a virtual load cell) feeds it load-cell samples,
//! battery and RSSI measurements, MQTT connection changes, PUBACKs, messages, BLE writes and
//! the time, then drains [`Scale::poll`] for [`Action`]s: publishes, LED and display changes,
//! BLE notifications, a reboot. It follows rumqtt's split: the protocol logic is here and pure;
//! sockets, pins and radios stay in the caller.
//!
//! Invariants: time is only ever what the caller passes in (monotonic ms, plus an optional
//! epoch offset once the clock is synchronised); a reading leaves the offline ring only on its
//! PUBACK; a command id is run at most once; an expired command never runs; every settings
//! change is persisted before it takes effect. It must never block, allocate or read a clock.

use core::fmt::Write as _;

use heapless::{Deque, String, Vec};
use scalesense_proto::payload::{DeviceState, LAST_WILL_PAYLOAD, Ota, Status, VersionString};
use scalesense_proto::topic::{TopicString, command_filter};
use scalesense_proto::{
    CONTRACT_VERSION, CommandId, CommandName, ContractError, DeviceId, Response, Topic, TopicError,
};

use crate::battery::Battery;
use crate::ble::{self, BleError, BleWrite, LiveWeight};
use crate::calibration::Calibration;
use crate::command::{self, Context, Decision, Effect, Measurement, error_text};
use crate::filter::{Ema, Median, Stability, compensate_temperature};
use crate::num::round;
use crate::reading::{BufferedReading, RSSI_UNKNOWN, ReadingBuilder, ReadingInputs};
use crate::ring::{OFFLINE_CAPACITY, OfflineRing, PublishId};
use crate::settings::{Settings, SettingsStore};

/// How often the board should sample the load cell.
pub const SAMPLE_PERIOD_MS: u64 = 500;
/// Samples in the outlier-rejecting median.
pub const MEDIAN_WINDOW: usize = 5;
/// Smoothing of the moving average (weight of the newest sample).
pub const EMA_ALPHA: f64 = 0.3;
/// A load is stable when it stays within this band…
pub const STABLE_BAND_LBS: f64 = 0.2;
/// …for this long.
pub const STABLE_DWELL_MS: u64 = 3_000;
/// A measurement older than this is not reported (the load cell stopped answering).
pub const MEASUREMENT_MAX_AGE_MS: u64 = 10_000;
/// The first reading after start-up, once the filters have settled.
pub const FIRST_READING_DELAY_MS: u64 = 5_000;
/// Telemetry status period (BRIEF §3: every 5 minutes).
pub const STATUS_PERIOD_MS: u64 = 5 * 60 * 1_000;
/// Readings published but not yet acknowledged, at most.
pub const MAX_IN_FLIGHT: usize = 4;
/// LED half-period while identifying.
pub const IDENTIFY_BLINK_MS: u64 = 500;
/// How long a reboot waits for its response's PUBACK.
pub const REBOOT_GRACE_MS: u64 = 5_000;
/// Largest payload the scale publishes (readings and status are about 250 bytes).
pub const PAYLOAD_CAPACITY: usize = 384;
/// Responses waiting for delivery, at most.
pub const RESPONSE_QUEUE: usize = 4;

/// A payload buffer.
pub type PayloadBuf = Vec<u8, PAYLOAD_CAPACITY>;

/// Who this scale is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub device_id: DeviceId,
    pub firmware_version: VersionString,
}

/// One MQTT publish for the caller to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: TopicString,
    pub payload: PayloadBuf,
    pub qos: u8,
    pub retain: bool,
    /// Report the PUBACK for this publish with [`Scale::on_puback`]; `None`: no need to.
    pub ack: Option<PublishId>,
}

/// What the OLED should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// Normal operation: level (once tared), weight and link state.
    Level {
        level_pct: Option<u8>,
        weight_tenths_lbs: i32,
        online: bool,
        battery_pct: Option<u8>,
    },
    /// Maintenance: live weight and whether it is still.
    Maintenance {
        weight_tenths_lbs: i32,
        stable: bool,
    },
    /// Identify: the device id, big enough to find the scale.
    Identify { device_id: DeviceId },
}

/// Characters per line of a 128×32 OLED with a 6×10 font.
pub const SCREEN_COLUMNS: usize = 21;
/// A rendered screen line.
pub type ScreenLine = String<SCREEN_COLUMNS>;

impl Screen {
    /// The three text lines to draw.
    pub fn lines(&self) -> [ScreenLine; 3] {
        let mut lines: [ScreenLine; 3] = Default::default();
        // Writes beyond the line width are cut: a full line is better than none.
        match self {
            Screen::Level {
                level_pct,
                weight_tenths_lbs,
                online,
                battery_pct,
            } => {
                let _ = match level_pct {
                    Some(p) => write!(lines[0], "Level {p}%"),
                    None => write!(lines[0], "Not tared"),
                };
                let _ = write!(lines[1], "{} lb", Tenths(*weight_tenths_lbs));
                let _ = write!(lines[2], "{}", if *online { "online" } else { "offline" });
                if let Some(b) = battery_pct {
                    let _ = write!(lines[2], " bat {b}%");
                }
            }
            Screen::Maintenance {
                weight_tenths_lbs,
                stable,
            } => {
                let _ = write!(lines[0], "MAINTENANCE");
                let _ = write!(lines[1], "{} lb", Tenths(*weight_tenths_lbs));
                let _ = write!(lines[2], "{}", if *stable { "stable" } else { "settling" });
            }
            Screen::Identify { device_id } => {
                let _ = write!(lines[0], ">> IDENTIFY <<");
                let _ = write!(lines[1], "{device_id}");
            }
        }
        lines
    }
}

/// Formats tenths as a decimal without floating point (`-5` → `-0.5`).
struct Tenths(i32);

impl core::fmt::Display for Tenths {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{}", abs / 10, abs % 10)
    }
}

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Publish(Publish),
    SetLed(bool),
    Display(Screen),
    /// Notify the BLE live-weight characteristic.
    BleLiveWeight(LiveWeight),
    /// Notify the BLE response characteristic with this JSON.
    BleResponse(PayloadBuf),
    /// A firmware update was offered on `keg/ota/{id}`.
    OtaOffered(Ota),
    /// Restart now (the response has been delivered, or its grace period is over).
    Reboot,
}

/// What became of an incoming message or BLE write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Answered; `ok` is the response's verdict.
    Command { id: CommandId, ok: bool },
    /// An id handled before: ignored, nothing sent.
    Duplicate { id: CommandId },
    /// Identify started from BLE.
    Identify,
    /// An OTA offer, handed on as [`Action::OtaOffered`].
    Ota,
}

/// Why an incoming message was not handled.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error("bad topic: {0}")]
    Topic(#[from] TopicError),
    #[error("topic is for another scale")]
    NotForThisScale,
    #[error("the scale does not subscribe to this topic")]
    UnexpectedTopic,
    #[error("payload rejected: {0}")]
    Payload(#[from] ContractError),
    #[error("BLE write rejected: {0}")]
    Ble(#[from] BleError),
}

/// Where a command came from, so its response goes back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Mqtt,
    Ble,
}

#[derive(Debug, Clone)]
struct PendingResponse {
    id: CommandId,
    payload: PayloadBuf,
    in_flight: Option<PublishId>,
}

/// Maintenance mode; it ends by command, or by itself at `until_ms`.
#[derive(Debug, Clone, Copy)]
struct Maintenance {
    until_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct PendingReboot {
    /// The reboot command, whose response should reach the broker first.
    command: CommandId,
    deadline_ms: u64,
    /// The grace period is over: reboot whether or not the response got through.
    overdue: bool,
}

/// The scale. `S` keeps the settings between boots.
#[derive(Debug)]
pub struct Scale<S: SettingsStore> {
    device_id: DeviceId,
    firmware: VersionString,
    store: S,
    settings: Settings,
    builder: ReadingBuilder,
    median: Median<MEDIAN_WINDOW>,
    ema: Ema,
    stability: Stability,
    measurement: Option<Measurement>,
    battery: Option<Battery>,
    rssi: Option<i16>,
    /// `epoch_ms − monotonic_ms`, once the clock is known.
    clock_offset: Option<i64>,
    started_ms: u64,
    now_ms: u64,
    next_reading_ms: u64,
    ring: OfflineRing<BufferedReading, OFFLINE_CAPACITY>,
    responses: Deque<PendingResponse, RESPONSE_QUEUE>,
    connected: bool,
    next_publish_id: u32,
    status_due: bool,
    next_status_ms: u64,
    maintenance: Option<Maintenance>,
    identify_until_ms: Option<u64>,
    reboot: Option<PendingReboot>,
    led_on: bool,
    led_shown: Option<bool>,
    screen_shown: Option<Screen>,
    live_weight_due: Option<LiveWeight>,
    ble_response: Option<PayloadBuf>,
    ota: Option<Ota>,
    save_failures: u32,
}

impl<S: SettingsStore> Scale<S> {
    /// Starts the scale at monotonic `now_ms`: loads settings (defaults on a fresh store),
    /// increments and persists the boot counter.
    pub fn new(config: DeviceConfig, mut store: S, now_ms: u64) -> Result<Self, S::Error> {
        let mut settings = store.load()?.unwrap_or_default();
        settings.boot = settings.boot.saturating_add(1);
        store.save(&settings)?;
        Ok(Self {
            device_id: config.device_id,
            firmware: config.firmware_version,
            store,
            builder: ReadingBuilder::new(settings.boot),
            settings,
            median: Median::new(),
            ema: Ema::new(EMA_ALPHA),
            stability: Stability::new(STABLE_BAND_LBS, STABLE_DWELL_MS),
            measurement: None,
            battery: None,
            rssi: None,
            clock_offset: None,
            started_ms: now_ms,
            now_ms,
            next_reading_ms: now_ms + FIRST_READING_DELAY_MS,
            ring: OfflineRing::new(),
            responses: Deque::new(),
            connected: false,
            next_publish_id: 1,
            status_due: false,
            next_status_ms: now_ms + STATUS_PERIOD_MS,
            maintenance: None,
            identify_until_ms: None,
            reboot: None,
            led_on: false,
            led_shown: None,
            screen_shown: None,
            live_weight_due: None,
            ble_response: None,
            ota: None,
            save_failures: 0,
        })
    }

    // ---- Static facts for the MQTT glue ----

    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// Topic and payload of the last will to register at connect (retained, QoS 1).
    pub fn last_will(&self) -> (TopicString, &'static str) {
        (
            Topic::Status(self.device_id.clone()).write_to(),
            LAST_WILL_PAYLOAD,
        )
    }

    /// Filters to subscribe to after every connect: commands and OTA offers.
    pub fn subscriptions(&self) -> [TopicString; 2] {
        [
            command_filter(&self.device_id),
            Topic::Ota(self.device_id.clone()).write_to(),
        ]
    }

    // ---- Events ----

    /// The clock is known: `epoch_ms` is the wall-clock time at monotonic `now_ms`.
    pub fn on_clock(&mut self, now_ms: u64, epoch_ms: u64) {
        self.advance(now_ms);
        self.clock_offset = Some(epoch_ms as i64 - now_ms as i64);
    }

    /// A raw load-cell sample, with the temperature near the cell if known.
    pub fn on_sample(&mut self, now_ms: u64, raw: i32, temp_c: Option<f64>) {
        self.advance(now_ms);
        let filtered = self.ema.push(f64::from(self.median.push(raw)));
        let calibration = self.settings.calibration.unwrap_or(Calibration::nominal(0));
        let weight_lbs = compensate_temperature(
            calibration.to_lbs(filtered),
            self.settings.temp_coeff,
            temp_c,
            calibration.reference_temp_c,
        );
        let stable = self.stability.push(now_ms, weight_lbs);
        self.measurement = Some(Measurement {
            at_ms: now_ms,
            raw: filtered,
            weight_lbs,
            stable,
            temp_c,
        });
        if self.settings.calibration.is_none() && stable {
            // Power-on zero: a scale never zeroed takes its first still load as the empty
            // platform (factory procedure: first start with nothing on it).
            let mut next = self.settings.clone();
            next.calibration = Some(Calibration::nominal(round(filtered) as i32));
            self.persist(next);
            self.stability.reset();
        }
        if self.maintenance.is_some() {
            self.live_weight_due = self.live_weight();
        }
        self.refresh_outputs();
    }

    /// A battery measurement.
    pub fn on_battery(&mut self, battery: Battery) {
        self.battery = Some(battery);
    }

    /// The Wi-Fi signal strength, dBm.
    pub fn on_rssi(&mut self, rssi: i16) {
        self.rssi = Some(rssi);
    }

    /// The MQTT session is up (and subscribed): send status, resend what is unacknowledged.
    pub fn on_connected(&mut self, now_ms: u64) {
        self.advance(now_ms);
        self.connected = true;
        self.status_due = true;
        self.forget_in_flight();
        self.refresh_outputs();
    }

    /// The MQTT session is gone: nothing is in flight any more.
    pub fn on_disconnected(&mut self, now_ms: u64) {
        self.advance(now_ms);
        self.connected = false;
        self.forget_in_flight();
        self.refresh_outputs();
    }

    /// The broker acknowledged a publish.
    pub fn on_puback(&mut self, id: PublishId) {
        if self.ring.ack(id).is_none() {
            self.responses.retain(|r| r.in_flight != Some(id));
        }
    }

    /// A message on a subscribed topic.
    pub fn on_message(
        &mut self,
        now_ms: u64,
        topic: &str,
        payload: &[u8],
    ) -> Result<Handled, MessageError> {
        self.advance(now_ms);
        let topic = Topic::parse(topic)?;
        if topic.device() != Some(&self.device_id) {
            return Err(MessageError::NotForThisScale);
        }
        match topic {
            Topic::Command { command, .. } => self.command(command, payload, Source::Mqtt),
            Topic::Ota(_) => {
                self.ota = Some(scalesense_proto::decode_ota(payload)?);
                Ok(Handled::Ota)
            }
            _ => Err(MessageError::UnexpectedTopic),
        }
    }

    /// A write to a characteristic of the BLE maintenance service.
    pub fn on_ble_write(
        &mut self,
        now_ms: u64,
        characteristic: u128,
        value: &[u8],
    ) -> Result<Handled, MessageError> {
        self.advance(now_ms);
        match ble::decode_write(characteristic, value)? {
            BleWrite::Identify { duration_s } => {
                let secs = duration_s.map_or(command::DEFAULT_IDENTIFY_S, u32::from);
                self.identify_until_ms = Some(now_ms + u64::from(secs) * 1_000);
                self.refresh_outputs();
                Ok(Handled::Identify)
            }
            BleWrite::Command { name, payload } => self.command(name, payload, Source::Ble),
        }
    }

    /// Runs the timers: readings, status, identify and maintenance ends, reboot grace.
    pub fn tick(&mut self, now_ms: u64) {
        self.advance(now_ms);
        let now = self.now_ms;
        if self.identify_until_ms.is_some_and(|until| now >= until) {
            self.identify_until_ms = None;
        }
        if let Some(Maintenance {
            until_ms: Some(until),
        }) = self.maintenance
            && now >= until
        {
            self.maintenance = None;
            self.status_due = true;
        }
        if now >= self.next_status_ms {
            self.next_status_ms = now + STATUS_PERIOD_MS;
            self.status_due = true;
        }
        if now >= self.next_reading_ms {
            // In maintenance the slot passes without a reading; otherwise a slot with nothing
            // fit to report is retried on the next tick.
            if self.maintenance.is_some() || self.take_reading() {
                self.next_reading_ms = now + self.interval_ms();
            }
        }
        if let Some(reboot) = &mut self.reboot
            && now >= reboot.deadline_ms
        {
            reboot.overdue = true;
        }
        self.refresh_outputs();
    }

    /// The next action to carry out, until `None`. Call after every event and tick.
    pub fn poll(&mut self) -> Option<Action> {
        if let Some(reboot) = &self.reboot {
            let delivered = !self.responses.iter().any(|p| p.id == reboot.command);
            if reboot.overdue || delivered {
                self.reboot = None;
                return Some(Action::Reboot);
            }
        }
        if self.led_shown != Some(self.led_on) {
            self.led_shown = Some(self.led_on);
            return Some(Action::SetLed(self.led_on));
        }
        let screen = self.screen();
        if self.screen_shown.as_ref() != Some(&screen) {
            self.screen_shown = Some(screen.clone());
            return Some(Action::Display(screen));
        }
        if let Some(w) = self.live_weight_due.take() {
            return Some(Action::BleLiveWeight(w));
        }
        if let Some(payload) = self.ble_response.take() {
            return Some(Action::BleResponse(payload));
        }
        if let Some(ota) = self.ota.take() {
            return Some(Action::OtaOffered(ota));
        }
        if !self.connected {
            return None;
        }
        if self.status_due {
            self.status_due = false;
            if let Some(publish) = self.status_publish() {
                return Some(Action::Publish(publish));
            }
        }
        if let Some(publish) = self.next_response_publish() {
            return Some(Action::Publish(publish));
        }
        if self.ring.in_flight() < MAX_IN_FLIGHT {
            let id = self.publish_id();
            if let Some(reading) = self.ring.send_next(id) {
                let mut payload = PayloadBuf::new();
                // Cannot fail: only readings that passed validation enter the ring, and the
                // buffer holds the largest reading.
                if let Ok(n) = self.builder.encode(&reading, payload_space(&mut payload)) {
                    payload.truncate(n);
                    return Some(Action::Publish(Publish {
                        topic: Topic::Reading(self.device_id.clone()).write_to(),
                        payload,
                        qos: 1,
                        retain: false,
                        ack: Some(id),
                    }));
                }
            }
        }
        None
    }

    /// The monotonic time by which [`Self::tick`] must next run (the next reading, status,
    /// LED blink, maintenance end or reboot deadline). Samples are due on their own period,
    /// [`SAMPLE_PERIOD_MS`].
    pub fn next_deadline(&self) -> u64 {
        let mut deadline = self.next_reading_ms.min(self.next_status_ms);
        if let Some(until) = self.identify_until_ms {
            deadline = deadline.min(until).min(self.now_ms + IDENTIFY_BLINK_MS);
        }
        if let Some(Maintenance {
            until_ms: Some(until),
        }) = self.maintenance
        {
            deadline = deadline.min(until);
        }
        if let Some(r) = &self.reboot {
            deadline = deadline.min(r.deadline_ms);
        }
        deadline
    }

    // ---- Read-only state ----

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store itself, for a caller that must reach its device (or a test its knobs).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn boot(&self) -> u32 {
        self.builder.boot()
    }

    pub fn measurement(&self) -> Option<&Measurement> {
        self.measurement.as_ref()
    }

    pub fn level_pct(&self) -> Option<f64> {
        let m = self.measurement?;
        let calibration = self.settings.calibration?;
        self.settings.tare.level_pct(m.weight_lbs, &calibration)
    }

    pub fn is_maintenance(&self) -> bool {
        self.maintenance.is_some()
    }

    pub fn is_identifying(&self) -> bool {
        self.identify_until_ms.is_some()
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Readings waiting in the offline ring (in flight included).
    pub fn buffered_readings(&self) -> usize {
        self.ring.len()
    }

    /// Settings writes that failed since start-up.
    pub fn save_failures(&self) -> u32 {
        self.save_failures
    }

    /// The epoch time at the latest monotonic time seen, once the clock is known.
    pub fn epoch_ms(&self) -> Option<u64> {
        let offset = self.clock_offset?;
        u64::try_from(self.now_ms as i64 + offset).ok()
    }

    /// The value of the BLE live-weight characteristic.
    pub fn live_weight(&self) -> Option<LiveWeight> {
        let m = self.measurement?;
        Some(LiveWeight {
            weight_lbs: m.weight_lbs as f32,
            stable: m.stable,
            maintenance: self.maintenance.is_some(),
            level_pct: self.level_pct().map(|p| p as f32),
        })
    }

    /// The current status payload (also the BLE status characteristic's value).
    pub fn status(&self) -> Status {
        Status {
            v: CONTRACT_VERSION,
            state: DeviceState::Online,
            fw: Some(self.firmware.clone()),
            maintenance: self.maintenance.is_some(),
            uptime_s: Some(((self.now_ms - self.started_ms) / 1_000) as u32),
            battery_v: self.battery.map(|b| round_to(b.volts, 1_000.0)),
            battery_pct: self.battery.map(|b| round_to(b.percent, 10.0)),
            rssi: self.rssi,
            dropped_readings: None,
            buffered_readings: Some(self.ring.len() as u32),
            boot: Some(self.builder.boot()),
        }
    }

    // ---- Internals ----

    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn interval_ms(&self) -> u64 {
        u64::from(self.settings.interval_s) * 1_000
    }

    fn publish_id(&mut self) -> PublishId {
        let id = PublishId(self.next_publish_id);
        self.next_publish_id = self.next_publish_id.wrapping_add(1).max(1);
        id
    }

    fn forget_in_flight(&mut self) {
        self.ring.requeue_in_flight();
        for r in &mut self.responses {
            r.in_flight = None;
        }
    }

    /// Persists `next` and adopts it; on a storage failure keeps the old settings.
    fn persist(&mut self, next: Settings) -> bool {
        if self.store.save(&next).is_ok() {
            self.settings = next;
            true
        } else {
            self.save_failures = self.save_failures.saturating_add(1);
            false
        }
    }

    /// Takes a reading into the ring; `false` when there is nothing fit to report yet.
    fn take_reading(&mut self) -> bool {
        let (Some(m), Some(battery), Some(calibration)) =
            (self.measurement, self.battery, self.settings.calibration)
        else {
            return false;
        };
        if self.now_ms.saturating_sub(m.at_ms) > MEASUREMENT_MAX_AGE_MS {
            return false;
        }
        let inputs = ReadingInputs {
            ts: self.epoch_ms(),
            weight_lbs: m.weight_lbs,
            level_pct: self.settings.tare.level_pct(m.weight_lbs, &calibration),
            battery,
            rssi: self.rssi.unwrap_or(RSSI_UNKNOWN),
            stable: m.stable,
            tare_status: self.settings.tare.status(),
        };
        let reading = self.builder.take(&inputs);
        // A weight outside the contract (an overloaded platform) cannot be published; the
        // slot passes and the display still shows the load.
        if self.builder.validate(&reading).is_ok() {
            self.ring.push(reading);
        }
        true
    }

    fn command(
        &mut self,
        name: CommandName,
        payload: &[u8],
        source: Source,
    ) -> Result<Handled, MessageError> {
        let ctx = Context {
            now_ms: self.now_ms,
            epoch_ms: self.epoch_ms(),
            settings: &self.settings,
            measurement: self.measurement.as_ref(),
        };
        let (mut response, effect) = match command::handle(name, payload, &ctx)? {
            Decision::Duplicate(id) => return Ok(Handled::Duplicate { id }),
            Decision::Respond { response, effect } => (response, effect),
        };
        let id = response.id.clone();
        let mut next = effect.apply_to(&self.settings);
        next.remember(id.clone());
        let interval_changed = next.interval_s != self.settings.interval_s;
        if self.persist(next) {
            if interval_changed {
                // A shorter interval takes effect now, not after the old one runs out.
                self.next_reading_ms = self.next_reading_ms.min(self.now_ms + self.interval_ms());
            }
            self.apply(&effect, &id);
        } else {
            // The effect is dropped, but the id is remembered in RAM so a redelivery does
            // not run it behind the error's back.
            self.settings.remember(id.clone());
            response = Response {
                ok: false,
                result: None,
                error: Some(error_text(format_args!("could not save settings"))),
                ..response
            };
        }
        let ok = response.ok;
        let encoded = encode_response(&response);
        match source {
            Source::Ble => self.ble_response = Some(encoded),
            Source::Mqtt => {
                if self.responses.is_full() {
                    self.responses.pop_front();
                }
                // Cannot fail: room was made above.
                let _ = self.responses.push_back(PendingResponse {
                    id: id.clone(),
                    payload: encoded,
                    in_flight: None,
                });
            }
        }
        self.refresh_outputs();
        Ok(Handled::Command { id, ok })
    }

    fn apply(&mut self, effect: &Effect, id: &CommandId) {
        match effect {
            Effect::Nothing
            | Effect::TareEmpty(_)
            | Effect::TareFull(_)
            | Effect::Calibrate(_)
            | Effect::Configure { .. } => {}
            Effect::Identify { until_ms } => self.identify_until_ms = Some(*until_ms),
            Effect::MaintenanceEnter { until_ms } => {
                self.maintenance = Some(Maintenance {
                    until_ms: *until_ms,
                });
                self.status_due = true;
            }
            Effect::MaintenanceExit => {
                self.maintenance = None;
                self.status_due = true;
                self.next_reading_ms = self.now_ms;
            }
            Effect::Reboot => {
                self.reboot = Some(PendingReboot {
                    command: id.clone(),
                    deadline_ms: self.now_ms + REBOOT_GRACE_MS,
                    overdue: false,
                });
            }
        }
    }

    fn next_response_publish(&mut self) -> Option<Publish> {
        let id = PublishId(self.next_publish_id);
        let pending = self.responses.iter_mut().find(|r| r.in_flight.is_none())?;
        pending.in_flight = Some(id);
        let payload = pending.payload.clone();
        self.publish_id();
        Some(Publish {
            topic: Topic::Response(self.device_id.clone()).write_to(),
            payload,
            qos: 1,
            retain: false,
            ack: Some(id),
        })
    }

    fn status_publish(&mut self) -> Option<Publish> {
        let mut status = self.status();
        let dropped = self.ring.take_dropped();
        status.dropped_readings = (dropped > 0).then_some(dropped);
        let mut payload = PayloadBuf::new();
        let n = scalesense_proto::encode(&status, payload_space(&mut payload)).ok()?;
        payload.truncate(n);
        Some(Publish {
            topic: Topic::Status(self.device_id.clone()).write_to(),
            payload,
            qos: 1,
            retain: true,
            ack: None,
        })
    }

    fn screen(&self) -> Screen {
        let weight_tenths_lbs = self
            .measurement
            .map_or(0, |m| round(m.weight_lbs * 10.0) as i32);
        if self.identify_until_ms.is_some() {
            Screen::Identify {
                device_id: self.device_id.clone(),
            }
        } else if self.maintenance.is_some() {
            Screen::Maintenance {
                weight_tenths_lbs,
                stable: self.measurement.is_some_and(|m| m.stable),
            }
        } else {
            Screen::Level {
                level_pct: self.level_pct().map(|p| round(p) as u8),
                weight_tenths_lbs,
                online: self.connected,
                battery_pct: self.battery.map(|b| round(b.percent) as u8),
            }
        }
    }

    fn refresh_outputs(&mut self) {
        // Counting half-periods back from the end (rounded up) makes every identify start
        // with the LED on, whatever its length.
        self.led_on = self.identify_until_ms.is_some_and(|until| {
            until
                .saturating_sub(self.now_ms)
                .div_ceil(IDENTIFY_BLINK_MS)
                .is_multiple_of(2)
        });
    }
}

/// Rounds to `1 / scale` (`round_to(3.9412, 1000.0)` = 3.941).
fn round_to(x: f64, scale: f64) -> f64 {
    round(x * scale) / scale
}

/// The whole capacity of `buf` as a slice to encode into.
fn payload_space(buf: &mut PayloadBuf) -> &mut [u8] {
    // Cannot fail: resizing to the capacity always fits.
    let _ = buf.resize(PAYLOAD_CAPACITY, 0);
    buf.as_mut_slice()
}

/// Encodes a response; one that breaks the contract is replaced by an error response naming
/// the problem, so the server still hears back on that id.
fn encode_response(response: &Response) -> PayloadBuf {
    let mut payload = PayloadBuf::new();
    let n = match scalesense_proto::encode(response, payload_space(&mut payload)) {
        Ok(n) => n,
        Err(err) => {
            let fallback = Response {
                ok: false,
                result: None,
                error: Some(error_text(format_args!("{err}"))),
                ..response.clone()
            };
            scalesense_proto::encode(&fallback, payload_space(&mut payload)).unwrap_or(0)
        }
    };
    payload.truncate(n);
    payload
}
