//! HX711 24-bit load-cell ADC driver, generic over `embedded-hal` 1.0.
//!
//! The HX711 speaks a two-wire protocol: DOUT goes low when a conversion is ready, then the
//! host clocks 24 data bits out MSB first on CLK, followed by 1–3 extra pulses that pick the
//! channel and gain of the *next* conversion. If CLK stays high for more than 60 µs the chip
//! powers down mid-read, and on the ESP32-C3 a radio interrupt can stretch a pulse that long,
//! so every clock pulse of a read runs inside a caller-supplied [`CriticalSection`].
//!
//! This module must never allocate and never wait without a bound: waiting for DOUT is capped
//! by a timeout so a disconnected chip reports [`Error::Timeout`] instead of hanging the scale.

use core::fmt::Debug;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};

use crate::load_cell::LoadCell;

/// What the extra pulses after the 24 data bits select for the next conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gain {
    /// Channel A, gain 128 (1 extra pulse). The chip's state after reset.
    #[default]
    A128,
    /// Channel B, gain 32 (2 extra pulses).
    B32,
    /// Channel A, gain 64 (3 extra pulses).
    A64,
}

impl Gain {
    /// Clock pulses after the 24 data bits that select this gain.
    pub const fn extra_pulses(self) -> u8 {
        match self {
            Gain::A128 => 1,
            Gain::B32 => 2,
            Gain::A64 => 3,
        }
    }
}

/// Runs a closure with interrupts held off.
///
/// On the board this is `critical_section::with`; on the host (tests, simulator) nothing can
/// interrupt, so [`NoInterrupts`] just calls the closure.
pub trait CriticalSection {
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> R;
}

/// A [`CriticalSection`] for contexts without interrupts (host tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInterrupts;

impl CriticalSection for NoInterrupts {
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error<E: Debug> {
    /// A pin reported an error.
    #[error("HX711 pin error: {0:?}")]
    Pin(E),
    /// DOUT did not go low (conversion ready) within the configured timeout.
    #[error("HX711 not ready within {timeout_us} µs")]
    Timeout { timeout_us: u32 },
}

/// High and low time of one clock pulse. The datasheet asks for 0.2–50 µs high; 1 µs keeps a
/// full read near 50 µs and far from the 60 µs power-down threshold per pulse.
pub const PULSE_US: u32 = 1;
/// How long CLK is held high to power the chip down (datasheet: more than 60 µs).
pub const POWER_DOWN_US: u32 = 80;
/// How often DOUT is polled while waiting for a conversion.
pub const POLL_US: u32 = 500;
/// Default bound on waiting for a conversion: the chip converts at 10 Hz (100 ms) or 80 Hz, and
/// needs up to 400 ms to settle after power-up.
pub const DEFAULT_TIMEOUT_US: u32 = 500_000;

/// The driver. `Dout` and `Clk` share one error type, as on every HAL we target.
#[derive(Debug)]
pub struct Hx711<Dout, Clk, Delay, Cs> {
    dout: Dout,
    clk: Clk,
    delay: Delay,
    cs: Cs,
    gain: Gain,
    timeout_us: u32,
}

impl<Dout, Clk, Delay, Cs, E> Hx711<Dout, Clk, Delay, Cs>
where
    Dout: InputPin<Error = E>,
    Clk: OutputPin<Error = E>,
    Delay: DelayNs,
    Cs: CriticalSection,
    E: Debug,
{
    /// Takes the pins and drives CLK low (the chip's normal running state).
    pub fn new(dout: Dout, mut clk: Clk, delay: Delay, cs: Cs) -> Result<Self, Error<E>> {
        clk.set_low().map_err(Error::Pin)?;
        Ok(Self {
            dout,
            clk,
            delay,
            cs,
            gain: Gain::default(),
            timeout_us: DEFAULT_TIMEOUT_US,
        })
    }

    /// Bound on waiting for DOUT to go low, in microseconds.
    #[must_use]
    pub fn with_timeout_us(mut self, timeout_us: u32) -> Self {
        self.timeout_us = timeout_us;
        self
    }

    /// Selects the gain and channel. The chip applies it from the conversion *after* the next
    /// read, because the selection is clocked out at the end of a read.
    pub fn set_gain(&mut self, gain: Gain) {
        self.gain = gain;
    }

    pub fn gain(&self) -> Gain {
        self.gain
    }

    /// True when a conversion is waiting (DOUT low).
    pub fn is_ready(&mut self) -> Result<bool, Error<E>> {
        self.dout.is_low().map_err(Error::Pin)
    }

    /// Polls DOUT every [`POLL_US`] until it goes low or the timeout passes.
    pub fn wait_ready(&mut self) -> Result<(), Error<E>> {
        let mut waited = 0u32;
        loop {
            if self.is_ready()? {
                return Ok(());
            }
            if waited >= self.timeout_us {
                return Err(Error::Timeout {
                    timeout_us: self.timeout_us,
                });
            }
            self.delay.delay_us(POLL_US);
            waited = waited.saturating_add(POLL_US);
        }
    }

    /// Waits for a conversion and reads it as a signed 24-bit value.
    pub fn read(&mut self) -> Result<i32, Error<E>> {
        self.wait_ready()?;
        let Self {
            dout,
            clk,
            delay,
            cs,
            gain,
            ..
        } = self;
        let raw = cs.run(|| -> Result<u32, Error<E>> {
            let mut raw = 0u32;
            for _ in 0..24 {
                clk.set_high().map_err(Error::Pin)?;
                delay.delay_us(PULSE_US);
                let bit = dout.is_high().map_err(Error::Pin)?;
                clk.set_low().map_err(Error::Pin)?;
                delay.delay_us(PULSE_US);
                raw = (raw << 1) | u32::from(bit);
            }
            for _ in 0..gain.extra_pulses() {
                clk.set_high().map_err(Error::Pin)?;
                delay.delay_us(PULSE_US);
                clk.set_low().map_err(Error::Pin)?;
                delay.delay_us(PULSE_US);
            }
            Ok(raw)
        })?;
        Ok(sign_extend_24(raw))
    }

    /// Powers the chip down (CLK held high for more than 60 µs). CLK stays high until
    /// [`Self::power_up`].
    pub fn power_down(&mut self) -> Result<(), Error<E>> {
        self.clk.set_low().map_err(Error::Pin)?;
        self.clk.set_high().map_err(Error::Pin)?;
        self.delay.delay_us(POWER_DOWN_US);
        Ok(())
    }

    /// Wakes the chip. It resets to channel A, gain 128, for its first conversion; the gain
    /// chosen here is clocked out again by the next read.
    pub fn power_up(&mut self) -> Result<(), Error<E>> {
        self.clk.set_low().map_err(Error::Pin)
    }

    /// Gives the pins, the delay and the critical-section hook back.
    pub fn release(self) -> (Dout, Clk, Delay, Cs) {
        (self.dout, self.clk, self.delay, self.cs)
    }
}

impl<Dout, Clk, Delay, Cs, E> LoadCell for Hx711<Dout, Clk, Delay, Cs>
where
    Dout: InputPin<Error = E>,
    Clk: OutputPin<Error = E>,
    Delay: DelayNs,
    Cs: CriticalSection,
    E: Debug,
{
    type Error = Error<E>;

    fn read_raw(&mut self) -> Result<i32, Self::Error> {
        self.read()
    }
}

/// Interprets the low 24 bits as two's complement.
pub const fn sign_extend_24(raw: u32) -> i32 {
    ((raw << 8) as i32) >> 8
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use embedded_hal_mock::eh1::MockError;
    use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as D};
    use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction as P};

    use super::*;

    /// A critical section that counts how often it was entered, to prove reads use it.
    #[derive(Debug, Default)]
    struct CountingCs(u32);

    impl CriticalSection for &mut CountingCs {
        fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
            self.0 += 1;
            f()
        }
    }

    /// Pin transactions for one read of `value` (24 bits) with `extra` gain pulses, DOUT first
    /// reporting ready.
    fn read_transactions(value: u32, extra: u8) -> (Vec<P>, Vec<P>) {
        let mut dout = std::vec![P::get(State::Low)];
        let mut clk = Vec::new();
        for i in (0..24).rev() {
            clk.push(P::set(State::High));
            dout.push(P::get(if (value >> i) & 1 == 1 {
                State::High
            } else {
                State::Low
            }));
            clk.push(P::set(State::Low));
        }
        for _ in 0..extra {
            clk.push(P::set(State::High));
            clk.push(P::set(State::Low));
        }
        (dout, clk)
    }

    fn driver_for(value: u32, extra: u8) -> (Pin, Pin, Hx711<Pin, Pin, NoopDelay, NoInterrupts>) {
        let (dout_t, mut clk_t) = read_transactions(value, extra);
        clk_t.insert(0, P::set(State::Low));
        let dout = Pin::new(&dout_t);
        let clk = Pin::new(&clk_t);
        let hx = Hx711::new(dout.clone(), clk.clone(), NoopDelay::new(), NoInterrupts).unwrap();
        (dout, clk, hx)
    }

    #[test]
    fn reads_positive_value_msb_first() {
        let (mut dout, mut clk, mut hx) = driver_for(0x12_3456, 1);
        assert_eq!(hx.read().unwrap(), 0x12_3456);
        dout.done();
        clk.done();
    }

    #[test]
    fn sign_extends_negative_values() {
        let (mut dout, mut clk, mut hx) = driver_for(0xFF_FFFE, 1);
        assert_eq!(hx.read().unwrap(), -2);
        dout.done();
        clk.done();
        assert_eq!(sign_extend_24(0x80_0000), -8_388_608);
        assert_eq!(sign_extend_24(0x7F_FFFF), 8_388_607);
        assert_eq!(sign_extend_24(0), 0);
    }

    #[test]
    fn gain_selects_extra_pulses() {
        for (gain, extra) in [(Gain::A128, 1), (Gain::B32, 2), (Gain::A64, 3)] {
            let (mut dout, mut clk, mut hx) = driver_for(0x00_0100, extra);
            hx.set_gain(gain);
            assert_eq!(hx.read().unwrap(), 256);
            assert_eq!(hx.gain(), gain);
            dout.done();
            clk.done();
        }
    }

    #[test]
    fn every_pulse_is_timed_and_inside_the_critical_section() {
        let (dout_t, mut clk_t) = read_transactions(1, 1);
        clk_t.insert(0, P::set(State::Low));
        let mut dout = Pin::new(&dout_t);
        let mut clk = Pin::new(&clk_t);
        // 25 pulses, each 1 µs high then 1 µs low.
        let delays: Vec<D> = (0..50).map(|_| D::delay_us(PULSE_US)).collect();
        let mut delay = CheckedDelay::new(&delays);
        let mut cs = CountingCs::default();
        let mut hx = Hx711::new(dout.clone(), clk.clone(), delay.clone(), &mut cs).unwrap();
        assert_eq!(hx.read().unwrap(), 1);
        drop(hx);
        assert_eq!(cs.0, 1, "one critical section per read");
        dout.done();
        clk.done();
        delay.done();
    }

    #[test]
    fn waits_for_ready_then_times_out() {
        // Not ready three times with a 1 ms budget at 500 µs per poll: check, wait, check,
        // wait, check → timeout.
        let dout_t = [
            P::get(State::High),
            P::get(State::High),
            P::get(State::High),
        ];
        let mut dout = Pin::new(&dout_t);
        let mut clk = Pin::new(&[P::set(State::Low)]);
        let mut delay = CheckedDelay::new(&[D::delay_us(POLL_US), D::delay_us(POLL_US)]);
        let mut hx = Hx711::new(dout.clone(), clk.clone(), delay.clone(), NoInterrupts)
            .unwrap()
            .with_timeout_us(1_000);
        assert_eq!(hx.read(), Err(Error::Timeout { timeout_us: 1_000 }));
        dout.done();
        clk.done();
        delay.done();
    }

    #[test]
    fn becomes_ready_after_polling() {
        let (mut dout_t, mut clk_t) = read_transactions(7, 1);
        dout_t.insert(0, P::get(State::High));
        clk_t.insert(0, P::set(State::Low));
        let mut dout = Pin::new(&dout_t);
        let mut clk = Pin::new(&clk_t);
        let mut hx = Hx711::new(dout.clone(), clk.clone(), NoopDelay::new(), NoInterrupts).unwrap();
        assert_eq!(hx.read_raw().unwrap(), 7);
        dout.done();
        clk.done();
    }

    #[test]
    fn pin_errors_are_wrapped() {
        let err = MockError::Io(std::io::ErrorKind::NotConnected);
        let mut dout = Pin::new(&[P::get(State::Low).with_error(err.clone())]);
        let mut clk = Pin::new(&[P::set(State::Low)]);
        let mut hx = Hx711::new(dout.clone(), clk.clone(), NoopDelay::new(), NoInterrupts).unwrap();
        assert_eq!(hx.read(), Err(Error::Pin(err)));
        dout.done();
        clk.done();
    }

    #[test]
    fn power_down_holds_clock_high_past_60us_and_power_up_releases_it() {
        let mut dout = Pin::new(&[]);
        let mut clk = Pin::new(&[
            P::set(State::Low),
            P::set(State::Low),
            P::set(State::High),
            P::set(State::Low),
        ]);
        let mut delay = CheckedDelay::new(&[D::delay_us(POWER_DOWN_US)]);
        let mut hx = Hx711::new(dout.clone(), clk.clone(), delay.clone(), NoInterrupts).unwrap();
        hx.power_down().unwrap();
        hx.power_up().unwrap();
        const { assert!(POWER_DOWN_US > 60) };
        let _ = hx.release();
        dout.done();
        clk.done();
        delay.done();
    }
}
