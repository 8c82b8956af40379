//! The one thing the scale logic needs from a load cell: a raw reading.
//!
//! The HX711 driver implements it on the board; the simulator implements it with a virtual
//! cell. Anything above this trait works in raw ADC counts and must never know which one it is
//! talking to.

/// A source of raw load-cell readings (signed ADC counts, not yet zeroed or scaled).
pub trait LoadCell {
    type Error;

    /// Blocks until the next conversion is available and returns it.
    fn read_raw(&mut self) -> Result<i32, Self::Error>;
}
