//! The scale's peripherals (seed 000 pin map) behind small methods the main loop calls.
//!
//! HX711 DOUT GPIO0 / CLK GPIO10, battery on GPIO4 (ADC1 channel 4, usable while Wi-Fi runs)
//! through a 470 k / 470 k divider at 11 dB, status LED GPIO8, SSD1306 128x32 on I2C
//! (SDA GPIO7, SCL GPIO3), the chip's temperature sensor, and the settings flash. No decisions
//! are made here: values go to the core, actions come back.

use embassy_time::Timer;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Baseline, Text};
use esp_bootloader_esp_idf::partitions::{
    self, DataPartitionSubType, PARTITION_TABLE_MAX_LEN, PartitionType,
};
use esp_hal::Blocking;
use esp_hal::analog::adc::{Adc, AdcCalCurve, AdcConfig, AdcPin, Attenuation};
use esp_hal::delay::Delay;
use esp_hal::gpio::{Input, InputConfig, Level, Output, OutputConfig};
use esp_hal::i2c::master::{Config as I2cConfig, I2c};
use esp_hal::peripherals::{ADC1, FLASH, GPIO0, GPIO3, GPIO4, GPIO7, GPIO8, GPIO10, I2C0, TSENS};
use esp_hal::time::Rate;
use esp_hal::tsens::{Config as TsensConfig, TemperatureSensor};
use esp_storage::FlashStorage;
use log::{info, warn};
use scalesense_firmware_core::Screen;
use scalesense_firmware_core::battery::Battery;
use scalesense_firmware_core::hx711::{CriticalSection, Hx711};
use scalesense_firmware_core::settings::FlashStore;
use ssd1306::mode::BufferedGraphicsMode;
use ssd1306::prelude::*;
use ssd1306::{I2CDisplayInterface, Ssd1306};

/// Runs the HX711 clock pulses with interrupts off, so a radio interrupt cannot stretch a
/// pulse past the chip's 60 µs power-down threshold.
pub struct InterruptsOff;

impl CriticalSection for InterruptsOff {
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        critical_section::with(|_| f())
    }
}

type LoadCell = Hx711<Input<'static>, Output<'static>, Delay, InterruptsOff>;
type Display = Ssd1306<
    I2CInterface<I2c<'static, Blocking>>,
    DisplaySize128x32,
    BufferedGraphicsMode<DisplaySize128x32>,
>;
type BatteryPin = AdcPin<GPIO4<'static>, ADC1<'static>, AdcCalCurve<ADC1<'static>>>;

/// The pins and peripherals the scale uses.
pub struct Pins {
    pub hx711_dout: GPIO0<'static>,
    pub hx711_clk: GPIO10<'static>,
    pub battery: GPIO4<'static>,
    pub adc: ADC1<'static>,
    pub led: GPIO8<'static>,
    pub sda: GPIO7<'static>,
    pub scl: GPIO3<'static>,
    pub i2c: I2C0<'static>,
    pub tsens: TSENS<'static>,
}

pub struct Hardware {
    load_cell: LoadCell,
    adc: Adc<'static, ADC1<'static>, Blocking>,
    battery_pin: BatteryPin,
    led: Output<'static>,
    display: Option<Display>,
    temperature: Option<TemperatureSensor<'static>>,
}

/// How long to wait for a conversion before giving up on one sample (the HX711 converts every
/// 100 ms at 10 SPS).
const READY_POLLS: u32 = 30;
const READY_POLL_MS: u64 = 10;
/// ADC samples averaged per battery measurement.
const BATTERY_SAMPLES: u32 = 8;

impl Hardware {
    pub fn new(pins: Pins) -> Self {
        let dout = Input::new(pins.hx711_dout, InputConfig::default());
        let clk = Output::new(pins.hx711_clk, Level::Low, OutputConfig::default());
        let load_cell = match Hx711::new(dout, clk, Delay::new(), InterruptsOff) {
            Ok(hx) => hx,
            Err(err) => crate::fatal(format_args!("HX711 setup failed: {err}")),
        };

        let mut adc_config = AdcConfig::new();
        let battery_pin = adc_config
            .enable_pin_with_cal::<_, AdcCalCurve<ADC1<'static>>>(pins.battery, Attenuation::_11dB);
        let adc = Adc::new(pins.adc, adc_config);

        // GPIO8 is a strapping pin with no pull-down at reset: drive it low at once.
        let led = Output::new(pins.led, Level::Low, OutputConfig::default());

        let display = I2c::new(
            pins.i2c,
            I2cConfig::default().with_frequency(Rate::from_khz(400)),
        )
        .ok()
        .map(|i2c| i2c.with_sda(pins.sda).with_scl(pins.scl))
        .and_then(|i2c| {
            let mut display = Ssd1306::new(
                I2CDisplayInterface::new(i2c),
                DisplaySize128x32,
                DisplayRotation::Rotate0,
            )
            .into_buffered_graphics_mode();
            match display.init() {
                Ok(()) => Some(display),
                Err(err) => {
                    warn!("OLED not answering ({err:?}); running without a display");
                    None
                }
            }
        });

        let temperature = TemperatureSensor::new(pins.tsens, TsensConfig::default()).ok();

        Self {
            load_cell,
            adc,
            battery_pin,
            led,
            display,
            temperature,
        }
    }

    /// One raw HX711 reading, or `None` when the chip did not become ready in time.
    pub async fn sample(&mut self) -> Option<i32> {
        for _ in 0..READY_POLLS {
            // Waiting here (not inside the driver's blocking poll) keeps the network running.
            if matches!(self.load_cell.is_ready(), Ok(true)) {
                return match self.load_cell.read() {
                    Ok(raw) => Some(raw),
                    Err(err) => match err {
                        scalesense_firmware_core::hx711::Error::Timeout { .. } => None,
                        scalesense_firmware_core::hx711::Error::Pin(never) => match never {},
                    },
                };
            }
            Timer::after_millis(READY_POLL_MS).await;
        }
        None
    }

    /// The chip's temperature, the nearest thing to the cell's temperature on this board.
    pub fn temperature_c(&self) -> Option<f64> {
        self.temperature
            .as_ref()
            .map(|t| f64::from(t.get_temperature().to_celsius()))
    }

    /// Battery voltage and charge from an average of ADC readings.
    pub fn battery(&mut self) -> Battery {
        let mut total_mv = 0u32;
        for _ in 0..BATTERY_SAMPLES {
            let mv = nb::block!(self.adc.read_oneshot(&mut self.battery_pin)).unwrap_or(0);
            total_mv += u32::from(mv);
        }
        Battery::from_pin_millivolts(total_mv / BATTERY_SAMPLES)
    }

    pub fn set_led(&mut self, on: bool) {
        self.led
            .set_level(if on { Level::High } else { Level::Low });
    }

    /// Draws the three lines of `screen`.
    pub fn show(&mut self, screen: &Screen) {
        let Some(display) = self.display.as_mut() else {
            return;
        };
        let style = MonoTextStyle::new(&FONT_6X10, BinaryColor::On);
        display.clear_buffer();
        for (row, line) in screen.lines().iter().enumerate() {
            let y = (row as i32) * 11;
            // Drawing into the RAM buffer cannot fail.
            let _ = Text::with_baseline(line, Point::new(0, y), style, Baseline::Top).draw(display);
        }
        if let Err(err) = display.flush() {
            warn!("OLED write failed: {err:?}");
        }
    }
}

/// Why the settings flash cannot be used.
#[derive(Debug)]
pub enum StoreError {
    PartitionTable(partitions::Error),
    NoNvsPartition,
    NvsTooSmall(u32),
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PartitionTable(err) => write!(f, "partition table unreadable: {err:?}"),
            Self::NoNvsPartition => f.write_str("no nvs partition in the partition table"),
            Self::NvsTooSmall(len) => write!(f, "nvs partition too small ({len} bytes)"),
        }
    }
}

/// The settings store: two sectors at the start of the `nvs` partition (this firmware does
/// not use ESP-IDF NVS, so the partition is free for it).
pub fn settings_store(
    flash: FLASH<'static>,
) -> Result<FlashStore<FlashStorage<'static>>, StoreError> {
    let mut storage = FlashStorage::new(flash);
    let mut table = [0u8; PARTITION_TABLE_MAX_LEN];
    let partitions = partitions::read_partition_table(&mut storage, &mut table)
        .map_err(StoreError::PartitionTable)?;
    let nvs = partitions
        .find_partition(PartitionType::Data(DataPartitionSubType::Nvs))
        .map_err(StoreError::PartitionTable)?
        .ok_or(StoreError::NoNvsPartition)?;
    if nvs.len() < FlashStore::<FlashStorage<'static>>::footprint() {
        return Err(StoreError::NvsTooSmall(nvs.len()));
    }
    info!("settings at flash 0x{:x}", nvs.offset());
    Ok(FlashStore::new(storage, nvs.offset()))
}
