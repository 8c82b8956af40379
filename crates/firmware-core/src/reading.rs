//! Readings: numbered when taken, kept compact while they wait, encoded through proto on send.
//!
//! `seq` counts readings within one boot, from 0; `boot` is the persisted start-up counter,
//! so `(boot, seq)` is unique for the life of the scale and the server can drop replays and
//! QoS-1 duplicates. A reading is stored in the offline ring as a fixed-point
//! [`BufferedReading`] (40 bytes, not 250 bytes of JSON) and only becomes a proto [`Reading`]
//! when it is published. Fixed point also keeps the wire tidy: `87.3`, not `87.30000305`.
//!
//! This module never decides when to take a reading; the scale state machine does.

use scalesense_proto::payload::{Reading, TareStatus};
use scalesense_proto::{CONTRACT_VERSION, ContractError, EncodeError, Payload};

use crate::battery::Battery;
use crate::num::round;

/// `level_centi_pct` value meaning "not tared yet".
const NO_LEVEL: u16 = u16::MAX;

/// RSSI reported while the scale has never seen its access point (the contract's minimum).
pub const RSSI_UNKNOWN: i16 = -127;

/// What goes into one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadingInputs {
    /// Epoch ms, when the scale knows the time.
    pub ts: Option<u64>,
    pub weight_lbs: f64,
    pub level_pct: Option<f64>,
    pub battery: Battery,
    pub rssi: i16,
    pub stable: bool,
    pub tare_status: TareStatus,
}

/// A reading as kept in the offline ring: fixed point, no JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferedReading {
    pub seq: u32,
    pub ts: Option<u64>,
    /// Hundredths of a pound.
    pub weight_centi_lbs: i32,
    /// Hundredths of a percent, or `u16::MAX` when not tared.
    pub level_centi_pct: u16,
    pub battery_mv: u16,
    /// Tenths of a percent.
    pub battery_deci_pct: u16,
    pub rssi: i16,
    pub stable: bool,
    pub tare_status: TareStatus,
}

/// Hands out sequence numbers and turns buffered readings back into proto payloads.
#[derive(Debug, Clone)]
pub struct ReadingBuilder {
    boot: u32,
    next_seq: u32,
}

impl ReadingBuilder {
    /// `boot` is this start-up's counter, already incremented and persisted.
    pub const fn new(boot: u32) -> Self {
        Self { boot, next_seq: 0 }
    }

    pub const fn boot(&self) -> u32 {
        self.boot
    }

    /// The sequence number the next reading will get.
    pub const fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Numbers a new reading and packs it for the ring.
    pub fn take(&mut self, inputs: &ReadingInputs) -> BufferedReading {
        let seq = self.next_seq;
        // At one reading every 5 s, u32 lasts 680 years: saturating never happens in
        // practice and cannot repeat an earlier seq the way wrapping would.
        self.next_seq = self.next_seq.saturating_add(1);
        BufferedReading {
            seq,
            ts: inputs.ts,
            weight_centi_lbs: round_to_i32(inputs.weight_lbs * 100.0),
            level_centi_pct: inputs
                .level_pct
                .map_or(NO_LEVEL, |p| round(p.clamp(0.0, 100.0) * 100.0) as u16),
            battery_mv: round(inputs.battery.volts.clamp(0.0, 5.0) * 1_000.0) as u16,
            battery_deci_pct: round(inputs.battery.percent.clamp(0.0, 100.0) * 10.0) as u16,
            rssi: inputs.rssi.clamp(-127, 0),
            stable: inputs.stable,
            tare_status: inputs.tare_status,
        }
    }

    /// The proto payload for a buffered reading of this boot.
    pub fn payload(&self, r: &BufferedReading) -> Reading {
        Reading {
            v: CONTRACT_VERSION,
            seq: r.seq,
            boot: self.boot,
            ts: r.ts,
            weight_lbs: f64::from(r.weight_centi_lbs) / 100.0,
            level_pct: (r.level_centi_pct != NO_LEVEL)
                .then(|| f64::from(r.level_centi_pct) / 100.0),
            battery_v: f64::from(r.battery_mv) / 1_000.0,
            battery_pct: f64::from(r.battery_deci_pct) / 10.0,
            rssi: r.rssi,
            stable: r.stable,
            tare_status: r.tare_status,
            gw: None,
            gseq: None,
        }
    }

    /// Encodes a buffered reading as the JSON published on `keg/readings/{id}`.
    pub fn encode(&self, r: &BufferedReading, buf: &mut [u8]) -> Result<usize, EncodeError> {
        scalesense_proto::encode(&self.payload(r), buf)
    }

    /// Whether the payload of `r` satisfies the contract (weights beyond the platform's range
    /// do not, and are not worth buffering).
    pub fn validate(&self, r: &BufferedReading) -> Result<(), ContractError> {
        self.payload(r).validate()
    }
}

fn round_to_i32(x: f64) -> i32 {
    if x.is_nan() {
        0
    } else {
        // `as` saturates out-of-range floats; validation rejects such weights anyway.
        round(x) as i32
    }
}

#[cfg(test)]
mod tests {
    use scalesense_proto::decode_reading;

    use super::*;

    fn inputs() -> ReadingInputs {
        ReadingInputs {
            ts: Some(1_773_835_200_000),
            weight_lbs: 87.3,
            level_pct: Some(54.1),
            battery: Battery {
                volts: 3.94,
                percent: 78.0,
            },
            rssi: -61,
            stable: true,
            tare_status: TareStatus::Complete,
        }
    }

    #[test]
    fn seq_counts_from_zero_within_a_boot() {
        let mut b = ReadingBuilder::new(7);
        assert_eq!(b.take(&inputs()).seq, 0);
        assert_eq!(b.take(&inputs()).seq, 1);
        assert_eq!(b.next_seq(), 2);
        // A new boot starts over at 0 with a higher boot counter.
        let mut next = ReadingBuilder::new(8);
        let r = next.take(&inputs());
        assert_eq!((next.payload(&r).boot, r.seq), (8, 0));
    }

    #[test]
    fn encodes_and_decodes_back_through_proto() {
        let mut b = ReadingBuilder::new(3);
        let r = b.take(&inputs());
        let mut buf = [0u8; 512];
        let n = b.encode(&r, &mut buf).unwrap();
        let json = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(json.contains("\"weight_lbs\":87.3"), "{json}");
        assert!(!json.contains("\"gw\""), "{json}");
        let back = decode_reading(&buf[..n]).unwrap();
        assert_eq!(back, b.payload(&r));
        assert_eq!(back.seq, 0);
        assert_eq!(back.boot, 3);
        assert_eq!(back.ts, Some(1_773_835_200_000));
        assert!((back.weight_lbs - 87.3).abs() < 1e-9);
        assert_eq!(back.level_pct, Some(54.1));
        // Exact: the wire carries the fixed-point value's shortest decimal form.
        assert_eq!(back.battery_v.to_bits(), 3.94f64.to_bits());
        assert_eq!(back.battery_pct.to_bits(), 78.0f64.to_bits());
        assert_eq!(back.rssi, -61);
        assert!(back.stable);
        assert_eq!(back.tare_status, TareStatus::Complete);
    }

    #[test]
    fn untared_reading_has_no_level_and_no_clock_has_no_ts() {
        let mut b = ReadingBuilder::new(1);
        let r = b.take(&ReadingInputs {
            ts: None,
            level_pct: None,
            tare_status: TareStatus::None,
            ..inputs()
        });
        let mut buf = [0u8; 512];
        let n = b.encode(&r, &mut buf).unwrap();
        let back = decode_reading(&buf[..n]).unwrap();
        assert_eq!(back.level_pct, None);
        assert_eq!(back.ts, None);
        assert_eq!(back.tare_status, TareStatus::None);
    }

    #[test]
    fn out_of_range_weight_is_refused_by_the_contract() {
        let mut b = ReadingBuilder::new(1);
        let r = b.take(&ReadingInputs {
            weight_lbs: 900.0,
            ..inputs()
        });
        assert!(b.validate(&r).is_err());
        assert!(b.encode(&r, &mut [0u8; 512]).is_err());
    }

    #[test]
    fn buffered_reading_stays_compact() {
        assert!(size_of::<BufferedReading>() <= 40);
    }
}
