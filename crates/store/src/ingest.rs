//! The pure part of `ingest_batch`: from a batch of readings and the resolved device → tap →
//! keg context, decide what to insert, and — once the database has said which rows were new —
//! what to add to the rollups, the tap state and the telemetry. No I/O here, so the rules are
//! unit-tested without a database; both backends run exactly this code.
//!
//! Litres poured (the rollups' `poured_l`) are counted with a reference volume per tap, kept in
//! `tap_state.ref_volume_l` so the count carries across batches:
//! - a reading whose volume is more than [`POUR_NOISE_FLOOR_L`] below the reference adds the
//!   difference to the bucket of that reading and becomes the new reference;
//! - a reading above the reference raises the reference (noise up, a refill);
//! - a smaller drop leaves the reference alone, so a slow pour still counts once it adds up;
//! - a new series (another keg, or the tap fallback) starts without a reference;
//! - a late reading (older than the tap state) is stored and rolled up but pours nothing: the
//!   drop it would explain was already counted from its neighbours.
//!
//! New readings of a series are taken in time order within a batch. Duplicates never reach
//! this stage, so they cannot touch rollups.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::{IngestReading, Millis, POUR_NOISE_FLOOR_L, ROLLUP_BUCKETS, ReadingOutcome};

/// What the database knows about a device, resolved inside the ingest transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceContext {
    pub account_id: String,
    pub tap: Option<TapContext>,
}

/// The tap a device sits on and the keg tapped there, with its hot state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TapContext {
    pub tap_id: String,
    pub location_id: String,
    pub keg_id: Option<String>,
    pub keg_empty_kg: Option<f64>,
    pub keg_sg: Option<f64>,
    pub state_series: Option<String>,
    pub state_updated_at: Option<Millis>,
    pub state_ref_volume_l: Option<f64>,
}

/// A reading that may be inserted (not known to be new yet).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    /// Position in the input batch.
    pub index: usize,
    pub device_id: String,
    pub account_id: String,
    pub boot: i64,
    pub seq: i64,
    pub series: String,
    pub location_id: String,
    pub tap_id: String,
    pub keg_id: Option<String>,
    pub ts: Millis,
    pub weight_kg: f64,
    pub level_pct: f64,
    pub volume_l: Option<f64>,
    pub battery_v: Option<f64>,
    pub battery_pct: Option<f64>,
    pub rssi: Option<i64>,
    pub stable: bool,
    pub tare_status: Option<String>,
}

/// The first stage's result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// One per input; `None` where the reading is a candidate whose fate the insert decides.
    pub outcomes: Vec<Option<ReadingOutcome>>,
    pub candidates: Vec<Candidate>,
    /// Readings of known devices on no tap: they still refresh telemetry.
    pub unassigned: Vec<usize>,
}

/// Litres left in a keg: net weight over specific gravity (litres of water per kilogram).
pub(crate) fn volume_l(weight_kg: f64, empty_kg: f64, sg: f64) -> f64 {
    ((weight_kg - empty_kg) / sg).max(0.0)
}

fn check(r: &IngestReading) -> Result<(), String> {
    let finite = [
        Some(r.weight_kg),
        Some(r.level_pct),
        r.battery_v,
        r.battery_pct,
    ];
    if finite.iter().flatten().any(|v| !v.is_finite()) {
        return Err("a quantity is not a finite number".into());
    }
    if r.boot < 0 || r.seq < 0 {
        return Err("boot and seq must not be negative".into());
    }
    Ok(())
}

/// Stage one: classify each reading and build the insert candidates.
pub(crate) fn plan(readings: &[IngestReading], contexts: &HashMap<String, DeviceContext>) -> Plan {
    let mut outcomes = Vec::with_capacity(readings.len());
    let mut candidates = Vec::with_capacity(readings.len());
    let mut unassigned = Vec::new();
    let mut seen: HashSet<(&str, i64, i64)> = HashSet::with_capacity(readings.len());
    for (index, r) in readings.iter().enumerate() {
        if let Err(reason) = check(r) {
            outcomes.push(Some(ReadingOutcome::Invalid(reason)));
            continue;
        }
        let Some(ctx) = contexts.get(r.device_id.as_str()) else {
            outcomes.push(Some(ReadingOutcome::UnknownDevice));
            continue;
        };
        if !seen.insert((r.device_id.as_str(), r.boot, r.seq)) {
            outcomes.push(Some(ReadingOutcome::Duplicate));
            continue;
        }
        let Some(tap) = &ctx.tap else {
            outcomes.push(Some(ReadingOutcome::Unassigned));
            unassigned.push(index);
            continue;
        };
        let volume = match (tap.keg_empty_kg, tap.keg_sg) {
            (Some(empty), Some(sg)) if tap.keg_id.is_some() => {
                Some(volume_l(r.weight_kg, empty, sg))
            }
            _ => None,
        };
        outcomes.push(None);
        candidates.push(Candidate {
            index,
            device_id: r.device_id.as_str().to_owned(),
            account_id: ctx.account_id.clone(),
            boot: r.boot,
            seq: r.seq,
            series: tap.keg_id.clone().unwrap_or_else(|| tap.tap_id.clone()),
            location_id: tap.location_id.clone(),
            tap_id: tap.tap_id.clone(),
            keg_id: tap.keg_id.clone(),
            ts: r.ts,
            weight_kg: r.weight_kg,
            level_pct: r.level_pct,
            volume_l: volume,
            battery_v: r.battery_v,
            battery_pct: r.battery_pct,
            rssi: r.rssi,
            stable: r.stable,
            tare_status: r.tare_status.clone(),
        });
    }
    Plan {
        outcomes,
        candidates,
        unassigned,
    }
}

/// What one batch adds to one rollup bucket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RollupDelta {
    pub series: String,
    pub bucket_ms: Millis,
    pub bucket_start: Millis,
    pub location_id: String,
    pub tap_id: String,
    pub n: i64,
    pub level_sum: f64,
    pub level_min: f64,
    pub level_max: f64,
    pub battery_sum: f64,
    pub battery_n: i64,
    pub first_ts: Millis,
    pub first_volume: Option<f64>,
    pub last_ts: Millis,
    pub last_volume: Option<f64>,
    pub poured_l: f64,
}

impl RollupDelta {
    fn new(c: &Candidate, bucket_ms: Millis, poured: f64) -> Self {
        Self {
            series: c.series.clone(),
            bucket_ms,
            bucket_start: c.ts.div_euclid(bucket_ms) * bucket_ms,
            location_id: c.location_id.clone(),
            tap_id: c.tap_id.clone(),
            n: 1,
            level_sum: c.level_pct,
            level_min: c.level_pct,
            level_max: c.level_pct,
            battery_sum: c.battery_pct.unwrap_or(0.0),
            battery_n: i64::from(c.battery_pct.is_some()),
            first_ts: c.ts,
            first_volume: c.volume_l,
            last_ts: c.ts,
            last_volume: c.volume_l,
            poured_l: poured,
        }
    }

    /// Folds another delta of the same bucket in; the database merges with the stored row the
    /// same way (`rollup_merge` in the SQL).
    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.level_sum += other.level_sum;
        self.level_min = self.level_min.min(other.level_min);
        self.level_max = self.level_max.max(other.level_max);
        self.battery_sum += other.battery_sum;
        self.battery_n += other.battery_n;
        if other.first_ts < self.first_ts {
            self.first_ts = other.first_ts;
            self.first_volume = other.first_volume;
        }
        if other.last_ts >= self.last_ts {
            self.last_ts = other.last_ts;
            self.last_volume = other.last_volume;
        }
        self.poured_l += other.poured_l;
    }
}

/// The newest new reading of a tap, and the pour reference after the batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TapUpdate {
    pub tap_id: String,
    pub series: String,
    pub level_pct: f64,
    pub volume_l: Option<f64>,
    pub weight_kg: f64,
    pub ts: Millis,
    pub tare_status: Option<String>,
    pub boot: i64,
    pub seq: i64,
    pub ref_volume_l: Option<f64>,
}

/// The newest reading of a device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceUpdate {
    pub device_id: String,
    pub ts: Millis,
    pub battery_v: Option<f64>,
    pub battery_pct: Option<f64>,
    pub rssi: Option<i64>,
}

/// Stage two's result.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Effects {
    pub rollups: Vec<RollupDelta>,
    pub taps: Vec<TapUpdate>,
    pub devices: Vec<DeviceUpdate>,
}

/// Stage two: given the candidates the insert reported as new (in any order), the tap contexts
/// by tap id, and the unassigned readings, compute the derived writes.
pub(crate) fn effects(
    new: &[&Candidate],
    taps: &HashMap<&str, &TapContext>,
    unassigned: &[&IngestReading],
) -> Effects {
    let mut by_tap: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in new {
        by_tap.entry(c.tap_id.as_str()).or_default().push(c);
    }
    let mut rollups: BTreeMap<(String, Millis, Millis), RollupDelta> = BTreeMap::new();
    let mut tap_updates = Vec::with_capacity(by_tap.len());
    for (tap_id, mut readings) in by_tap {
        readings.sort_by_key(|c| (c.ts, c.boot, c.seq));
        let ctx = taps.get(tap_id);
        let series = readings[0].series.as_str();
        let same_series = ctx.is_some_and(|t| t.state_series.as_deref() == Some(series));
        let state_ts = ctx.and_then(|t| t.state_updated_at).filter(|_| same_series);
        let mut reference = ctx
            .and_then(|t| t.state_ref_volume_l)
            .filter(|_| same_series);
        for c in &readings {
            let late = state_ts.is_some_and(|s| c.ts < s);
            let mut poured = 0.0;
            if !late && let Some(v) = c.volume_l {
                match reference {
                    Some(r) if r - v > POUR_NOISE_FLOOR_L => {
                        poured = r - v;
                        reference = Some(v);
                    }
                    Some(r) if v > r => reference = Some(v),
                    Some(_) => {}
                    None => reference = Some(v),
                }
            }
            for bucket_ms in ROLLUP_BUCKETS {
                let delta = RollupDelta::new(c, bucket_ms, poured);
                rollups
                    .entry((delta.series.clone(), bucket_ms, delta.bucket_start))
                    .and_modify(|d| d.merge(&delta))
                    .or_insert(delta);
            }
        }
        let newest = readings[readings.len() - 1];
        if state_ts.is_none_or(|s| newest.ts >= s) {
            tap_updates.push(TapUpdate {
                tap_id: tap_id.to_owned(),
                series: newest.series.clone(),
                level_pct: newest.level_pct,
                volume_l: newest.volume_l,
                weight_kg: newest.weight_kg,
                ts: newest.ts,
                tare_status: newest.tare_status.clone(),
                boot: newest.boot,
                seq: newest.seq,
                ref_volume_l: reference,
            });
        }
    }

    let mut devices: BTreeMap<&str, DeviceUpdate> = BTreeMap::new();
    let device_readings = new
        .iter()
        .map(|c| {
            (
                c.device_id.as_str(),
                c.ts,
                c.battery_v,
                c.battery_pct,
                c.rssi,
            )
        })
        .chain(unassigned.iter().map(|r| {
            (
                r.device_id.as_str(),
                r.ts,
                r.battery_v,
                r.battery_pct,
                r.rssi,
            )
        }));
    for (device_id, ts, battery_v, battery_pct, rssi) in device_readings {
        let update = DeviceUpdate {
            device_id: device_id.to_owned(),
            ts,
            battery_v,
            battery_pct,
            rssi,
        };
        devices
            .entry(device_id)
            .and_modify(|d| {
                if ts >= d.ts {
                    *d = update.clone();
                }
            })
            .or_insert(update);
    }

    Effects {
        rollups: rollups.into_values().collect(),
        taps: tap_updates,
        devices: devices.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BUCKET_1_HOUR, BUCKET_5_MIN};
    use scalesense_proto::DeviceId;

    fn reading(seq: i64, ts: Millis, weight: f64) -> IngestReading {
        IngestReading {
            device_id: DeviceId::try_from("SCALE-1").unwrap(),
            boot: 1,
            seq,
            ts,
            weight_kg: weight,
            level_pct: 50.0,
            battery_v: Some(3.9),
            battery_pct: Some(80.0),
            rssi: Some(-60),
            stable: true,
            tare_status: None,
        }
    }

    fn tap_ctx(keg: bool) -> TapContext {
        TapContext {
            tap_id: "loc-1#TAP#01".into(),
            location_id: "loc-1".into(),
            keg_id: keg.then(|| "keg-1".into()),
            keg_empty_kg: keg.then_some(10.0),
            keg_sg: keg.then_some(1.0),
            state_series: None,
            state_updated_at: None,
            state_ref_volume_l: None,
        }
    }

    fn contexts(tap: Option<TapContext>) -> HashMap<String, DeviceContext> {
        HashMap::from([(
            "SCALE-1".to_owned(),
            DeviceContext {
                account_id: "acct".into(),
                tap,
            },
        )])
    }

    #[test]
    fn plan_classifies() {
        let mut bad = reading(3, 0, f64::NAN);
        bad.seq = 3;
        let mut stranger = reading(4, 0, 20.0);
        stranger.device_id = DeviceId::try_from("SCALE-2").unwrap();
        let batch = [reading(1, 0, 20.0), reading(1, 0, 20.0), bad, stranger];
        let p = plan(&batch, &contexts(Some(tap_ctx(true))));
        assert_eq!(p.candidates.len(), 1);
        assert_eq!(p.candidates[0].series, "keg-1");
        assert_eq!(p.candidates[0].volume_l, Some(10.0));
        assert_eq!(p.outcomes[0], None);
        assert_eq!(p.outcomes[1], Some(ReadingOutcome::Duplicate));
        assert!(matches!(p.outcomes[2], Some(ReadingOutcome::Invalid(_))));
        assert_eq!(p.outcomes[3], Some(ReadingOutcome::UnknownDevice));

        let p = plan(&batch[..1], &contexts(Some(tap_ctx(false))));
        assert_eq!(p.candidates[0].series, "loc-1#TAP#01");
        assert_eq!(p.candidates[0].volume_l, None);

        let p = plan(&batch[..1], &contexts(None));
        assert_eq!(p.outcomes[0], Some(ReadingOutcome::Unassigned));
        assert_eq!(p.unassigned, vec![0]);
    }

    #[test]
    fn pours_count_drops_beyond_the_noise_floor_across_batches() {
        let ctx = tap_ctx(true);
        // Volumes 20, 19.95 (noise), 19.8 (drop 0.2 from the reference 20), 19.85 (up), 18.85.
        let batch = [
            reading(1, 0, 30.0),
            reading(2, 60_000, 29.95),
            reading(3, 120_000, 29.8),
            reading(4, 180_000, 29.85),
            reading(5, 400_000, 28.85),
        ];
        let p = plan(&batch, &contexts(Some(ctx.clone())));
        let new: Vec<&Candidate> = p.candidates.iter().collect();
        let taps = HashMap::from([(ctx.tap_id.as_str(), &ctx)]);
        let fx = effects(&new, &taps, &[]);
        let five: Vec<&RollupDelta> = fx
            .rollups
            .iter()
            .filter(|r| r.bucket_ms == BUCKET_5_MIN)
            .collect();
        assert_eq!(five.len(), 2);
        assert!(
            (five[0].poured_l - 0.2).abs() < 1e-9,
            "{}",
            five[0].poured_l
        );
        assert_eq!(five[0].n, 4);
        assert_eq!(five[0].first_volume, Some(20.0));
        assert!((five[1].poured_l - 1.0).abs() < 1e-9);
        let hour = fx
            .rollups
            .iter()
            .find(|r| r.bucket_ms == BUCKET_1_HOUR)
            .unwrap();
        assert_eq!(hour.n, 5);
        assert!((hour.poured_l - 1.2).abs() < 1e-9);
        assert_eq!(fx.taps.len(), 1);
        assert_eq!(fx.taps[0].ts, 400_000);
        assert!((fx.taps[0].ref_volume_l.unwrap() - 18.85).abs() < 1e-9);

        // The next batch continues from the stored reference.
        let mut carried = ctx.clone();
        carried.state_series = Some("keg-1".into());
        carried.state_updated_at = Some(400_000);
        carried.state_ref_volume_l = fx.taps[0].ref_volume_l;
        let batch = [reading(6, 460_000, 28.5), reading(7, 300_000, 20.0)];
        let p = plan(&batch, &contexts(Some(carried.clone())));
        let new: Vec<&Candidate> = p.candidates.iter().collect();
        let taps = HashMap::from([(carried.tap_id.as_str(), &carried)]);
        let fx = effects(&new, &taps, &[]);
        let poured: f64 = fx
            .rollups
            .iter()
            .filter(|r| r.bucket_ms == BUCKET_1_HOUR)
            .map(|r| r.poured_l)
            .sum();
        // 18.85 → 18.5 counts; the late reading (ts 300 000) pours nothing.
        assert!((poured - 0.35).abs() < 1e-9, "{poured}");
        assert_eq!(fx.taps[0].ts, 460_000);
    }

    #[test]
    fn devices_take_their_newest_reading() {
        let ctx = tap_ctx(false);
        let mut older = reading(2, 10, 20.0);
        older.battery_pct = Some(10.0);
        let batch = [reading(1, 20, 20.0), older];
        let p = plan(&batch, &contexts(Some(ctx.clone())));
        let new: Vec<&Candidate> = p.candidates.iter().collect();
        let taps = HashMap::from([(ctx.tap_id.as_str(), &ctx)]);
        let fx = effects(&new, &taps, &[]);
        assert_eq!(fx.devices.len(), 1);
        assert_eq!(fx.devices[0].ts, 20);
        assert_eq!(fx.devices[0].battery_pct, Some(80.0));
    }
}
