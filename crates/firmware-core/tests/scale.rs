//! The scale state machine driven as the simulator and the board drive it: samples, time,
//! connection events, messages in; actions out. Payloads are decoded back with proto.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;

use scalesense_firmware_core::battery::Battery;
use scalesense_firmware_core::ble::{self, LiveWeight};
use scalesense_firmware_core::ring::{OFFLINE_CAPACITY, PublishId};
use scalesense_firmware_core::scale::SAMPLE_PERIOD_MS;
use scalesense_firmware_core::settings::{MemoryStore, Settings, SettingsStore};
use scalesense_firmware_core::{
    Action, DeviceConfig, Handled, MessageError, Publish, Scale, Screen,
};
use scalesense_proto::payload::{DeviceState, TareStatus, VersionString};
use scalesense_proto::{CommandId, DeviceId, decode_response, decode_status};

const DEVICE: &str = "SCALE-0042";
/// Epoch ms at monotonic 0.
const EPOCH0: u64 = 1_773_835_200_000;
const ZERO: i32 = 50_000;
/// Counts per pound of the virtual cell.
const CELL: f64 = 4_000.0;

fn config() -> DeviceConfig {
    DeviceConfig {
        device_id: DeviceId::try_from(DEVICE).unwrap(),
        firmware_version: VersionString::try_from("0.1.0").unwrap(),
    }
}

/// A scale on a virtual load cell, with a clock.
struct Rig<S: SettingsStore> {
    scale: Scale<S>,
    now: u64,
    load_lbs: f64,
}

impl Rig<MemoryStore> {
    fn new() -> Self {
        Self::with_store(MemoryStore::new())
    }
}

impl<S: SettingsStore> Rig<S> {
    fn with_store(store: S) -> Self {
        let mut scale = Scale::new(config(), store, 0).unwrap();
        scale.on_clock(0, EPOCH0);
        scale.on_battery(Battery::from_cell_volts(3.94));
        scale.on_rssi(-61);
        Self {
            scale,
            now: 0,
            load_lbs: 0.0,
        }
    }

    fn raw(&self) -> i32 {
        ZERO + (self.load_lbs * CELL).round() as i32
    }

    /// Samples every 500 ms for `ms`, ticking and draining actions as the board loop does;
    /// the broker acknowledges every publish at once.
    fn run_for(&mut self, ms: u64) -> Vec<Action> {
        let end = self.now + ms;
        let mut actions = Vec::new();
        while self.now < end {
            self.now += SAMPLE_PERIOD_MS;
            self.scale.on_sample(self.now, self.raw(), None);
            self.scale.tick(self.now);
            let step = self.drain();
            self.ack_all(&step);
            actions.extend(step);
        }
        actions
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.scale.poll()).collect()
    }

    fn connect(&mut self) -> Vec<Action> {
        self.scale.on_connected(self.now);
        self.drain()
    }

    fn command(&mut self, name: &str, id: &str, params: &str) -> Result<Handled, MessageError> {
        let epoch = EPOCH0 + self.now;
        let json = format!(
            r#"{{"v":1,"id":"{id}","params":{params},"issued_at":{},"expires_at":{}}}"#,
            epoch - 1_000,
            epoch + 60_000
        );
        self.scale.on_message(
            self.now,
            &format!("keg/command/{DEVICE}/{name}"),
            json.as_bytes(),
        )
    }

    /// Acknowledges every publish that asks for it.
    fn ack_all(&mut self, actions: &[Action]) {
        for p in publishes(actions) {
            if let Some(id) = p.ack {
                self.scale.on_puback(id);
            }
        }
    }
}

fn publishes(actions: &[Action]) -> Vec<&Publish> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn on_topic<'a>(actions: &'a [Action], topic: &str) -> Vec<&'a Publish> {
    publishes(actions)
        .into_iter()
        .filter(|p| p.topic.as_str() == topic)
        .collect()
}

fn readings(actions: &[Action]) -> Vec<scalesense_proto::Reading> {
    on_topic(actions, &format!("keg/readings/{DEVICE}"))
        .into_iter()
        .map(|p| scalesense_proto::decode_reading(&p.payload).unwrap())
        .collect()
}

fn responses(actions: &[Action]) -> Vec<scalesense_proto::Response> {
    on_topic(actions, &format!("keg/response/{DEVICE}"))
        .into_iter()
        .map(|p| decode_response(&p.payload).unwrap())
        .collect()
}

#[test]
fn boot_counter_is_persisted_and_incremented() {
    let mut store = MemoryStore::new();
    let first = Scale::new(config(), &mut store, 0).unwrap();
    assert_eq!(first.boot(), 1);
    drop(first);
    let second = Scale::new(config(), &mut store, 0).unwrap();
    assert_eq!(second.boot(), 2);
    assert_eq!(store.stored().unwrap().boot, 2);
}

#[test]
fn mqtt_glue_facts() {
    let rig = Rig::new();
    let (topic, payload) = rig.scale.last_will();
    assert_eq!(topic.as_str(), "keg/status/SCALE-0042");
    assert_eq!(payload, r#"{"v":1,"state":"offline"}"#);
    let subs = rig.scale.subscriptions();
    assert_eq!(subs[0].as_str(), "keg/command/SCALE-0042/+");
    assert_eq!(subs[1].as_str(), "keg/ota/SCALE-0042");
}

#[test]
fn zeroes_at_power_on_then_reports_once_a_minute() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    let zero = rig.scale.settings().calibration.unwrap().zero_offset;
    assert!((zero - ZERO).abs() <= 1, "power-on zero {zero}");
    let online = rig.connect();
    let status = on_topic(&online, "keg/status/SCALE-0042");
    assert_eq!(status.len(), 1);
    assert!(status[0].retain);
    let status = decode_status(&status[0].payload).unwrap();
    assert_eq!(status.state, DeviceState::Online);
    assert_eq!(status.boot, Some(1));
    assert!(!status.maintenance);
    assert_eq!(status.fw.as_deref(), Some("0.1.0"));

    rig.load_lbs = 30.0;
    let actions = rig.run_for(120_000);
    let got = readings(&actions);
    assert_eq!(got.len(), 2, "two minutes, two readings");
    assert_eq!(got[0].boot, 1);
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        // seq 0 went into the ring before the connect; it was sent then.
        vec![1, 2]
    );
    // Nominal factor (5 000 counts/lb) on a 4 000 counts/lb cell: 30 lb reads 24 lb.
    assert!(
        (got[1].weight_lbs - 24.0).abs() < 0.05,
        "{}",
        got[1].weight_lbs
    );
    assert!(got[1].stable);
    assert_eq!(got[1].tare_status, TareStatus::None);
    assert_eq!(got[1].level_pct, None);
    assert!((got[1].battery_v - 3.94).abs() < 1e-9);
    assert_eq!(got[1].rssi, -61);
    assert!(got[1].ts.unwrap() >= EPOCH0 + 120_000);
}

#[test]
fn offline_readings_are_sent_oldest_first_and_kept_until_acked() {
    let mut rig = Rig::new();
    rig.load_lbs = 10.0;
    let offline = rig.run_for(5 * 60_000);
    assert!(
        publishes(&offline).is_empty(),
        "nothing is sent while offline"
    );
    assert_eq!(rig.scale.buffered_readings(), 5);

    let first = rig.connect();
    let sent = readings(&first);
    // At most four in flight before any PUBACK.
    assert_eq!(
        sent.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // The connection drops before any PUBACK: all five are still buffered.
    rig.scale.on_disconnected(rig.now);
    assert_eq!(rig.scale.buffered_readings(), 5);

    let again = rig.connect();
    let resent = readings(&again);
    assert_eq!(
        resent.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    rig.ack_all(&again);
    let rest = rig.drain();
    assert_eq!(
        readings(&rest).iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![4]
    );
    rig.ack_all(&rest);
    assert_eq!(rig.scale.buffered_readings(), 0);
    // A stale PUBACK changes nothing.
    rig.scale.on_puback(PublishId(1));
    assert_eq!(rig.scale.buffered_readings(), 0);
}

#[test]
fn a_full_ring_drops_the_oldest_and_says_so_in_status() {
    let mut rig = Rig::new();
    let slots = OFFLINE_CAPACITY as u64 + 10;
    rig.run_for(slots * 60_000);
    assert_eq!(rig.scale.buffered_readings(), OFFLINE_CAPACITY);
    let actions = rig.connect();
    let status = decode_status(&on_topic(&actions, "keg/status/SCALE-0042")[0].payload).unwrap();
    assert_eq!(status.buffered_readings, Some(OFFLINE_CAPACITY as u32));
    let dropped = status.dropped_readings.unwrap();
    assert!((9..=11).contains(&dropped), "dropped {dropped}");
    let first = readings(&actions)[0].seq;
    assert_eq!(first, dropped, "the oldest readings are the ones dropped");
}

#[test]
fn tare_commands_set_level_and_are_persisted() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.connect();
    rig.load_lbs = 22.0;
    rig.run_for(15_000);
    let handled = rig.command("tare_empty", "cmd-e", "{}").unwrap();
    assert_eq!(
        handled,
        Handled::Command {
            id: CommandId::try_from("cmd-e").unwrap(),
            ok: true
        }
    );
    let actions = rig.drain();
    let response = &responses(&actions)[0];
    assert!(response.ok);
    let empty = response.result.as_ref().unwrap().empty_lbs.unwrap();
    assert!((empty - 22.0 * CELL / 5_000.0).abs() < 0.05, "{empty}");

    rig.load_lbs = 87.0;
    rig.run_for(15_000);
    rig.command("tare_full", "cmd-f", "{}").unwrap();
    rig.load_lbs = 54.5;
    let actions = rig.run_for(60_000);
    let r = readings(&actions).pop().unwrap();
    assert_eq!(r.tare_status, TareStatus::Complete);
    assert!(
        (r.level_pct.unwrap() - 50.0).abs() < 0.1,
        "{:?}",
        r.level_pct
    );
    let stored = rig.scale.store().stored().unwrap();
    assert!(stored.tare.empty.is_some() && stored.tare.full.is_some());
    assert!(stored.has_seen(&CommandId::try_from("cmd-f").unwrap()));
}

#[test]
fn a_redelivered_command_runs_once_even_after_reboot() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.connect();
    rig.command("identify", "cmd-1", "{}").unwrap();
    assert_eq!(responses(&rig.drain()).len(), 1);
    assert_eq!(
        rig.command("identify", "cmd-1", "{}").unwrap(),
        Handled::Duplicate {
            id: CommandId::try_from("cmd-1").unwrap()
        }
    );
    assert!(responses(&rig.drain()).is_empty());

    // Reboot with the same settings: the retained command arrives again and is ignored.
    let settings: Settings = rig.scale.store().stored().unwrap().clone();
    let mut after = Rig::with_store(MemoryStore::with(settings));
    assert_eq!(after.scale.boot(), 2);
    after.connect();
    assert!(matches!(
        after.command("identify", "cmd-1", "{}").unwrap(),
        Handled::Duplicate { .. }
    ));
    assert!(!after.scale.is_identifying());
}

#[test]
fn expired_command_gets_an_error_and_does_nothing() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.connect();
    let epoch = EPOCH0 + rig.now;
    let json = format!(
        r#"{{"v":1,"id":"late","issued_at":{},"expires_at":{}}}"#,
        epoch - 20_000,
        epoch - 10_000
    );
    let handled = rig
        .scale
        .on_message(rig.now, "keg/command/SCALE-0042/reboot", json.as_bytes())
        .unwrap();
    assert!(matches!(handled, Handled::Command { ok: false, .. }));
    let actions = rig.run_for(10_000);
    let r = &responses(&actions)[0];
    assert!(r.error.as_ref().unwrap().starts_with("expired"));
    rig.ack_all(&actions);
    assert!(!rig.run_for(10_000).contains(&Action::Reboot));
}

#[test]
fn maintenance_pauses_readings_and_streams_live_weight() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.connect();
    rig.command("maintenance_enter", "m-1", r#"{"duration_s":600}"#)
        .unwrap();
    let actions = rig.run_for(3 * 60_000);
    let status = decode_status(&on_topic(&actions, "keg/status/SCALE-0042")[0].payload).unwrap();
    assert!(status.maintenance);
    assert!(readings(&actions).is_empty(), "no readings in maintenance");
    let live: Vec<&LiveWeight> = actions
        .iter()
        .filter_map(|a| match a {
            Action::BleLiveWeight(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(live.len(), 3 * 60_000 / SAMPLE_PERIOD_MS as usize);
    assert!(live.iter().all(|w| w.maintenance));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Display(Screen::Maintenance { .. })))
    );

    rig.command("maintenance_exit", "m-2", "{}").unwrap();
    let actions = rig.run_for(1_000);
    assert_eq!(readings(&actions).len(), 1, "readings resume at once");
    assert!(
        !decode_status(&on_topic(&actions, "keg/status/SCALE-0042")[0].payload)
            .unwrap()
            .maintenance
    );
}

#[test]
fn maintenance_ends_by_itself_after_its_duration() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.command("maintenance_enter", "m-1", r#"{"duration_s":60}"#)
        .unwrap();
    assert!(rig.scale.is_maintenance());
    rig.run_for(61_000);
    assert!(!rig.scale.is_maintenance());
}

#[test]
fn identify_blinks_the_led_and_shows_the_id() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.command("identify", "i-1", r#"{"duration_s":3}"#)
        .unwrap();
    let mut actions = rig.drain();
    actions.extend(rig.run_for(4_000));
    let leds: Vec<bool> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SetLed(on) => Some(*on),
            _ => None,
        })
        .collect();
    // On first, alternating every 500 ms for 3 s, then off.
    assert_eq!(leds, vec![true, false, true, false, true, false]);
    assert!(actions.contains(&Action::Display(Screen::Identify {
        device_id: DeviceId::try_from(DEVICE).unwrap()
    })));
    assert!(!rig.scale.is_identifying());
}

#[test]
fn reboot_waits_for_its_response_to_be_acknowledged() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.connect();
    rig.command("reboot", "r-1", "{}").unwrap();
    let actions = rig.drain();
    assert!(!actions.contains(&Action::Reboot));
    let response = on_topic(&actions, "keg/response/SCALE-0042")[0];
    rig.scale.on_puback(response.ack.unwrap());
    assert_eq!(rig.drain(), vec![Action::Reboot]);

    // Without a PUBACK the reboot goes ahead after the grace period.
    let mut offline = Rig::new();
    offline.run_for(10_000);
    offline.command("reboot", "r-2", "{}").unwrap();
    assert!(!offline.run_for(4_000).contains(&Action::Reboot));
    assert!(offline.run_for(2_000).contains(&Action::Reboot));
}

#[test]
fn calibrate_then_weights_are_true() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.connect();
    rig.load_lbs = 20.0;
    rig.run_for(15_000);
    rig.command("calibrate", "c-1", r#"{"known_weight_lbs":20}"#)
        .unwrap();
    let actions = rig.drain();
    let result = responses(&actions)[0].result.clone().unwrap();
    assert!(
        (result.scale_factor.unwrap() - CELL).abs() < 5.0,
        "{result:?}"
    );
    assert_eq!(
        result.drift_pct, None,
        "first calibration has nothing to drift from"
    );
    rig.load_lbs = 61.0;
    let actions = rig.run_for(60_000);
    let r = readings(&actions).pop().unwrap();
    assert!((r.weight_lbs - 61.0).abs() < 0.05, "{}", r.weight_lbs);
}

#[test]
fn set_config_changes_the_interval() {
    let mut rig = Rig::new();
    rig.run_for(10_000);
    rig.connect();
    rig.command("set_config", "s-1", r#"{"interval_s":10}"#)
        .unwrap();
    assert_eq!(rig.scale.settings().interval_s, 10);
    let actions = rig.run_for(60_000);
    let n = readings(&actions).len();
    assert!((5..=7).contains(&n), "{n} readings in a minute at 10 s");
}

#[test]
fn messages_for_other_scales_or_topics_are_refused() {
    let mut rig = Rig::new();
    assert_eq!(
        rig.scale
            .on_message(0, "keg/command/SCALE-0001/reboot", b"{}"),
        Err(MessageError::NotForThisScale)
    );
    assert_eq!(
        rig.scale.on_message(0, "keg/readings/SCALE-0042", b"{}"),
        Err(MessageError::UnexpectedTopic)
    );
    assert!(matches!(
        rig.scale
            .on_message(0, "keg/command/SCALE-0042/format", b"{}"),
        Err(MessageError::Topic(_))
    ));
    assert!(matches!(
        rig.scale
            .on_message(0, "keg/command/SCALE-0042/reboot", b"garbage"),
        Err(MessageError::Payload(_))
    ));
}

#[test]
fn ota_offers_are_handed_to_the_board() {
    let mut rig = Rig::new();
    let ota = format!(
        r#"{{"v":1,"job_id":"job-1","version":"0.2.0","url":"http://gw.local/fw.bin","sha256":"{}","size":800000}}"#,
        "ab".repeat(32)
    );
    assert_eq!(
        rig.scale
            .on_message(0, "keg/ota/SCALE-0042", ota.as_bytes()),
        Ok(Handled::Ota)
    );
    let actions = rig.drain();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::OtaOffered(o) if o.version.as_str() == "0.2.0"))
    );
}

#[test]
fn ble_tare_answers_over_ble_and_identify_needs_no_json() {
    let mut rig = Rig::new();
    rig.load_lbs = 0.0;
    rig.run_for(10_000);
    rig.connect();
    rig.load_lbs = 16.5;
    rig.run_for(15_000);
    let epoch = EPOCH0 + rig.now;
    let json = format!(
        r#"{{"v":1,"id":"ble-1","issued_at":{},"expires_at":{}}}"#,
        epoch - 1_000,
        epoch + 60_000
    );
    let handled = rig
        .scale
        .on_ble_write(rig.now, ble::TARE_EMPTY_UUID, json.as_bytes())
        .unwrap();
    assert!(matches!(handled, Handled::Command { ok: true, .. }));
    let actions = rig.drain();
    let payload = actions
        .iter()
        .find_map(|a| match a {
            Action::BleResponse(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    let response = decode_response(&payload).unwrap();
    assert_eq!(response.id.as_str(), "ble-1");
    assert!(response.ok);
    assert!(
        responses(&actions).is_empty(),
        "BLE answers go back over BLE only"
    );

    assert_eq!(
        rig.scale
            .on_ble_write(rig.now, ble::IDENTIFY_UUID, &5u16.to_le_bytes()),
        Ok(Handled::Identify)
    );
    assert!(rig.scale.is_identifying());
    assert!(matches!(
        rig.scale.on_ble_write(rig.now, ble::STATUS_UUID, b"x"),
        Err(MessageError::Ble(_))
    ));
}

#[test]
fn without_a_clock_readings_have_no_timestamp_and_commands_do_not_run() {
    let mut scale = Scale::new(config(), MemoryStore::new(), 0).unwrap();
    scale.on_battery(Battery::from_cell_volts(4.0));
    scale.on_connected(0);
    let mut actions = Vec::new();
    for t in (500..=70_000).step_by(500) {
        scale.on_sample(t, ZERO, None);
        scale.tick(t);
        actions.extend(std::iter::from_fn(|| scale.poll()));
    }
    let r = readings(&actions);
    assert!(!r.is_empty());
    assert!(r.iter().all(|r| r.ts.is_none()));
    let json = br#"{"v":1,"id":"x","issued_at":1773835100000,"expires_at":1773835300000}"#;
    let handled = scale
        .on_message(70_000, "keg/command/SCALE-0042/reboot", json)
        .unwrap();
    assert!(matches!(handled, Handled::Command { ok: false, .. }));
}

/// A store whose writes fail after start-up, like worn-out flash.
#[derive(Debug, Default)]
struct FailingStore {
    inner: MemoryStore,
    fail: bool,
}

impl SettingsStore for FailingStore {
    type Error = &'static str;

    fn load(&mut self) -> Result<Option<Settings>, &'static str> {
        Ok(self.inner.load().unwrap_or_else(|e: Infallible| match e {}))
    }

    fn save(&mut self, settings: &Settings) -> Result<(), &'static str> {
        if self.fail {
            return Err("flash write failed");
        }
        self.inner
            .save(settings)
            .unwrap_or_else(|e: Infallible| match e {});
        Ok(())
    }
}

#[test]
fn a_failed_settings_write_is_an_error_response_and_no_change() {
    let mut rig = Rig::with_store(FailingStore::default());
    rig.run_for(10_000);
    rig.connect();
    let interval_before = rig.scale.settings().interval_s;
    rig.scale.store_mut().fail = true;
    let handled = rig
        .command("set_config", "s-1", r#"{"interval_s":30}"#)
        .unwrap();
    assert!(matches!(handled, Handled::Command { ok: false, .. }));
    let r = &responses(&rig.drain())[0];
    assert_eq!(r.error.as_deref(), Some("could not save settings"));
    assert_eq!(rig.scale.settings().interval_s, interval_before);
    assert_eq!(rig.scale.save_failures(), 1);
    // The id is still remembered: a redelivery does not run it.
    assert!(matches!(
        rig.command("set_config", "s-1", r#"{"interval_s":30}"#)
            .unwrap(),
        Handled::Duplicate { .. }
    ));
}
