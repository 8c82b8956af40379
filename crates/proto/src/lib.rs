//! The MQTT contract between scales, gateways and the server (BRIEF §3, `docs/contract.md`).
//!
//! This crate exists so that the contract cannot drift: the firmware, the simulator, the gateway
//! and the server all encode and decode through these types. It is `no_std` and allocation-free
//! so the ESP32-C3 firmware can use it; the `std` feature adds `serde_json` helpers for hosts.
//! It must never grow I/O, a clock or an allocator requirement.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod ids;

pub use ids::{CommandId, DeviceId, GatewayId, IdError, LocationId, TapId};
