//! Scale Sense's domain logic: the rules that turn load-cell weights into levels, pour rates,
//! alerts and notifications, shared by the server, the storage layer, the simulator and the
//! reports.
//!
//! Everything here is a pure function or a state machine fed values. This crate must never do
//! I/O, spawn tasks or read a clock: time always arrives as a value, so every rule can be tested
//! to the millisecond and replayed after a restart.
//!
//! Time convention: an instant is [`units::EpochMs`] (milliseconds since the Unix epoch, UTC), a
//! length of time is [`std::time::Duration`]. Instants are converted to [`jiff::Timestamp`] only
//! where a location's time zone matters ([`quiet`], [`pour::volume_by_hour_of_day`]).
//! Quantities are SI ([`units::Kilograms`], [`units::Litres`]); pounds and gallons exist only at
//! the edges.

pub mod alert;
pub mod history;
pub mod keg;
pub mod pour;
pub mod quiet;
pub mod roles;
pub mod rules;
pub mod units;
