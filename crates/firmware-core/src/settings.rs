//! What the scale remembers across reboots, and the store trait that keeps it.
//!
//! One fixed [`Settings`] struct holds calibration, tare records, the reading interval, the
//! temperature coefficient, the boot counter and the ids of the last commands run (so a
//! retained command redelivered after a reboot is not run twice). The board keeps it in flash;
//! [`MemoryStore`] keeps it in RAM for host tests and the simulator.
//!
//! The flash side ([`encode_record`] / [`decode_record`] and [`FlashStore`], generic over
//! `embedded-storage`'s `NorFlash`) is here, not on the board, so it is tested on the host: a
//! magic number, a generation, a length and a CRC-32 around the JSON encoding, written to two
//! sectors in turn. A torn or blank sector reads as "no record", and the other sector still
//! holds the previous settings, so a power cut mid-write never loses the boot counter (which
//! would make the server drop new readings as replays of old `(boot, seq)` pairs).

use core::convert::Infallible;
use core::fmt::Debug;

use heapless::Vec;
use scalesense_proto::CommandId;
use serde::{Deserialize, Serialize};

use crate::calibration::{Calibration, Tare};

/// How many command ids are remembered for de-duplication.
pub const RECENT_COMMANDS: usize = 8;
/// Default seconds between readings (seed 000: one a minute).
pub const DEFAULT_INTERVAL_S: u32 = 60;
/// Upper bound of an encoded settings record, framing included.
pub const RECORD_MAX_BYTES: usize = 1_024;

/// Everything persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Incremented once per start-up; readings carry it so `(boot, seq)` is unique.
    pub boot: u32,
    /// `None` until the empty platform has been zeroed once.
    pub calibration: Option<Calibration>,
    pub tare: Tare,
    /// Seconds between readings.
    pub interval_s: u32,
    /// Temperature drift, pounds per °C (`set_config temp_coeff`).
    pub temp_coeff: f64,
    /// Ids of the last commands handled, oldest first.
    pub recent_commands: Vec<CommandId, RECENT_COMMANDS>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            boot: 0,
            calibration: None,
            tare: Tare::default(),
            interval_s: DEFAULT_INTERVAL_S,
            temp_coeff: 0.0,
            recent_commands: Vec::new(),
        }
    }
}

impl Settings {
    pub fn has_seen(&self, id: &CommandId) -> bool {
        self.recent_commands.contains(id)
    }

    /// Remembers `id`, forgetting the oldest when the list is full.
    pub fn remember(&mut self, id: CommandId) {
        if self.has_seen(&id) {
            return;
        }
        if self.recent_commands.is_full() {
            self.recent_commands.remove(0);
        }
        // Cannot fail: room was made above.
        let _ = self.recent_commands.push(id);
    }
}

/// Where settings live between boots.
pub trait SettingsStore {
    type Error: Debug;

    /// The stored settings, or `None` on a fresh (or unreadable) store.
    fn load(&mut self) -> Result<Option<Settings>, Self::Error>;

    fn save(&mut self, settings: &Settings) -> Result<(), Self::Error>;
}

/// Settings in RAM, for host tests and the simulator. Counts saves so tests can check that
/// a change was persisted.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    stored: Option<Settings>,
    saves: u32,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `settings`, as after an earlier run.
    pub fn with(settings: Settings) -> Self {
        Self {
            stored: Some(settings),
            saves: 0,
        }
    }

    pub fn stored(&self) -> Option<&Settings> {
        self.stored.as_ref()
    }

    pub fn saves(&self) -> u32 {
        self.saves
    }
}

impl SettingsStore for MemoryStore {
    type Error = Infallible;

    fn load(&mut self) -> Result<Option<Settings>, Infallible> {
        Ok(self.stored.clone())
    }

    fn save(&mut self, settings: &Settings) -> Result<(), Infallible> {
        self.stored = Some(settings.clone());
        self.saves += 1;
        Ok(())
    }
}

impl<S: SettingsStore> SettingsStore for &mut S {
    type Error = S::Error;

    fn load(&mut self) -> Result<Option<Settings>, Self::Error> {
        (**self).load()
    }

    fn save(&mut self, settings: &Settings) -> Result<(), Self::Error> {
        (**self).save(settings)
    }
}

/// Marks a settings record ("SSv1" little-endian).
const MAGIC: u32 = u32::from_le_bytes(*b"SSv1");
/// magic (4), generation (4), body length (2), CRC-32 of the body (4).
const HEADER: usize = 4 + 4 + 2 + 4;

/// Why a record could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("settings do not fit in {0} bytes")]
    TooLarge(usize),
}

/// Frames `settings` as `magic, generation, length (u16), CRC-32 of the body, JSON body` into
/// `buf`; returns the bytes used. A higher generation is a newer record.
pub fn encode_record(
    settings: &Settings,
    generation: u32,
    buf: &mut [u8],
) -> Result<usize, RecordError> {
    let capacity = buf.len();
    let body = buf
        .get_mut(HEADER..)
        .ok_or(RecordError::TooLarge(capacity))?;
    let len =
        serde_json_core::to_slice(settings, body).map_err(|_| RecordError::TooLarge(capacity))?;
    let len16 = u16::try_from(len).map_err(|_| RecordError::TooLarge(capacity))?;
    let crc = crc32(&buf[HEADER..HEADER + len]);
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&generation.to_le_bytes());
    buf[8..10].copy_from_slice(&len16.to_le_bytes());
    buf[10..14].copy_from_slice(&crc.to_le_bytes());
    Ok(HEADER + len)
}

/// Reads a record written by [`encode_record`] as `(generation, settings)`; `None` for blank
/// flash, a torn write or a record this firmware cannot parse.
pub fn decode_record(buf: &[u8]) -> Option<(u32, Settings)> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    };
    if word(0)? != MAGIC {
        return None;
    }
    let generation = word(4)?;
    let len = usize::from(u16::from_le_bytes(buf.get(8..10)?.try_into().ok()?));
    let crc = word(10)?;
    let body = buf.get(HEADER..HEADER + len)?;
    if crc32(body) != crc {
        return None;
    }
    let (settings, _) = serde_json_core::from_slice::<Settings>(body).ok()?;
    Some((generation, settings))
}

/// Settings in two sectors of NOR flash, written in turn.
///
/// `base` is the first of two erase sectors reserved for settings (on the ESP32-C3 board, the
/// start of the `nvs` partition, which this firmware does not use as ESP-IDF NVS).
#[derive(Debug)]
pub struct FlashStore<F> {
    flash: F,
    base: u32,
    /// Generation and slot of the newest valid record, once loaded.
    newest: Option<(u32, usize)>,
}

/// Why the flash store failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlashError {
    #[error("flash: {0:?}")]
    Flash(embedded_storage::nor_flash::NorFlashErrorKind),
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl<F: embedded_storage::nor_flash::NorFlash> FlashStore<F> {
    pub const fn new(flash: F, base: u32) -> Self {
        Self {
            flash,
            base,
            newest: None,
        }
    }

    /// Bytes reserved: two erase sectors.
    pub const fn footprint() -> u32 {
        2 * F::ERASE_SIZE as u32
    }

    pub fn into_inner(self) -> F {
        self.flash
    }

    fn slot_offset(&self, slot: usize) -> u32 {
        self.base + (slot * F::ERASE_SIZE) as u32
    }

    fn read_slot(&mut self, slot: usize) -> Result<Option<(u32, Settings)>, FlashError> {
        let mut buf = [0u8; RECORD_MAX_BYTES];
        let offset = self.slot_offset(slot);
        self.flash
            .read(offset, &mut buf)
            .map_err(|e| flash_error(&e))?;
        Ok(decode_record(&buf))
    }
}

fn flash_error<E: embedded_storage::nor_flash::NorFlashError>(e: &E) -> FlashError {
    FlashError::Flash(e.kind())
}

impl<F: embedded_storage::nor_flash::NorFlash> SettingsStore for FlashStore<F> {
    type Error = FlashError;

    fn load(&mut self) -> Result<Option<Settings>, FlashError> {
        let a = self.read_slot(0)?;
        let b = self.read_slot(1)?;
        let newest = match (a, b) {
            (Some(a), Some(b)) if b.0 > a.0 => Some((b, 1)),
            (Some(a), _) => Some((a, 0)),
            (None, Some(b)) => Some((b, 1)),
            (None, None) => None,
        };
        self.newest = newest
            .as_ref()
            .map(|((generation, _), slot)| (*generation, *slot));
        Ok(newest.map(|((_, settings), _)| settings))
    }

    fn save(&mut self, settings: &Settings) -> Result<(), FlashError> {
        if self.newest.is_none() {
            // Never loaded: find the newest record so the other slot is overwritten.
            self.load()?;
        }
        let (generation, slot) = match self.newest {
            Some((generation, slot)) => (generation.wrapping_add(1), 1 - slot),
            None => (1, 0),
        };
        let mut buf = [0xFFu8; RECORD_MAX_BYTES];
        let len = encode_record(settings, generation, &mut buf)?;
        // Writes must cover whole write units; the padding stays erased (0xFF).
        let padded = len.div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
        let offset = self.slot_offset(slot);
        self.flash
            .erase(offset, offset + F::ERASE_SIZE as u32)
            .map_err(|e| flash_error(&e))?;
        self.flash
            .write(offset, &buf[..padded])
            .map_err(|e| flash_error(&e))?;
        self.newest = Some((generation, slot));
        Ok(())
    }
}

/// CRC-32 (IEEE, reflected), bitwise: settings are written rarely, so no table.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::TareRecord;

    fn id(s: &str) -> CommandId {
        CommandId::try_from(s).unwrap()
    }

    fn sample() -> Settings {
        let mut s = Settings {
            boot: 41,
            calibration: Some(Calibration {
                zero_offset: -12_345,
                counts_per_lb: 4_321.5,
                known_weight_lbs: Some(20.0),
                reference_temp_c: Some(4.5),
            }),
            tare: Tare {
                empty: Some(TareRecord {
                    raw: 80_000,
                    lbs: 22.1,
                }),
                full: None,
            },
            interval_s: 30,
            temp_coeff: 0.02,
            recent_commands: Vec::new(),
        };
        s.remember(id("cmd-1"));
        s
    }

    #[test]
    fn remembers_the_last_eight_command_ids() {
        let mut s = Settings::default();
        for i in 0..10 {
            let mut name = heapless::String::<16>::new();
            core::fmt::write(&mut name, format_args!("cmd-{i}")).unwrap();
            s.remember(id(&name));
        }
        assert_eq!(s.recent_commands.len(), RECENT_COMMANDS);
        assert!(!s.has_seen(&id("cmd-0")));
        assert!(!s.has_seen(&id("cmd-1")));
        assert!(s.has_seen(&id("cmd-2")));
        assert!(s.has_seen(&id("cmd-9")));
        s.remember(id("cmd-9"));
        assert_eq!(
            s.recent_commands.len(),
            RECENT_COMMANDS,
            "no duplicate entries"
        );
    }

    #[test]
    fn record_round_trips() {
        let settings = sample();
        let mut buf = [0xFFu8; RECORD_MAX_BYTES];
        let n = encode_record(&settings, 7, &mut buf).unwrap();
        assert!(n > HEADER);
        assert_eq!(decode_record(&buf[..n]), Some((7, settings.clone())));
        // Trailing erased flash after the record is ignored.
        assert_eq!(decode_record(&buf), Some((7, settings)));
    }

    #[test]
    fn full_settings_fit_in_a_record() {
        let mut s = sample();
        for i in 0..RECENT_COMMANDS {
            let mut name = heapless::String::<40>::new();
            core::fmt::write(
                &mut name,
                format_args!("0123456789abcdef0123456789abcdef-{i:06}"),
            )
            .unwrap();
            s.remember(id(&name));
        }
        let mut buf = [0u8; RECORD_MAX_BYTES];
        let n = encode_record(&s, 1, &mut buf).unwrap();
        assert_eq!(decode_record(&buf[..n]), Some((1, s)));
    }

    #[test]
    fn blank_torn_or_corrupt_records_read_as_none() {
        let mut buf = [0xFFu8; 256];
        assert_eq!(decode_record(&buf), None, "erased flash");
        let n = encode_record(&sample(), 1, &mut buf).unwrap();
        assert_eq!(decode_record(&buf[..n - 1]), None, "torn write");
        buf[HEADER + 3] ^= 0x01;
        assert_eq!(decode_record(&buf[..n]), None, "bit flip");
        assert_eq!(
            encode_record(&sample(), 1, &mut [0u8; 16]),
            Err(RecordError::TooLarge(16))
        );
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn memory_store_persists_and_counts_saves() {
        let mut store = MemoryStore::new();
        assert_eq!(store.load().unwrap(), None);
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));
        assert_eq!(store.saves(), 1);
    }

    /// NOR flash in RAM: erase sets 0xFF, writes can only clear bits, and a write can be cut
    /// short to model a power loss.
    struct RamFlash {
        data: [u8; 3 * 4096],
        torn_after: Option<usize>,
    }

    #[derive(Debug)]
    struct PowerLost;

    impl embedded_storage::nor_flash::NorFlashError for PowerLost {
        fn kind(&self) -> embedded_storage::nor_flash::NorFlashErrorKind {
            embedded_storage::nor_flash::NorFlashErrorKind::Other
        }
    }

    impl embedded_storage::nor_flash::ErrorType for RamFlash {
        type Error = PowerLost;
    }

    impl embedded_storage::nor_flash::ReadNorFlash for RamFlash {
        const READ_SIZE: usize = 4;

        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), PowerLost> {
            let at = offset as usize;
            bytes.copy_from_slice(&self.data[at..at + bytes.len()]);
            Ok(())
        }

        fn capacity(&self) -> usize {
            self.data.len()
        }
    }

    impl embedded_storage::nor_flash::NorFlash for RamFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 4096;

        fn erase(&mut self, from: u32, to: u32) -> Result<(), PowerLost> {
            assert_eq!(from % 4096, 0);
            self.data[from as usize..to as usize].fill(0xFF);
            Ok(())
        }

        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), PowerLost> {
            assert_eq!(bytes.len() % 4, 0, "writes cover whole words");
            let n = self.torn_after.map_or(bytes.len(), |t| t.min(bytes.len()));
            for (i, b) in bytes[..n].iter().enumerate() {
                self.data[offset as usize + i] &= b;
            }
            if n < bytes.len() {
                Err(PowerLost)
            } else {
                Ok(())
            }
        }
    }

    fn ram_flash() -> RamFlash {
        RamFlash {
            data: [0xFF; 3 * 4096],
            torn_after: None,
        }
    }

    #[test]
    fn flash_store_alternates_slots_and_keeps_the_newest() {
        let mut store = FlashStore::new(ram_flash(), 4096);
        assert_eq!(store.load().unwrap(), None);
        let mut s = sample();
        for boot in 1..=5 {
            s.boot = boot;
            store.save(&s).unwrap();
        }
        assert_eq!(FlashStore::<RamFlash>::footprint(), 8192);
        let flash = store.into_inner();
        // Nothing was written outside the two sectors.
        assert!(flash.data[..4096].iter().all(|b| *b == 0xFF));
        let mut again = FlashStore::new(flash, 4096);
        assert_eq!(again.load().unwrap().unwrap().boot, 5);
    }

    #[test]
    fn a_torn_write_leaves_the_previous_settings() {
        let mut store = FlashStore::new(ram_flash(), 0);
        let mut s = sample();
        s.boot = 10;
        store.save(&s).unwrap();
        s.boot = 11;
        store.save(&s).unwrap();
        let mut flash = store.into_inner();
        flash.torn_after = Some(20);
        let mut store = FlashStore::new(flash, 0);
        assert_eq!(store.load().unwrap().unwrap().boot, 11);
        s.boot = 12;
        assert!(matches!(store.save(&s), Err(FlashError::Flash(_))));
        let mut flash = store.into_inner();
        flash.torn_after = None;
        let mut store = FlashStore::new(flash, 0);
        assert_eq!(
            store.load().unwrap().unwrap().boot,
            11,
            "boot 11 survives the torn write"
        );
        s.boot = 13;
        store.save(&s).unwrap();
        let mut store = FlashStore::new(store.into_inner(), 0);
        assert_eq!(store.load().unwrap().unwrap().boot, 13);
    }
}
