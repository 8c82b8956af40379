//! The bar gateway (BRIEF §7, issue 10): durable store-and-forward between the bar's MQTT broker
//! and the server, the downlink relay for commands and OTA notices, and health.
//!
//! A scale's message is acknowledged to the bar's broker only once it is fsync'd in the
//! [`queue`]; it is deleted only when the server confirms the commit on `gw/ack/{gateway_id}` —
//! a broker's PUBACK is never taken as durability — and everything unconfirmed is resent after
//! any reconnect, restart or confirmation timeout (the server stores each reading once). This
//! crate never talks to the server except through the MQTT contract in `scalesense-proto`.
//!
//! - [`queue`]: the on-disk log, its crash recovery and disk quota.
//! - [`window`]: which queued messages to send next (a pure state machine).
//! - [`gateway`]: the tasks wiring brokers, queue and window together; [`run`] for the CLI.
//! - [`health`]: `gw/status/{id}`, `/healthz` and `/metrics`.
//! - [`config`]: the `scalesense gateway` flags ([`GatewayArgs`]).

pub mod config;
pub mod gateway;
pub mod health;
pub mod queue;
pub mod ranges;
pub mod window;

pub use config::{BrokerUrl, GatewayArgs};
pub use gateway::{Gateway, GatewayError, run};
