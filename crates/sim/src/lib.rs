//! `scalesense-sim`: a fleet of virtual scales that run the real firmware core against a
//! simulated bar and talk MQTT exactly like the hardware (BRIEF §3, §8).
//!
//! Pure and I/O are kept apart. The pure half — [`world`] (the bar: kegs, pours, cooler,
//! battery, radio, load cell), [`plan`] (who each scale is) and [`device`] (firmware plus
//! world, no network) — is a deterministic function of the seed and simulated time and is
//! tested without a broker or a clock. The I/O half — [`fleet`] and its per-scale runner —
//! drives one [`scalesense_firmware_core::Scale`] per device over its own MQTT connection on a
//! virtual clock (`sim_now = start + real elapsed × speed`). [`cli`] is `scalesense sim`.
//!
//! The simulator never publishes on a scale's behalf what the firmware would not (a keg swap
//! is only a new weight on the load cell), and never bypasses the firmware's contract code.

pub mod cli;
pub mod device;
pub mod fleet;
pub mod plan;
mod runner;
pub mod world;

pub use device::{RunOutcome, VirtualScale};
pub use fleet::{
    BrokerAddr, Fleet, FleetConfig, FleetError, FleetHandle, FleetReport, FleetStats, SimClock,
    StatsSnapshot,
};
pub use plan::ScalePlan;
pub use world::{BarModel, WorldConfig};
