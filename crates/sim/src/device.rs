//! One virtual scale without a network: the real firmware core ([`Scale`]) fed by the world
//! model ([`BarModel`]) exactly as the board feeds it from the HX711, the ADC and the radio.
//!
//! The board's monotonic clock is simulated epoch time, and the scale's clock is synchronised
//! from the start (the board gets it over SNTP as soon as Wi-Fi is up). This module never
//! does I/O or reads a clock; the runner connects it to a broker, tests run it bare.

use scalesense_firmware_core::Scale;
use scalesense_firmware_core::battery::Battery;
use scalesense_firmware_core::settings::MemoryStore;

use crate::plan::ScalePlan;
use crate::world::{BarModel, STEP_MS, WorldConfig, WorldEvent};

/// Battery and signal are measured every this many samples (5 s), as the board does between
/// load-cell reads.
const HOUSEKEEPING_EVERY_STEPS: u64 = 10;

/// How a [`VirtualScale::run_until`] call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Simulated time reached the target.
    Reached,
    /// Wi-Fi went down (`false`) or came back (`true`) at [`VirtualScale::now_ms`]; the rest
    /// of the way is still to run.
    LinkChanged { up: bool },
}

/// A scale on a tap: firmware plus world.
#[derive(Debug)]
pub struct VirtualScale {
    plan: ScalePlan,
    model: BarModel,
    scale: Scale<MemoryStore>,
    steps: u64,
}

impl VirtualScale {
    /// The scale of `plan`, booted with its factory settings at `start_ms` (simulated epoch).
    pub fn new(plan: ScalePlan, world: &WorldConfig, start_ms: u64) -> Self {
        let model = BarModel::new(&plan, world, start_ms);
        let scale = boot(&plan, MemoryStore::with(plan.initial_settings()), &model);
        Self {
            plan,
            model,
            scale,
            steps: 0,
        }
    }

    pub fn plan(&self) -> &ScalePlan {
        &self.plan
    }

    pub fn model(&self) -> &BarModel {
        &self.model
    }

    pub fn scale(&self) -> &Scale<MemoryStore> {
        &self.scale
    }

    /// The firmware, to feed MQTT events and drain actions.
    pub fn scale_mut(&mut self) -> &mut Scale<MemoryStore> {
        &mut self.scale
    }

    /// Simulated time of the latest sample (the board's monotonic clock too).
    pub fn now_ms(&self) -> u64 {
        self.model.now_ms()
    }

    /// Samples the world every [`STEP_MS`] up to `until_ms`, feeding each sample to the
    /// firmware and running its timers. Stops early right after a step in which Wi-Fi went
    /// down or came back, so the caller can act at that instant. `on_event` sees every world
    /// event with its time.
    pub fn run_until(
        &mut self,
        until_ms: u64,
        mut on_event: impl FnMut(u64, &WorldEvent),
    ) -> RunOutcome {
        while self.model.now_ms() + STEP_MS <= until_ms {
            let step = self.model.step();
            let sample = step.sample;
            if self.steps.is_multiple_of(HOUSEKEEPING_EVERY_STEPS) {
                // The divider halves the cell voltage at the ADC pin.
                self.scale
                    .on_battery(Battery::from_pin_millivolts(sample.battery_mv / 2));
                self.scale.on_rssi(sample.rssi);
            }
            self.steps += 1;
            self.scale
                .on_sample(sample.at_ms, sample.raw, Some(sample.temp_c));
            self.scale.tick(sample.at_ms);
            let mut link = None;
            for event in &step.events {
                on_event(sample.at_ms, event);
                match event {
                    WorldEvent::LinkDown => link = Some(false),
                    WorldEvent::LinkUp => link = Some(true),
                    _ => {}
                }
            }
            if let Some(up) = link {
                return RunOutcome::LinkChanged { up };
            }
        }
        RunOutcome::Reached
    }

    /// Restarts the firmware (a `reboot` command): settings survive in the store, RAM — the
    /// offline buffer included — does not.
    pub fn reboot(&mut self) {
        let store = self.scale.store().clone();
        self.scale = boot(&self.plan, store, &self.model);
        self.steps = 0;
    }
}

fn boot(plan: &ScalePlan, store: MemoryStore, model: &BarModel) -> Scale<MemoryStore> {
    let now_ms = model.now_ms();
    let Ok(mut scale) = Scale::new(plan.device_config(), store, now_ms);
    scale.on_clock(now_ms, now_ms);
    // The board measures its battery and signal while it boots, before the first sample.
    scale.on_battery(Battery::from_pin_millivolts(model.battery_mv() / 2));
    scale.on_rssi(model.rssi());
    scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalesense_firmware_core::{Action, Handled};
    use scalesense_proto::{LocationId, Reading, Response, TareStatus, Topic};

    use crate::world::radio::OutageProfile;

    /// 2026-03-18 12:00 UTC: closed until 16:00, so the keg sits still.
    const NOON: u64 = 1_773_835_200_000;
    const HOUR: u64 = 3_600_000;

    fn plan(index: u32) -> ScalePlan {
        ScalePlan::new(
            1,
            index,
            index + 1,
            &LocationId::try_from("loc-001").unwrap(),
        )
        .unwrap()
    }

    /// What left the scale while a test drove it.
    #[derive(Default)]
    struct Wire {
        readings: Vec<Reading>,
        responses: Vec<Response>,
        /// Readings published right after each reconnect (the catch-up).
        catch_ups: Vec<usize>,
    }

    /// Runs `vs` to `until_ms` like a runner on a perfect broker: connected whenever Wi-Fi
    /// is up, every publish acknowledged at once.
    fn drive(vs: &mut VirtualScale, until_ms: u64, wire: &mut Wire) {
        loop {
            let outcome = vs.run_until(until_ms, |_, _| {});
            let now = vs.now_ms();
            let reconnected = match outcome {
                RunOutcome::LinkChanged { up: false } => {
                    vs.scale_mut().on_disconnected(now);
                    false
                }
                RunOutcome::LinkChanged { up: true } => {
                    vs.scale_mut().on_connected(now);
                    true
                }
                RunOutcome::Reached => false,
            };
            let before = wire.readings.len();
            while let Some(action) = vs.scale_mut().poll() {
                if let Action::Publish(p) = action {
                    match Topic::parse(p.topic.as_str()).unwrap() {
                        Topic::Reading(_) => wire
                            .readings
                            .push(scalesense_proto::decode_reading(&p.payload).unwrap()),
                        Topic::Response(_) => wire
                            .responses
                            .push(scalesense_proto::decode_response(&p.payload).unwrap()),
                        _ => {}
                    }
                    if let Some(id) = p.ack {
                        vs.scale_mut().on_puback(id);
                    }
                }
            }
            if reconnected {
                wire.catch_ups.push(wire.readings.len() - before);
            }
            if outcome == RunOutcome::Reached {
                return;
            }
        }
    }

    fn connected(plan: ScalePlan, world: &WorldConfig) -> VirtualScale {
        let mut vs = VirtualScale::new(plan, world, NOON);
        vs.scale_mut().on_connected(NOON);
        vs
    }

    #[test]
    fn readings_report_the_kegs_true_level_from_the_first_one() {
        let plan = plan(0);
        let mut vs = connected(plan.clone(), &WorldConfig::default());
        let mut wire = Wire::default();
        drive(&mut vs, NOON + HOUR, &mut wire);
        assert_eq!(wire.readings.len(), 60, "one a minute, the first after 5 s");
        let true_level = vs.model().keg().level() * 100.0;
        for (seq, r) in wire.readings.iter().enumerate() {
            assert_eq!(r.seq as usize, seq);
            assert_eq!(r.boot, 1);
            assert!(r.ts.is_some_and(|ts| ts > NOON && ts <= NOON + HOUR));
            assert_eq!(r.tare_status, TareStatus::Complete);
            assert!(r.stable, "nobody pours before opening");
            let level = r.level_pct.unwrap();
            assert!((level - true_level).abs() < 0.3, "{level} vs {true_level}");
            let weight = plan.keg.empty_lbs + vs.model().keg().beer_lbs();
            assert!(
                (r.weight_lbs - weight).abs() < 0.1,
                "{} vs {weight}",
                r.weight_lbs
            );
            assert!((3.0..=4.2).contains(&r.battery_v));
            assert!((-95..=-30).contains(&r.rssi));
        }
    }

    #[test]
    fn a_pour_makes_the_scale_unstable_then_stable_again() {
        let mut vs = connected(plan(0), &WorldConfig::default());
        let mut pour_at = None;
        // Opening is at 16:00; run in one-step slices until a pour starts.
        let mut t = NOON;
        while pour_at.is_none() && t < NOON + 12 * HOUR {
            t += STEP_MS;
            vs.run_until(t, |at, e| {
                if matches!(e, WorldEvent::PourStarted { .. }) {
                    pour_at = Some(at);
                }
            });
        }
        let pour_at = pour_at.expect("a pour by midnight");
        let mut stable = Vec::new();
        while t < pour_at + 60_000 {
            t += STEP_MS;
            vs.run_until(t, |_, _| {});
            stable.push(vs.scale().measurement().unwrap().stable);
        }
        let unstable_from = stable.iter().position(|s| !s).expect("never unstable");
        // The median and the moving average lag the load by a second or two; a pint runs
        // for about eight.
        assert!(
            unstable_from <= 10,
            "unstable only after {unstable_from} samples"
        );
        let settled = stable[unstable_from..].iter().position(|s| *s);
        assert!(settled.is_some(), "never stable again: {stable:?}");
    }

    #[test]
    fn an_outage_buffers_readings_and_sends_them_oldest_first() {
        let world = WorldConfig {
            outages: OutageProfile {
                mean_hours_between: 1.0,
                minutes: (3.0, 6.0),
            },
            ..WorldConfig::default()
        };
        let mut vs = connected(plan(1), &world);
        let mut wire = Wire::default();
        drive(&mut vs, NOON + 6 * HOUR, &mut wire);
        assert!(!wire.catch_ups.is_empty(), "no outage in six hours");
        assert!(
            wire.catch_ups.iter().all(|n| *n >= 2),
            "each outage of 3+ minutes leaves readings to catch up: {:?}",
            wire.catch_ups
        );
        // Nothing lost, nothing reordered: one boot, consecutive sequence numbers.
        for (i, r) in wire.readings.iter().enumerate() {
            assert_eq!(r.seq as usize, i);
        }
        assert!(
            wire.readings.len() >= 355,
            "{} readings",
            wire.readings.len()
        );
    }

    #[test]
    fn tare_commands_are_answered_on_simulated_time() {
        let mut vs = connected(plan(2), &WorldConfig::default());
        let mut wire = Wire::default();
        drive(&mut vs, NOON + 60_000, &mut wire);
        let now = vs.now_ms();
        let command = format!(
            r#"{{"v":1,"id":"cmd-tare-1","params":{{}},"issued_at":{now},"expires_at":{}}}"#,
            now + 600_000
        );
        let topic = format!("keg/command/{}/tare_empty", vs.plan().device_id);
        let handled = vs
            .scale_mut()
            .on_message(now, &topic, command.as_bytes())
            .unwrap();
        assert!(
            matches!(handled, Handled::Command { ok: true, .. }),
            "{handled:?}"
        );
        // A retained redelivery is ignored.
        let again = vs
            .scale_mut()
            .on_message(now, &topic, command.as_bytes())
            .unwrap();
        assert!(matches!(again, Handled::Duplicate { .. }));
        drive(&mut vs, now + 1_000, &mut wire);
        assert_eq!(wire.responses.len(), 1);
        let response = &wire.responses[0];
        assert_eq!(response.id.as_str(), "cmd-tare-1");
        assert!(response.ok);
        let empty = response.result.as_ref().unwrap().empty_lbs.unwrap();
        let weight = vs.plan().keg.empty_lbs + vs.model().keg().beer_lbs();
        assert!((empty - weight).abs() < 0.1, "{empty} vs {weight}");
    }

    #[test]
    fn a_reboot_keeps_settings_and_starts_a_new_boot() {
        let mut vs = connected(plan(3), &WorldConfig::default());
        let mut wire = Wire::default();
        drive(&mut vs, NOON + 10 * 60_000, &mut wire);
        vs.reboot();
        assert_eq!(vs.scale().boot(), 2);
        assert_eq!(
            vs.scale().settings().tare.status(),
            TareStatus::Complete,
            "tare survives in flash"
        );
        let now = vs.now_ms();
        vs.scale_mut().on_connected(now);
        drive(&mut vs, now + 5 * 60_000, &mut wire);
        let last = wire.readings.last().unwrap();
        assert_eq!((last.boot, last.seq), (2, 4));
    }
}
