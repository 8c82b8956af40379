//! The simulated bar: everything a scale under a keg would feel, as a pure, seeded function of
//! simulated time.
//!
//! [`bar::BarModel`] ties the parts together for one tap: [`keg`] (beer, pours, swaps),
//! [`hours`] (when people drink), [`cooler`] (temperature), [`power`] (the battery), [`radio`]
//! (signal and outages) and [`cell`] (the load cell and its ADC), drawing from [`random`].
//! Nothing here may read a clock, sleep, or touch the network: the runner drives it, and the
//! tests run days of bar life in milliseconds.

pub mod bar;
pub mod cell;
pub mod cooler;
pub mod hours;
pub mod keg;
pub mod power;
pub mod radio;
pub mod random;

pub use bar::{BarModel, STEP_MS, Sample, Step, WorldConfig, WorldEvent};
