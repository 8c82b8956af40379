//! The BLE maintenance service, as data (`docs/ble.md` is its prose twin).
//!
//! A phone at the keg (seed 000: BLE for identify, live weight during maintenance, tare and
//! calibrate without a cloud round trip) talks to one primary GATT service. The UUIDs are
//! fixed here, once, so the board's GATT table, the phone app and the docs cannot disagree.
//! Tare and calibrate writes carry the same command JSON as MQTT and go through the same
//! command machine, with the same expiry and duplicate rules.
//!
//! This module holds UUIDs, properties and byte codecs only: it must never touch a radio.

use scalesense_proto::CommandName;

/// Base of every UUID in the service: a random v4 UUID whose first 32 bits are replaced by
/// `5ca1e0NN`, where `NN` numbers the attribute (00 is the service).
const BASE: u128 = 0x5ca1_e000_9230_4243_a614_7dd1_6e22_ee8d;

const fn attribute(n: u8) -> u128 {
    BASE | ((n as u128) << 96)
}

/// The Scale Sense maintenance service; phones filter advertisements on it (seed 000: "service
/// UUID whitelist").
pub const SERVICE_UUID: u128 = attribute(0x00);
/// Notify + read: the live weight (see [`LiveWeight`]), pushed every sample in maintenance.
pub const LIVE_WEIGHT_UUID: u128 = attribute(0x01);
/// Write: identify for N seconds (u16 little-endian; empty or 0 means the default 10 s).
pub const IDENTIFY_UUID: u128 = attribute(0x02);
/// Write: `tare_empty` command JSON, exactly as the MQTT payload.
pub const TARE_EMPTY_UUID: u128 = attribute(0x03);
/// Write: `tare_full` command JSON.
pub const TARE_FULL_UUID: u128 = attribute(0x04);
/// Write: `calibrate` command JSON.
pub const CALIBRATE_UUID: u128 = attribute(0x05);
/// Notify + read: the response JSON to the last command written over BLE.
pub const RESPONSE_UUID: u128 = attribute(0x06);
/// Read: the current status JSON (the same payload as `keg/status/{id}`).
pub const STATUS_UUID: u128 = attribute(0x07);

/// Longest value any characteristic carries (a command, response or status JSON), the same
/// bound as the scale's MQTT payloads. Needs an ATT MTU of at least `MAX_VALUE_LEN + 3`, or
/// long reads and writes.
pub const MAX_VALUE_LEN: usize = crate::scale::PAYLOAD_CAPACITY;

/// Which GATT operations a characteristic allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Properties {
    pub read: bool,
    pub write: bool,
    pub notify: bool,
}

/// One characteristic of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Characteristic {
    pub name: &'static str,
    pub uuid: u128,
    pub properties: Properties,
}

const fn props(read: bool, write: bool, notify: bool) -> Properties {
    Properties {
        read,
        write,
        notify,
    }
}

/// The whole service table.
pub const CHARACTERISTICS: [Characteristic; 7] = [
    Characteristic {
        name: "live_weight",
        uuid: LIVE_WEIGHT_UUID,
        properties: props(true, false, true),
    },
    Characteristic {
        name: "identify",
        uuid: IDENTIFY_UUID,
        properties: props(false, true, false),
    },
    Characteristic {
        name: "tare_empty",
        uuid: TARE_EMPTY_UUID,
        properties: props(false, true, false),
    },
    Characteristic {
        name: "tare_full",
        uuid: TARE_FULL_UUID,
        properties: props(false, true, false),
    },
    Characteristic {
        name: "calibrate",
        uuid: CALIBRATE_UUID,
        properties: props(false, true, false),
    },
    Characteristic {
        name: "response",
        uuid: RESPONSE_UUID,
        properties: props(true, false, true),
    },
    Characteristic {
        name: "status",
        uuid: STATUS_UUID,
        properties: props(true, false, false),
    },
];

/// The 16 bytes of a UUID in the little-endian order BLE puts on the air.
pub const fn uuid_le_bytes(uuid: u128) -> [u8; 16] {
    uuid.to_le_bytes()
}

/// Writes `uuid` in the canonical 8-4-4-4-12 form.
pub fn format_uuid(uuid: u128, out: &mut impl core::fmt::Write) -> core::fmt::Result {
    let b = uuid.to_be_bytes();
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.write_char('-')?;
        }
        write!(out, "{byte:02x}")?;
    }
    Ok(())
}

/// A write to the service, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BleWrite<'a> {
    /// Identify for this many seconds (`None`: the default).
    Identify { duration_s: Option<u16> },
    /// A command, with the MQTT command JSON as payload.
    Command {
        name: CommandName,
        payload: &'a [u8],
    },
}

/// Why a write was refused (reported back as an ATT error by the board).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BleError {
    #[error("characteristic is not writable")]
    NotWritable,
    #[error("identify takes a little-endian u16 number of seconds")]
    BadIdentify,
    #[error("value longer than {MAX_VALUE_LEN} bytes")]
    TooLong,
}

/// Decodes a write to the characteristic `uuid`.
pub fn decode_write(uuid: u128, value: &[u8]) -> Result<BleWrite<'_>, BleError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(BleError::TooLong);
    }
    let command = |name| BleWrite::Command {
        name,
        payload: value,
    };
    match uuid {
        IDENTIFY_UUID => match value {
            [] | [0, 0] => Ok(BleWrite::Identify { duration_s: None }),
            [lo, hi] => Ok(BleWrite::Identify {
                duration_s: Some(u16::from_le_bytes([*lo, *hi])),
            }),
            _ => Err(BleError::BadIdentify),
        },
        TARE_EMPTY_UUID => Ok(command(CommandName::TareEmpty)),
        TARE_FULL_UUID => Ok(command(CommandName::TareFull)),
        CALIBRATE_UUID => Ok(command(CommandName::Calibrate)),
        _ => Err(BleError::NotWritable),
    }
}

/// The live-weight value: 7 bytes, little-endian.
///
/// | bytes | meaning |
/// |---|---|
/// | 0–3 | weight, pounds, `f32` |
/// | 4 | flags: bit 0 stable, bit 1 maintenance mode |
/// | 5–6 | level in hundredths of a percent, `u16`; `0xFFFF` while the scale is not tared |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveWeight {
    pub weight_lbs: f32,
    pub stable: bool,
    pub maintenance: bool,
    pub level_pct: Option<f32>,
}

pub const LIVE_WEIGHT_LEN: usize = 7;
const LEVEL_UNKNOWN: u16 = 0xFFFF;

impl LiveWeight {
    pub fn encode(&self) -> [u8; LIVE_WEIGHT_LEN] {
        let mut out = [0u8; LIVE_WEIGHT_LEN];
        out[0..4].copy_from_slice(&self.weight_lbs.to_le_bytes());
        out[4] = u8::from(self.stable) | (u8::from(self.maintenance) << 1);
        let level = self.level_pct.map_or(LEVEL_UNKNOWN, |p| {
            crate::num::round(f64::from(p.clamp(0.0, 100.0)) * 100.0) as u16
        });
        out[5..7].copy_from_slice(&level.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; LIVE_WEIGHT_LEN]) -> Self {
        let level = u16::from_le_bytes([bytes[5], bytes[6]]);
        Self {
            weight_lbs: f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            stable: bytes[4] & 1 != 0,
            maintenance: bytes[4] & 2 != 0,
            level_pct: (level != LEVEL_UNKNOWN).then(|| f32::from(level) / 100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_distinct_and_share_the_base() {
        let mut s = heapless::String::<36>::new();
        format_uuid(SERVICE_UUID, &mut s).unwrap();
        assert_eq!(s.as_str(), "5ca1e000-9230-4243-a614-7dd16e22ee8d");
        s.clear();
        format_uuid(CALIBRATE_UUID, &mut s).unwrap();
        assert_eq!(s.as_str(), "5ca1e005-9230-4243-a614-7dd16e22ee8d");
        for (i, a) in CHARACTERISTICS.iter().enumerate() {
            assert_ne!(a.uuid, SERVICE_UUID);
            assert_eq!(a.uuid & ((1u128 << 96) - 1), BASE & ((1u128 << 96) - 1));
            for b in &CHARACTERISTICS[i + 1..] {
                assert_ne!(a.uuid, b.uuid, "{} and {}", a.name, b.name);
            }
        }
        assert_eq!(uuid_le_bytes(SERVICE_UUID)[15], 0x5c);
    }

    #[test]
    fn writes_route_to_commands() {
        let json = br#"{"v":1,"id":"c1"}"#;
        assert_eq!(
            decode_write(TARE_FULL_UUID, json),
            Ok(BleWrite::Command {
                name: CommandName::TareFull,
                payload: json
            })
        );
        assert_eq!(
            decode_write(IDENTIFY_UUID, &30u16.to_le_bytes()),
            Ok(BleWrite::Identify {
                duration_s: Some(30)
            })
        );
        assert_eq!(
            decode_write(IDENTIFY_UUID, &[]),
            Ok(BleWrite::Identify { duration_s: None })
        );
        assert_eq!(
            decode_write(IDENTIFY_UUID, &[1, 2, 3]),
            Err(BleError::BadIdentify)
        );
        assert_eq!(decode_write(STATUS_UUID, b"x"), Err(BleError::NotWritable));
        assert_eq!(
            decode_write(CALIBRATE_UUID, &[b' '; MAX_VALUE_LEN + 1]),
            Err(BleError::TooLong)
        );
        // Every writable characteristic in the table decodes; no other does.
        for c in CHARACTERISTICS {
            assert_eq!(
                decode_write(c.uuid, &[]).is_ok(),
                c.properties.write,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn live_weight_round_trips() {
        let w = LiveWeight {
            weight_lbs: 87.25,
            stable: true,
            maintenance: true,
            level_pct: Some(54.1),
        };
        let bytes = w.encode();
        assert_eq!(bytes[4], 0b11);
        assert_eq!(
            bytes,
            [0x00, 0x80, 0xae, 0x42, 0x03, 0x22, 0x15],
            "docs/ble.md example"
        );
        let back = LiveWeight::decode(&bytes);
        assert!((back.weight_lbs - 87.25).abs() < f32::EPSILON);
        assert!((back.level_pct.unwrap() - 54.1).abs() < 0.01);
        let none = LiveWeight {
            level_pct: None,
            stable: false,
            ..w
        };
        let back = LiveWeight::decode(&none.encode());
        assert_eq!(back.level_pct, None);
        assert!(!back.stable);
    }
}
