//! The Scale Sense server (BRIEF §5): ingest from the embedded rmqtt broker's publish hook or
//! from an external broker's persistent session, one group-commit pipeline into the store, live
//! events per location, and health and metrics over HTTP. `scalesense up` and `scalesense serve`
//! are thin wrappers around [`app`].
//!
//! The one invariant everything here keeps: **a message is acknowledged only after it is
//! committed** (or stored as a dead letter). The embedded broker's PUBACK, an external broker's
//! manual ack and a gateway's `gw/ack` all wait for the pipeline's answer.

pub mod app;
pub mod cli;
pub mod clock;
pub mod commands;
#[cfg(feature = "embedded-broker")]
pub mod demo;
pub mod effects;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod events;
pub mod gwack;
pub mod health;
pub mod http;
pub mod pipeline;
pub mod subscriber;
pub mod telemetry;
pub mod web;
