//! The MQTT contract between scales, gateways and the server (BRIEF §3, `docs/contract.md`).
//!
//! This crate exists so that the contract cannot drift: the firmware, the simulator, the gateway
//! and the server all encode and decode through these types. It is `no_std` and allocation-free
//! so the ESP32-C3 firmware can use it; the `std` feature adds `serde_json` helpers for hosts.
//! It must never grow I/O, a clock or an allocator requirement.
//!
//! - [`topic`]: topic names, subscription filters, QoS and retain per topic.
//! - [`payload`]: the payload types and their range rules.
//! - [`decode`] / [`encode`] (and `from_slice` / `to_vec` with `std`): the only ways in
//!   and out; both validate.
//!
//! ```
//! use scalesense_proto::{Topic, decode_reading, encode, Payload, Reading};
//!
//! let topic = Topic::parse("keg/readings/SCALE-0042").unwrap();
//! assert!(matches!(topic, Topic::Reading(_)) && topic.qos() == 1 && !topic.retained());
//!
//! let bytes = br#"{"v":1,"seq":17,"boot":3,"weight_lbs":87.3,"battery_v":3.94,
//!     "battery_pct":78,"rssi":-61,"stable":true,"tare_status":"pending"}"#;
//! let reading = decode_reading(bytes).unwrap();
//! assert_eq!(reading.level_pct, None);
//!
//! let mut buf = [0u8; Reading::MAX_ENCODED_LEN];
//! let n = encode(&reading, &mut buf).unwrap();
//! assert_eq!(decode_reading(&buf[..n]).unwrap(), reading);
//!
//! let err = decode_reading(br#"{"v":1,"seq":17}"#).unwrap_err();
//! assert_eq!(err.to_string(), "boot: required field is missing");
//! ```
#![no_std]

#[cfg(any(feature = "std", test))]
extern crate std;

mod codec;
pub mod command;
mod de;
pub mod error;
pub mod ids;
pub mod json_check;
pub mod payload;
pub mod topic;

pub use codec::{
    append_forwarding, decode, decode_command, decode_command_for, decode_forwarding,
    decode_gateway_ack, decode_gateway_status, decode_ota, decode_reading, decode_response,
    decode_status, encode,
};
#[cfg(feature = "std")]
pub use codec::{from_slice, to_vec};
pub use command::{CommandName, UnknownCommand};
pub use error::{ContractError, EncodeError};
pub use ids::{CommandId, DeviceId, GatewayId, IdError, LocationId, TapId};
pub use payload::{
    Command, CommandParams, DeviceState, Forwarding, GatewayAck, GatewayStatus, Ota, Payload,
    Reading, Response, ResponseResult, Sha256Hex, Status, TareStatus, UplinkState,
};
pub use topic::{Topic, TopicError};

/// The contract version this build speaks. Every payload carries it as `v`; a payload with a
/// higher `v` is rejected with [`ContractError::UnsupportedVersion`], while unknown fields are
/// ignored so that additive changes need no new version.
pub const CONTRACT_VERSION: u16 = 1;
