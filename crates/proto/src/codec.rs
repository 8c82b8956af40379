//! Encoding and decoding entry points. Decoding is: check the bytes are one well-formed JSON
//! object, read `v` first (so a newer contract is reported as such, not as whatever field
//! changed), read the payload with field tracking, then validate its ranges. Encoding validates
//! first, so nothing invalid is ever put on the wire.
//!
//! The `no_std` functions use serde-json-core and need no allocator; with the `std` feature,
//! [`from_slice`] and [`to_vec`] do the same through serde_json and return the same errors.

use crate::command::CommandName;
use crate::de::{ForwardingProbe, Tracked, Tracker, VersionProbe};
use crate::error::{ContractError, EncodeError};
use crate::json_check;
use crate::payload::{
    Command, Forwarding, GatewayAck, GatewayStatus, Ota, Payload, Reading, Response, Status,
};
use core::fmt::{self, Write};

/// A JSON parser the decoder can run a tracked read with.
trait Backend {
    /// A tracker that matches how this parser hands over strings.
    fn tracker() -> Tracker;
    /// Read `T` from all of `bytes`; on failure the tracker knows why.
    fn parse<T: Tracked>(bytes: &[u8], t: &Tracker) -> Result<T, ()>;
}

/// serde-json-core: `no_std`, no allocation. It gets no unescape buffer, so strings arrive
/// escaped and only known keys and fields are unescaped (into bounded buffers); an unknown
/// field's string of any length is skipped, as serde_json skips it.
struct Core;

impl Backend for Core {
    fn tracker() -> Tracker {
        Tracker::raw_strings()
    }

    fn parse<T: Tracked>(bytes: &[u8], t: &Tracker) -> Result<T, ()> {
        let mut de = serde_json_core::de::Deserializer::new(bytes, None);
        let value = T::read_object(&mut de, t).map_err(drop)?;
        de.end().map_err(drop)?;
        Ok(value)
    }
}

#[cfg(feature = "std")]
struct Json;

#[cfg(feature = "std")]
impl Backend for Json {
    fn tracker() -> Tracker {
        Tracker::default()
    }

    fn parse<T: Tracked>(bytes: &[u8], t: &Tracker) -> Result<T, ()> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = T::read_object(&mut de, t).map_err(drop)?;
        de.end().map_err(drop)?;
        Ok(value)
    }
}

fn read<B: Backend, T: Tracked>(bytes: &[u8]) -> Result<T, ContractError> {
    let tracker = B::tracker();
    B::parse(bytes, &tracker).map_err(|()| tracker.error())
}

fn decode_with<B: Backend, T: Payload>(bytes: &[u8]) -> Result<T, ContractError> {
    json_check::check(bytes)?;
    let probe: VersionProbe = read::<B, _>(bytes)?;
    crate::payload::check_probe_version(probe.v)?;
    let value: T = read::<B, _>(bytes)?;
    value.validate()?;
    Ok(value)
}

/// Decode and validate any payload of the contract (`no_std`, no allocation).
pub fn decode<T: Payload>(bytes: &[u8]) -> Result<T, ContractError> {
    decode_with::<Core, T>(bytes)
}

/// Decode a reading (`keg/readings/{device_id}`).
pub fn decode_reading(bytes: &[u8]) -> Result<Reading, ContractError> {
    decode(bytes)
}

/// Decode a status (`keg/status/{device_id}`).
pub fn decode_status(bytes: &[u8]) -> Result<Status, ContractError> {
    decode(bytes)
}

/// Decode a command (`keg/command/{device_id}/{name}`). Run [`Command::validate_for`] with the
/// name from the topic, or use [`decode_command_for`].
pub fn decode_command(bytes: &[u8]) -> Result<Command, ContractError> {
    decode(bytes)
}

/// Decode a command and apply the rules of the command named in its topic.
pub fn decode_command_for(bytes: &[u8], name: CommandName) -> Result<Command, ContractError> {
    let command = decode_command(bytes)?;
    command.params.validate_for(name)?;
    Ok(command)
}

/// Decode a command response (`keg/response/{device_id}`).
pub fn decode_response(bytes: &[u8]) -> Result<Response, ContractError> {
    decode(bytes)
}

/// Decode an OTA notice (`keg/ota/{device_id}`).
pub fn decode_ota(bytes: &[u8]) -> Result<Ota, ContractError> {
    decode(bytes)
}

/// Decode a gateway status (`gw/status/{gateway_id}`).
pub fn decode_gateway_status(bytes: &[u8]) -> Result<GatewayStatus, ContractError> {
    decode(bytes)
}

/// Decode a gateway commit confirmation (`gw/ack/{gateway_id}`).
pub fn decode_gateway_ack(bytes: &[u8]) -> Result<GatewayAck, ContractError> {
    decode(bytes)
}

/// The `gw`/`gseq` a gateway added to an uplink payload of any type (`None` if it came
/// straight from a scale). Only those two fields are read: `v` and the rest are not checked.
pub fn decode_forwarding(bytes: &[u8]) -> Result<Option<Forwarding>, ContractError> {
    json_check::check(bytes)?;
    let probe: ForwardingProbe = read::<Core, _>(bytes)?;
    Forwarding::from_pair(probe.gw, probe.gseq)
}

/// What a gateway forwards: `payload` (one JSON object, as received from a scale) with
/// `"gw":…,"gseq":…` added as its last fields, written into `out`. The rest of the payload is
/// copied byte for byte, unvalidated: the server judges it. Refuses a payload that is not one
/// JSON object or that already carries `gw` or `gseq`.
pub fn append_forwarding(
    payload: &[u8],
    forwarding: &Forwarding,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    forwarding.validate()?;
    if decode_forwarding(payload)?.is_some() {
        return Err(ContractError::Invalid {
            field: "gw",
            reason: "already set by a gateway",
        }
        .into());
    }
    let open = payload.iter().position(|b| *b == b'{');
    let close = payload.iter().rposition(|b| *b == b'}');
    let (Some(open), Some(close)) = (open, close) else {
        return Err(ContractError::Malformed.into());
    };
    let empty = payload[open + 1..close].iter().all(u8::is_ascii_whitespace);
    let mut w = SliceWriter { out, len: 0 };
    w.bytes(&payload[..close])?;
    if !empty {
        w.bytes(b",")?;
    }
    // Ids are plain ASCII letters, digits, `-` and `_`: nothing to escape.
    write!(
        w,
        r#""gw":"{}","gseq":{}}}"#,
        forwarding.gw, forwarding.gseq
    )
    .map_err(|_| w.too_small())?;
    Ok(w.len)
}

struct SliceWriter<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl SliceWriter<'_> {
    fn too_small(&self) -> EncodeError {
        EncodeError::BufferTooSmall {
            capacity: self.out.len(),
        }
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let end = self.len + b.len();
        if end > self.out.len() {
            return Err(self.too_small());
        }
        self.out[self.len..end].copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// Validate and encode `value` into `buf` (`no_std`); returns the number of bytes written.
pub fn encode<T: Payload>(value: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    value.validate()?;
    serde_json_core::to_slice(value, buf).map_err(|_| EncodeError::BufferTooSmall {
        capacity: buf.len(),
    })
}

/// Decode and validate any payload through serde_json; same rules and errors as [`decode`].
#[cfg(feature = "std")]
pub fn from_slice<T: Payload>(bytes: &[u8]) -> Result<T, ContractError> {
    decode_with::<Json, T>(bytes)
}

/// Validate and encode `value` through serde_json.
#[cfg(feature = "std")]
pub fn to_vec<T: Payload>(value: &T) -> Result<std::vec::Vec<u8>, EncodeError> {
    value.validate()?;
    let mut out = std::vec::Vec::with_capacity(256);
    // Writing into a Vec cannot fail, and a validated payload has only finite numbers and
    // string keys, so serde_json has nothing to refuse.
    serde_json::to_writer(&mut out, value)
        .unwrap_or_else(|e| unreachable!("serde_json refused a validated payload: {e}"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The `no_std` path on its own (these run without the `std` feature too).
    use super::*;
    use crate::ids::GatewayId;
    use crate::payload::TareStatus;

    const READING: &[u8] = br#"{"v":1,"seq":17,"boot":3,"weight_lbs":87.3,"level_pct":54.1,"battery_v":3.94,"battery_pct":78,"rssi":-61,"stable":true,"tare_status":"complete"}"#;

    #[test]
    fn decodes_and_re_encodes_byte_for_byte() {
        let r = decode_reading(READING).unwrap();
        assert_eq!((r.seq, r.boot, r.rssi), (17, 3, -61));
        assert_eq!(r.tare_status, TareStatus::Complete);
        let mut buf = [0u8; Reading::MAX_ENCODED_LEN];
        let n = encode(&r, &mut buf).unwrap();
        // Only `78` → `78.0` differs: floats are written as floats.
        assert_eq!(
            &buf[..n],
            br#"{"v":1,"seq":17,"boot":3,"weight_lbs":87.3,"level_pct":54.1,"battery_v":3.94,"battery_pct":78.0,"rssi":-61,"stable":true,"tare_status":"complete"}"#
        );
    }

    #[test]
    fn errors_name_the_field_without_std() {
        assert_eq!(
            decode_reading(br#"{"v":1,"seq":17}"#),
            Err(ContractError::Missing { field: "boot" })
        );
        assert_eq!(
            decode_gateway_ack(br#"{"ranges":true,"v":1}"#),
            Err(ContractError::WrongType {
                field: "ranges",
                expected: "an array of [first, last] integer pairs"
            })
        );
        assert_eq!(
            decode_status(br#"{"state":7,"v":3}"#),
            Err(ContractError::UnsupportedVersion {
                found: 3,
                supported: 1
            })
        );
        assert_eq!(decode_ota(b"{\"v\":1"), Err(ContractError::Malformed));
    }

    #[test]
    fn escaped_strings_are_unescaped_only_where_needed() {
        let s =
            decode_status(br#"{"v":1,"st\u0061te":"online","fw":"1.0\/\"b\"","x":"\n"}"#).unwrap();
        assert_eq!(s.fw.unwrap().as_str(), "1.0/\"b\"");
    }

    #[test]
    fn commands_are_checked_against_their_name() {
        let bytes = br#"{"v":1,"id":"c1","params":{"duration_s":900},"issued_at":1773830400000,"expires_at":1773830700000}"#;
        assert!(decode_command_for(bytes, CommandName::MaintenanceEnter).is_ok());
        assert_eq!(
            decode_command_for(bytes, CommandName::Identify)
                .unwrap_err()
                .field(),
            Some("params.duration_s")
        );
    }

    #[test]
    fn forwarding_round_trip_without_std() {
        let fwd = Forwarding {
            gw: GatewayId::try_from("gw-1").unwrap(),
            gseq: 9,
        };
        let mut out = [0u8; 256];
        let n = append_forwarding(READING, &fwd, &mut out).unwrap();
        assert_eq!(decode_forwarding(&out[..n]), Ok(Some(fwd.clone())));
        let r = decode_reading(&out[..n]).unwrap();
        assert_eq!((r.gw, r.gseq), (Some(fwd.gw), Some(9)));
    }
}
