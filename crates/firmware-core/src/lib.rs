//! The scale's logic, free of hardware: everything the ESP32-C3 firmware does that can be
//! tested on a laptop, and that the simulator runs against a virtual load cell.
//!
//! Layers, bottom up: [`hx711`] (the ADC driver, over `embedded-hal` 1.0) behind the
//! [`load_cell::LoadCell`] trait; [`filter`] (median, moving average, stability, temperature);
//! [`calibration`] (counts → pounds → level); [`battery`]; [`reading`] (numbering and encoding
//! through `scalesense-proto`); [`ring`] (the offline buffer); [`settings`] (what survives a
//! reboot); [`command`] (the command machine); [`ble`] (the maintenance GATT service as data);
//! [`sntp`] (wall-clock time packets); and [`scale`], the state machine that ties them together.
//!
//! This crate is `no_std` and never allocates, blocks on a clock or touches a radio: time comes
//! in as numbers, I/O goes out as [`scale::Action`]s. The board binary must stay thin glue.
#![no_std]

pub mod battery;
pub mod ble;
pub mod calibration;
pub mod command;
pub mod filter;
pub mod hx711;
pub mod load_cell;
mod num;
pub mod reading;
pub mod ring;
pub mod scale;
pub mod settings;
pub mod sntp;

pub use scale::{Action, DeviceConfig, Handled, MessageError, Publish, Scale, Screen};
