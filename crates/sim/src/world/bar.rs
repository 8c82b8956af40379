//! One tap's corner of the bar, step by step: the keg on the scale and the people pouring
//! from it, the cooler, the scale's battery and radio, and the load cell that reads it all.
//!
//! [`BarModel::step`] advances simulated time by one sampling period ([`STEP_MS`]) and returns
//! what the board would measure then, plus what happened. Everything is drawn from one
//! generator seeded from the scale's plan in a fixed order, so the same seed and start time
//! give the same samples, pours, kicks and outages however fast or slowly the caller steps.
//! It never reads a clock, sleeps or does I/O.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scalesense_domain::units::KG_PER_LB;
use scalesense_firmware_core::scale::SAMPLE_PERIOD_MS;

use super::cell::CellSpec;
use super::cooler::Cooler;
use super::hours::OpeningHours;
use super::keg::{FLOW_L_PER_S, KegPhysics, KegSpec, PourSize};
use super::power::BatteryModel;
use super::radio::{OutageProfile, Radio};
use super::random::{normal, uniform};
use crate::plan::ScalePlan;

/// Simulated time per step: the firmware's sampling period.
pub const STEP_MS: u64 = SAMPLE_PERIOD_MS;
/// Chance per sample of a spike on the HX711's wires (a knock, a radio burst).
const SPIKE_PROBABILITY: f64 = 1.0 / 2_000.0;
const MS_PER_DAY: i64 = 86_400_000;

/// How the bar behaves; the same for every tap.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldConfig {
    pub hours: OpeningHours,
    /// Pours an hour at a tap of average popularity, outside the peak.
    pub pours_per_hour: f64,
    /// How much faster pours come during the evening peak.
    pub peak_factor: f64,
    /// Minutes from a kick until staff swap the keg (pushed to the next opening when closed).
    pub swap_delay_minutes: (f64, f64),
    pub outages: OutageProfile,
    /// The bar's time zone: opening hours are local.
    pub time_zone: TimeZone,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            hours: OpeningHours::default(),
            pours_per_hour: 3.0,
            peak_factor: 2.5,
            swap_delay_minutes: (5.0, 40.0),
            outages: OutageProfile::default(),
            time_zone: TimeZone::UTC,
        }
    }
}

/// What the board measures at one sampling instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Simulated time, epoch ms.
    pub at_ms: u64,
    /// HX711 counts.
    pub raw: i32,
    /// Temperature at the load cell, °C.
    pub temp_c: f64,
    /// Battery cell voltage, mV.
    pub battery_mv: u32,
    /// Wi-Fi signal, dBm.
    pub rssi: i16,
    /// Whether the scale can reach the broker.
    pub link_up: bool,
}

/// Something that happened in the bar during a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WorldEvent {
    PourStarted {
        size: PourSize,
    },
    /// A pour ended; `litres` left the keg (the glass plus the foam that went to waste).
    PourFinished {
        litres: f64,
    },
    /// The keg ran dry.
    Kicked,
    /// Staff lifted the empty keg off the scale.
    KegRemoved,
    /// Staff set a full keg weighing `full_lbs` on the scale.
    KegPlaced {
        full_lbs: f64,
    },
    /// The battery was recharged.
    Recharged,
    /// Wi-Fi went away.
    LinkDown,
    /// Wi-Fi came back.
    LinkUp,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub sample: Sample,
    /// What happened, in order (usually nothing).
    pub events: Vec<WorldEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Swap {
    Idle,
    Due { at_ms: u64 },
    Removed { place_at_ms: u64 },
}

/// The cached UTC offset of the bar's time zone.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LocalOffset {
    offset_ms: i64,
    valid_until_ms: u64,
}

/// One tap's world.
#[derive(Debug, Clone)]
pub struct BarModel {
    config: WorldConfig,
    rng: StdRng,
    now_ms: u64,
    offset: LocalOffset,
    keg: KegPhysics,
    specific_gravity: f64,
    popularity: f64,
    cell: CellSpec,
    cooler: Cooler,
    battery: BatteryModel,
    radio: Radio,
    swap: Swap,
    poured_this_pour_lbs: f64,
}

impl BarModel {
    /// The world of `plan`'s scale at `start_ms` (epoch), before its first step.
    pub fn new(plan: &ScalePlan, config: &WorldConfig, start_ms: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(plan.seed);
        let cooler = Cooler::new(plan.cell.reference_temp_c, &mut rng);
        let battery = BatteryModel::new(&mut rng);
        let radio = Radio::new(config.outages, start_ms, &mut rng);
        Self {
            config: config.clone(),
            rng,
            now_ms: start_ms,
            offset: LocalOffset {
                offset_ms: 0,
                valid_until_ms: 0,
            },
            keg: KegPhysics::new(plan.keg.clone(), plan.initial_level),
            specific_gravity: plan.beer.specific_gravity,
            popularity: plan.popularity,
            cell: plan.cell,
            cooler,
            battery,
            radio,
            swap: Swap::Idle,
            poured_this_pour_lbs: 0.0,
        }
    }

    /// Simulated time of the latest step (the start time before the first).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn keg(&self) -> &KegPhysics {
        &self.keg
    }

    pub fn link_up(&self) -> bool {
        self.radio.link_up()
    }

    /// Battery state of charge, 0–1.
    pub fn battery_soc(&self) -> f64 {
        self.battery.soc()
    }

    /// Battery cell voltage now, mV (what a sample would carry).
    pub fn battery_mv(&self) -> u32 {
        self.battery.cell_millivolts()
    }

    /// Wi-Fi signal now, dBm.
    pub fn rssi(&self) -> i16 {
        self.radio.rssi()
    }

    /// Minute of the bar's local day at the latest step.
    pub fn local_minute(&mut self) -> u32 {
        if self.now_ms >= self.offset.valid_until_ms {
            self.offset = LocalOffset {
                offset_ms: offset_ms(&self.config.time_zone, self.now_ms),
                // Time zones change offset on whole minutes; look again at the next one.
                valid_until_ms: (self.now_ms / 60_000 + 1) * 60_000,
            };
        }
        minute_of_day(self.now_ms, self.offset.offset_ms)
    }

    /// Advances one sampling period.
    pub fn step(&mut self) -> Step {
        self.now_ms += STEP_MS;
        let now = self.now_ms;
        let minute = self.local_minute();
        let open = self.config.hours.is_open(minute);
        let mut events = Vec::new();

        self.run_swap(now, &mut events);
        if open && self.swap == Swap::Idle && !self.keg.is_pouring() && !self.keg.is_kicked() {
            let peak = if self.config.hours.is_peak(minute) {
                self.config.peak_factor
            } else {
                1.0
            };
            let per_hour = self.config.pours_per_hour * self.popularity * peak;
            if self.rng.random::<f64>() < per_hour * STEP_MS as f64 / 3_600_000.0 {
                self.start_pour(&mut events);
            }
        }

        let keg = self.keg.step(STEP_MS, normal(&mut self.rng));
        self.poured_this_pour_lbs += keg.poured_lbs;
        if keg.pour_finished {
            let litres = self.poured_this_pour_lbs * KG_PER_LB / self.specific_gravity;
            self.poured_this_pour_lbs = 0.0;
            events.push(WorldEvent::PourFinished { litres });
        }
        if keg.kicked {
            events.push(WorldEvent::Kicked);
            self.schedule_swap(now);
        }

        let temp_c = self.cooler.step(now, STEP_MS, open, &mut self.rng);
        if self.battery.step(now, STEP_MS, &mut self.rng) {
            events.push(WorldEvent::Recharged);
        }
        match self.radio.step(now, &mut self.rng) {
            Some(true) => events.push(WorldEvent::LinkUp),
            Some(false) => events.push(WorldEvent::LinkDown),
            None => {}
        }
        let spike = if self.rng.random::<f64>() < SPIKE_PROBABILITY {
            let size = uniform(&mut self.rng, 20_000.0, 60_000.0) as i32;
            if self.rng.random::<bool>() {
                size
            } else {
                -size
            }
        } else {
            0
        };
        let raw = self
            .cell
            .read(keg.load_lbs, temp_c, normal(&mut self.rng), spike);

        Step {
            sample: Sample {
                at_ms: now,
                raw,
                temp_c,
                battery_mv: self.battery.cell_millivolts(),
                rssi: self.radio.rssi(),
                link_up: self.radio.link_up(),
            },
            events,
        }
    }

    fn start_pour(&mut self, events: &mut Vec<WorldEvent>) {
        let size = PourSize::from_uniform(self.rng.random::<f64>());
        // Some of every pour goes down the drain as foam.
        let foam = uniform(&mut self.rng, 0.03, 0.12);
        let flow_l_per_s = FLOW_L_PER_S * uniform(&mut self.rng, 0.9, 1.1);
        let lbs_per_litre = self.specific_gravity / KG_PER_LB;
        let lbs = size.litres() * (1.0 + foam) * lbs_per_litre;
        if self.keg.start_pour(lbs, flow_l_per_s * lbs_per_litre) {
            self.poured_this_pour_lbs = 0.0;
            events.push(WorldEvent::PourStarted { size });
        }
    }

    fn schedule_swap(&mut self, now: u64) {
        let (lo, hi) = self.config.swap_delay_minutes;
        let mut at_ms = now + (uniform(&mut self.rng, lo, hi) * 60_000.0) as u64;
        let minute = minute_of_day(at_ms, offset_ms(&self.config.time_zone, at_ms));
        let wait = self.config.hours.minutes_until_open(minute);
        if wait > 0 {
            // Closed by then: the opening shift finds the dead keg.
            let settle_in = uniform(&mut self.rng, 10.0, 30.0);
            at_ms += (f64::from(wait) + settle_in) as u64 * 60_000;
        }
        self.swap = Swap::Due { at_ms };
    }

    fn run_swap(&mut self, now: u64, events: &mut Vec<WorldEvent>) {
        match self.swap {
            Swap::Due { at_ms } if now >= at_ms => {
                self.keg.remove();
                events.push(WorldEvent::KegRemoved);
                let seconds = uniform(&mut self.rng, 30.0, 120.0);
                self.swap = Swap::Removed {
                    place_at_ms: now + (seconds * 1_000.0) as u64,
                };
            }
            Swap::Removed { place_at_ms } if now >= place_at_ms => {
                // Real kegs differ a little from the reference weights.
                let reference = KegSpec::reference(self.keg.spec().kind.clone());
                let empty_lbs = reference.empty_lbs + uniform(&mut self.rng, -0.4, 0.4);
                let contents = reference.contents_lbs() * uniform(&mut self.rng, 0.985, 1.005);
                let spec = KegSpec {
                    kind: reference.kind,
                    empty_lbs,
                    full_lbs: empty_lbs + contents,
                };
                events.push(WorldEvent::KegPlaced {
                    full_lbs: spec.full_lbs,
                });
                self.keg.place(spec);
                self.swap = Swap::Idle;
            }
            _ => {}
        }
    }
}

/// The UTC offset of `tz` at `at_ms`, in ms.
fn offset_ms(tz: &TimeZone, at_ms: u64) -> i64 {
    i64::try_from(at_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or(0, |ts| i64::from(tz.to_offset(ts).seconds()) * 1_000)
}

fn minute_of_day(at_ms: u64, offset_ms: i64) -> u32 {
    let local = at_ms as i64 + offset_ms;
    (local.rem_euclid(MS_PER_DAY) / 60_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalesense_proto::LocationId;

    /// 2026-03-18 12:00 UTC, a Wednesday: the bar opens at 16:00.
    const NOON: u64 = 1_773_835_200_000;
    const DAY_STEPS: u64 = 86_400_000 / STEP_MS;

    fn plan(index: u32) -> ScalePlan {
        ScalePlan::new(
            1,
            index,
            index + 1,
            &LocationId::try_from("loc-001").unwrap(),
        )
        .unwrap()
    }

    fn model(index: u32) -> BarModel {
        BarModel::new(&plan(index), &WorldConfig::default(), NOON)
    }

    #[test]
    fn the_same_seed_gives_the_same_samples() {
        let (mut a, mut b) = (model(0), model(0));
        let first: Vec<Step> = (0..500).map(|_| a.step()).collect();
        let second: Vec<Step> = (0..500).map(|_| b.step()).collect();
        assert_eq!(first, second);
        assert_eq!(first[0].sample.at_ms, NOON + STEP_MS);
        assert_eq!(first[499].sample.at_ms, NOON + 500 * STEP_MS);
        let mut other = model(1);
        let third: Vec<Step> = (0..500).map(|_| other.step()).collect();
        assert_ne!(first, third, "another scale lives in another world");
        let raws: std::collections::BTreeSet<i32> = first.iter().map(|s| s.sample.raw).collect();
        assert!(raws.len() > 100, "the cell is noisy, not constant");
    }

    #[test]
    fn pours_happen_only_while_open_and_peak_in_the_evening() {
        let mut m = model(2);
        let hours = OpeningHours::default();
        let mut per_hour = [0u32; 24];
        for _ in 0..3 * DAY_STEPS {
            let step = m.step();
            for event in &step.events {
                if let WorldEvent::PourStarted { .. } = event {
                    let minute = minute_of_day(step.sample.at_ms, 0);
                    assert!(hours.is_open(minute), "pour at minute {minute} of the day");
                    per_hour[(minute / 60) as usize] += 1;
                }
            }
        }
        let total: u32 = per_hour.iter().sum();
        assert!(total > 60, "{total} pours in three days: {per_hour:?}");
        let peak: u32 = per_hour[19..23].iter().sum();
        let early: u32 = per_hour[16..19].iter().sum();
        // Four peak hours at 2.5× against three ordinary ones.
        assert!(
            peak > 2 * early,
            "peak {peak} vs early {early}: {per_hour:?}"
        );
        assert_eq!(per_hour[2..16].iter().sum::<u32>(), 0);
    }

    #[test]
    fn a_keg_kicks_and_staff_swap_it_for_a_full_one() {
        // The smallest keg in the seed-1 bar kicks first.
        let index = (0..24)
            .min_by(|a, b| {
                let lbs = |i: u32| plan(i).keg.contents_lbs() * plan(i).initial_level;
                lbs(*a).total_cmp(&lbs(*b))
            })
            .unwrap();
        let mut m = model(index);
        let mut seen = Vec::new();
        let mut kicked_at = None;
        for _ in 0..7 * DAY_STEPS {
            let step = m.step();
            for event in step.events {
                match event {
                    WorldEvent::Kicked => {
                        kicked_at = Some(step.sample.at_ms);
                        seen.push(event);
                    }
                    WorldEvent::KegRemoved | WorldEvent::KegPlaced { .. } => seen.push(event),
                    _ => {}
                }
            }
            if matches!(seen.last(), Some(WorldEvent::KegPlaced { .. })) {
                break;
            }
        }
        assert!(
            matches!(
                seen.as_slice(),
                [
                    WorldEvent::Kicked,
                    WorldEvent::KegRemoved,
                    WorldEvent::KegPlaced { .. }
                ]
            ),
            "{seen:?}"
        );
        let swapped_after = m.now_ms() - kicked_at.unwrap();
        assert!(
            swapped_after >= 5 * 60_000,
            "swap {swapped_after} ms after the kick"
        );
        assert!((m.keg().level() - 1.0).abs() < 1e-12);
        let reference = KegSpec::reference(m.keg().spec().kind.clone());
        assert!((m.keg().spec().full_lbs - reference.full_lbs).abs() < 1.5);
    }

    #[test]
    fn battery_stays_between_3_0_and_4_2_volts() {
        let mut m = model(3);
        let (mut lo, mut hi) = (u32::MAX, 0);
        // Minutes are enough to see the slow drain; sample one step in 120.
        for i in 0..8 * DAY_STEPS {
            let step = m.step();
            if i % 120 == 0 {
                lo = lo.min(step.sample.battery_mv);
                hi = hi.max(step.sample.battery_mv);
            }
        }
        assert!(lo >= 3_000 && hi <= 4_200, "{lo}–{hi} mV");
        assert!(hi - lo > 200, "the battery drains: {lo}–{hi} mV");
    }

    #[test]
    fn level_only_falls_within_a_keg_over_a_day() {
        for index in 0..4 {
            let mut m = model(index);
            let mut level = m.keg().level();
            let start_level = level;
            let mut swaps = 0;
            for _ in 0..DAY_STEPS {
                let step = m.step();
                let now = m.keg().level();
                if step
                    .events
                    .iter()
                    .any(|e| matches!(e, WorldEvent::KegPlaced { .. }))
                {
                    swaps += 1;
                } else {
                    assert!(now <= level, "level rose from {level} to {now}");
                }
                level = now;
            }
            assert!(
                swaps > 0 || level < start_level - 0.05,
                "tap {index}: a day of pours must show ({start_level} → {level})"
            );
        }
    }

    #[test]
    fn a_pour_unsettles_the_load_and_it_settles_again() {
        let mut m = model(0);
        let cell = plan(0).cell;
        let to_lbs = |raw: i32| f64::from(raw - cell.zero_offset) / cell.counts_per_lb;
        // Run into opening hours until a pint or a half starts.
        let mut window = Vec::new();
        let mut pouring = false;
        for _ in 0..DAY_STEPS {
            let step = m.step();
            let started = step.events.iter().any(
                |e| matches!(e, WorldEvent::PourStarted { size } if *size != PourSize::Pitcher),
            );
            if started {
                pouring = true;
            }
            if pouring {
                window.push(to_lbs(step.sample.raw));
                if window.len() == 60 {
                    break;
                }
            }
        }
        assert_eq!(window.len(), 60, "no pour in a day");
        // Spread after a 3-sample median, which (like the firmware's filter) ignores the
        // odd electrical spike.
        let spread = |w: &[f64]| {
            let medians: Vec<f64> = w
                .windows(3)
                .map(|t| {
                    let mut t = [t[0], t[1], t[2]];
                    t.sort_by(f64::total_cmp);
                    t[1]
                })
                .collect();
            medians.iter().copied().fold(f64::MIN, f64::max)
                - medians.iter().copied().fold(f64::MAX, f64::min)
        };
        // While pouring (the first few seconds) the load moves by more than the firmware's
        // stable band; 20 s later it sits still well inside it.
        assert!(spread(&window[..8]) > 0.2, "{:?}", &window[..8]);
        assert!(spread(&window[40..]) < 0.15, "{:?}", &window[40..]);
    }
}
