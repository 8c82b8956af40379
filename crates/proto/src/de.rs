//! Field-aware deserialisation, shared by the `no_std` (serde-json-core) and `std` (serde_json)
//! decoders.
//!
//! serde's own errors do not name the field that failed (serde-json-core drops the message
//! entirely), yet a dead letter must say `seq: required field is missing`. So every payload is
//! read by a hand-written map visitor that notes, in a [`Tracker`], which field it is reading and
//! any contract rule that failed; after a failure the decoder asks the tracker what went wrong
//! instead of the deserializer. The visitors only use `deserialize_option`, `_f64`, `_bool`,
//! `_str`, `_struct`, `_identifier` and `_ignored_any`, which both JSON crates implement alike
//! (serde-json-core has no `deserialize_any`). Integers are read as JSON numbers and checked
//! to be whole and in range, so both decoders report the same error for the same bytes.
//!
//! This module must stay allocation-free and must never panic on any input.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;

use heapless::String;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::ContractError;
use crate::ids::{CommandId, GatewayId};
use crate::payload::{
    Command, CommandParams, DeviceState, GatewayAck, GatewayStatus, GseqRanges, MAX_ACK_RANGES,
    MAX_SAFE_INTEGER, Ota, Payload, Reading, Response, ResponseResult, Sha256Hex, Status,
    TareStatus, UplinkState,
};

/// What went wrong while reading one payload. Interior mutability because serde visitors are
/// consumed by value and nested; everything here is single-threaded and short-lived.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The field being read and the JSON type it needs, while its value is being parsed.
    current: Cell<Option<(&'static str, &'static str)>>,
    /// The first contract rule that failed.
    problem: Cell<Option<ContractError>>,
    /// Strings arrive as written in the JSON, escapes included (serde-json-core without an
    /// unescape buffer), and are unescaped here only when a known key or field needs them.
    raw_strings: bool,
}

/// Longest string a known field holds, unescaped, plus room: see [`StrVisitor`].
const STRING_BUFFER_LEN: usize = 256;

/// Longest known key; a longer key is unknown without being unescaped in full.
const KEY_BUFFER_LEN: usize = 32;

impl Tracker {
    /// A tracker for a deserializer that hands over strings still escaped.
    pub fn raw_strings() -> Self {
        Self {
            raw_strings: true,
            ..Self::default()
        }
    }

    fn enter(&self, field: &'static str, expected: &'static str) {
        self.current.set(Some((field, expected)));
    }

    fn leave(&self) {
        self.current.set(None);
    }

    /// Record `problem` (the first one wins) and abort deserialisation.
    fn fail<E: de::Error>(&self, problem: ContractError) -> E {
        if self.problem.get().is_none() {
            self.problem.set(Some(problem));
        }
        E::custom(problem)
    }

    /// The error to report after deserialisation failed: a recorded rule, else a type error in
    /// the field being read, else the document itself is malformed.
    pub fn error(&self) -> ContractError {
        if let Some(problem) = self.problem.get() {
            return problem;
        }
        match self.current.get() {
            Some((field, expected)) => ContractError::WrongType { field, expected },
            None => ContractError::Malformed,
        }
    }
}

/// A JSON object read with field tracking. Sealed: implemented only in this module.
pub trait Tracked: Sized {
    fn read_object<'de, D: Deserializer<'de>>(d: D, t: &Tracker) -> Result<Self, D::Error>;
}

/// A value of one field.
trait WireField: Sized {
    /// The JSON type, for `wrong type, expected …`.
    const EXPECTED: &'static str;
    fn read<'de, D: Deserializer<'de>>(
        d: D,
        field: &'static str,
        t: &Tracker,
    ) -> Result<Self, D::Error>;
}

/// A JSON number as the deserializer handed it over (serde_json keeps integers exact).
#[derive(Clone, Copy)]
enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

struct NumberVisitor;

impl Visitor<'_> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        Ok(Number::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        Ok(Number::Signed(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        Ok(Number::Float(v))
    }
}

/// `n` as a whole number within `min..=max`.
#[expect(
    clippy::float_cmp,
    reason = "an exact comparison is how a fraction is detected"
)]
fn integer(
    n: Number,
    field: &'static str,
    expected: &'static str,
    min: i64,
    max: i64,
) -> Result<i64, ContractError> {
    let out_of_range = |value: f64| ContractError::OutOfRange {
        field,
        value,
        min: min as f64,
        max: max as f64,
    };
    match n {
        Number::Unsigned(u) => match i64::try_from(u) {
            Ok(i) if i <= max => Ok(i),
            _ => Err(out_of_range(u as f64)),
        },
        Number::Signed(i) if (min..=max).contains(&i) => Ok(i),
        Number::Signed(i) => Err(out_of_range(i as f64)),
        Number::Float(f) if !f.is_finite() => Err(ContractError::NotFinite { field }),
        Number::Float(f) if f < min as f64 || f > max as f64 => Err(out_of_range(f)),
        // In range, so the cast is exact for whole numbers: a round trip detects a fraction.
        Number::Float(f) if (f as i64) as f64 == f => Ok(f as i64),
        Number::Float(_) => Err(ContractError::WrongType { field, expected }),
    }
}

macro_rules! integer_field {
    ($($ty:ty => ($min:expr, $max:expr)),* $(,)?) => {$(
        impl WireField for $ty {
            const EXPECTED: &'static str = "an integer";

            fn read<'de, D: Deserializer<'de>>(
                d: D,
                field: &'static str,
                t: &Tracker,
            ) -> Result<Self, D::Error> {
                let n = d.deserialize_f64(NumberVisitor)?;
                integer(n, field, Self::EXPECTED, $min, $max)
                    .map(|i| i as $ty)
                    .map_err(|e| t.fail(e))
            }
        }
    )*};
}

integer_field!(
    u16 => (0, 65_535),
    u32 => (0, 4_294_967_295),
    u64 => (0, MAX_SAFE_INTEGER as i64),
    i16 => (-32_768, 32_767),
    i32 => (-2_147_483_648, 2_147_483_647),
);

impl WireField for f64 {
    const EXPECTED: &'static str = "a number";

    fn read<'de, D: Deserializer<'de>>(
        d: D,
        field: &'static str,
        t: &Tracker,
    ) -> Result<Self, D::Error> {
        let value = match d.deserialize_f64(NumberVisitor)? {
            Number::Unsigned(u) => u as f64,
            Number::Signed(i) => i as f64,
            Number::Float(f) => f,
        };
        if value.is_finite() {
            Ok(value)
        } else {
            Err(t.fail(ContractError::NotFinite { field }))
        }
    }
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
}

impl WireField for bool {
    const EXPECTED: &'static str = "a boolean";

    fn read<'de, D: Deserializer<'de>>(
        d: D,
        _field: &'static str,
        _t: &Tracker,
    ) -> Result<Self, D::Error> {
        d.deserialize_bool(BoolVisitor)
    }
}

/// Reads a JSON string and hands it to `parse`, recording the rule it breaks.
struct StrVisitor<'t, T> {
    field: &'static str,
    t: &'t Tracker,
    parse: fn(&'static str, &str) -> Result<T, ContractError>,
}

impl<T> Visitor<'_> for StrVisitor<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        let unescaped: String<STRING_BUFFER_LEN>;
        let s = if self.t.raw_strings && s.contains('\\') {
            match crate::json_check::unescape(s) {
                Some(u) => {
                    unescaped = u;
                    unescaped.as_str()
                }
                // Longer than any field allows, and so is the raw text: `parse` rejects it for
                // its length, as it would the unescaped string.
                None => s,
            }
        } else {
            s
        };
        (self.parse)(self.field, s).map_err(|e| self.t.fail(e))
    }
}

macro_rules! string_field {
    ($($ty:ty => $parse:expr),* $(,)?) => {$(
        impl WireField for $ty {
            const EXPECTED: &'static str = "a string";

            fn read<'de, D: Deserializer<'de>>(
                d: D,
                field: &'static str,
                t: &Tracker,
            ) -> Result<Self, D::Error> {
                d.deserialize_str(StrVisitor { field, t, parse: $parse })
            }
        }
    )*};
}

fn rename(e: ContractError, field: &'static str) -> ContractError {
    match e {
        ContractError::Invalid { reason, .. } => ContractError::Invalid { field, reason },
        other => other,
    }
}

string_field!(
    GatewayId => |field, s| GatewayId::try_from(s).map_err(|source| ContractError::BadId { field, source }),
    CommandId => |field, s| CommandId::try_from(s).map_err(|source| ContractError::BadId { field, source }),
    TareStatus => |field, s| s.parse().map_err(|e| rename(e, field)),
    DeviceState => |field, s| s.parse().map_err(|e| rename(e, field)),
    UplinkState => |field, s| s.parse().map_err(|e| rename(e, field)),
    Sha256Hex => |field, s| Sha256Hex::try_from(s).map_err(|e| rename(e, field)),
);

impl<const N: usize> WireField for String<N> {
    const EXPECTED: &'static str = "a string";

    fn read<'de, D: Deserializer<'de>>(
        d: D,
        field: &'static str,
        t: &Tracker,
    ) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor {
            field,
            t,
            parse: |field, s| {
                let mut out = String::new();
                out.push_str(s)
                    .map_err(|_| ContractError::TooLong { field, max: N })?;
                Ok(out)
            },
        })
    }
}

/// Reads one field's value, mapping `null` to `None`.
struct OptionSeed<'t, T> {
    field: &'static str,
    t: &'t Tracker,
    _value: PhantomData<T>,
}

impl<'t, T> OptionSeed<'t, T> {
    fn new(field: &'static str, t: &'t Tracker) -> Self {
        Self {
            field,
            t,
            _value: PhantomData,
        }
    }
}

impl<'de, T: WireField> DeserializeSeed<'de> for OptionSeed<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: WireField> Visitor<'de> for OptionSeed<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        T::read(d, self.field, self.t).map(Some)
    }
}

/// Reads an object key as one of the known field names, or `None` for an unknown key.
struct KeySeed<'t>(&'static [&'static str], &'t Tracker);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        let unescaped: String<KEY_BUFFER_LEN>;
        let key = if self.1.raw_strings && s.contains('\\') {
            match crate::json_check::unescape(s) {
                Some(u) => {
                    unescaped = u;
                    unescaped.as_str()
                }
                None => return Ok(None),
            }
        } else {
            s
        };
        Ok(self.0.iter().copied().find(|name| *name == key))
    }
}

/// Implements [`Tracked`] and [`WireField`] for a payload struct and a validating
/// `serde::Deserialize`. `req` fields must be present and not `null`; `opt` fields are
/// `Option`s; `def` fields take their default when absent or `null`. `$prefix` names nested
/// fields in errors (`params.duration_s`).
macro_rules! tracked_object {
    ($ty:ident, $prefix:literal, { $($kind:ident $field:ident : $fty:ty),* $(,)? }) => {
        impl Tracked for $ty {
            fn read_object<'de, D: Deserializer<'de>>(d: D, t: &Tracker) -> Result<Self, D::Error> {
                const KEYS: &[&str] = &[$(stringify!($field)),*];

                struct ObjectVisitor<'t>(&'t Tracker);

                impl<'de> Visitor<'de> for ObjectVisitor<'_> {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }

                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        let t = self.0;
                        $(let mut $field: Option<Option<$fty>> = None;)*
                        while let Some(key) = map.next_key_seed(KeySeed(KEYS, t))? {
                            let Some(key) = key else {
                                // Unknown fields are ignored: forward compatibility.
                                map.next_value::<IgnoredAny>()?;
                                continue;
                            };
                            $(
                                if key == stringify!($field) {
                                    const NAME: &str = concat!($prefix, stringify!($field));
                                    if $field.is_some() {
                                        return Err(t.fail(ContractError::Duplicate { field: NAME }));
                                    }
                                    t.enter(NAME, <$fty as WireField>::EXPECTED);
                                    let value = map.next_value_seed(OptionSeed::<$fty>::new(NAME, t))?;
                                    t.leave();
                                    tracked_object!(@null $kind, value, NAME, $fty, t);
                                    $field = Some(value);
                                    continue;
                                }
                            )*
                        }
                        Ok($ty {
                            $($field: tracked_object!(
                                @finish $kind, $field, concat!($prefix, stringify!($field)), t
                            ),)*
                        })
                    }
                }

                d.deserialize_struct(stringify!($ty), KEYS, ObjectVisitor(t))
            }
        }

        impl WireField for $ty {
            const EXPECTED: &'static str = "an object";

            fn read<'de, D: Deserializer<'de>>(
                d: D,
                _field: &'static str,
                t: &Tracker,
            ) -> Result<Self, D::Error> {
                Self::read_object(d, t)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            /// Reads and validates, like the crate's `decode` functions (without their
            /// syntax pre-check and priority for `v`); the error message is the
            /// [`ContractError`] text. Strings must arrive unescaped (serde_json, or
            /// serde-json-core's `from_slice_escaped`); on the device prefer `decode`.
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let t = Tracker::default();
                let value = Self::read_object(d, &t)
                    .map_err(|_| <D::Error as de::Error>::custom(t.error()))?;
                value.validate().map_err(<D::Error as de::Error>::custom)?;
                Ok(value)
            }
        }
    };
    (@null req, $value:ident, $name:ident, $fty:ty, $t:ident) => {
        if $value.is_none() {
            return Err($t.fail(ContractError::WrongType {
                field: $name,
                expected: <$fty as WireField>::EXPECTED,
            }));
        }
    };
    (@null opt, $value:ident, $name:ident, $fty:ty, $t:ident) => {};
    (@null def, $value:ident, $name:ident, $fty:ty, $t:ident) => {};
    (@finish req, $field:ident, $name:expr, $t:ident) => {
        match $field {
            Some(Some(value)) => value,
            _ => return Err($t.fail(ContractError::Missing { field: $name })),
        }
    };
    (@finish opt, $field:ident, $name:expr, $t:ident) => {
        $field.flatten()
    };
    (@finish def, $field:ident, $name:expr, $t:ident) => {
        $field.flatten().unwrap_or_default()
    };
}

/// Reads only `v`, so an unsupported version is reported before any other problem.
pub struct VersionProbe {
    pub v: u64,
}

impl VersionProbe {
    fn validate(&self) -> Result<(), ContractError> {
        crate::payload::check_probe_version(self.v)
    }
}

tracked_object!(VersionProbe, "", { req v: u64 });

tracked_object!(Reading, "", {
    req v: u16,
    req seq: u32,
    req boot: u32,
    opt ts: u64,
    req weight_lbs: f64,
    opt level_pct: f64,
    req battery_v: f64,
    req battery_pct: f64,
    req rssi: i16,
    req stable: bool,
    req tare_status: TareStatus,
    opt gw: GatewayId,
    opt gseq: u64,
});

tracked_object!(Status, "", {
    req v: u16,
    req state: DeviceState,
    opt fw: String<{ crate::payload::MAX_VERSION_LEN }>,
    def maintenance: bool,
    opt uptime_s: u32,
    opt battery_v: f64,
    opt battery_pct: f64,
    opt rssi: i16,
    opt dropped_readings: u32,
    opt buffered_readings: u32,
    opt boot: u32,
});

tracked_object!(CommandParams, "params.", {
    opt known_weight_lbs: f64,
    opt duration_s: u32,
    opt interval_s: u32,
    opt temp_coeff: f64,
});

tracked_object!(Command, "", {
    req v: u16,
    req id: CommandId,
    def params: CommandParams,
    req issued_at: u64,
    req expires_at: u64,
});

tracked_object!(ResponseResult, "result.", {
    opt zero_offset: i32,
    opt scale_factor: f64,
    opt weight_lbs: f64,
    opt drift_pct: f64,
    opt empty_lbs: f64,
    opt full_lbs: f64,
});

tracked_object!(Response, "", {
    req v: u16,
    req id: CommandId,
    req ok: bool,
    opt result: ResponseResult,
    opt error: String<{ crate::payload::MAX_ERROR_LEN }>,
});

tracked_object!(Ota, "", {
    req v: u16,
    req job_id: CommandId,
    req version: String<{ crate::payload::MAX_VERSION_LEN }>,
    req url: String<{ crate::payload::MAX_URL_LEN }>,
    req sha256: Sha256Hex,
    req size: u32,
});

tracked_object!(GatewayStatus, "", {
    req v: u16,
    req queue_depth: u64,
    req oldest_age_s: u64,
    req uplink: UplinkState,
    req forwarded: u64,
    req dropped: u64,
    req disk_bytes: u64,
    req version: String<{ crate::payload::MAX_VERSION_LEN }>,
    opt oldest_gseq: u64,
});

/// Reads only `gw` and `gseq`, from a payload of any type and version.
pub struct ForwardingProbe {
    pub gw: Option<GatewayId>,
    pub gseq: Option<u64>,
}

impl ForwardingProbe {
    pub fn validate(&self) -> Result<(), ContractError> {
        crate::payload::Forwarding::from_pair(self.gw.clone(), self.gseq).map(drop)
    }
}

tracked_object!(ForwardingProbe, "", {
    opt gw: GatewayId,
    opt gseq: u64,
});

tracked_object!(GatewayAck, "", {
    req v: u16,
    req ranges: GseqRanges,
});

const RANGES_EXPECTED: &str = "an array of [first, last] integer pairs";

/// Reads `[[first, last], …]`: at most [`MAX_ACK_RANGES`] pairs of integers.
impl WireField for GseqRanges {
    const EXPECTED: &'static str = RANGES_EXPECTED;

    fn read<'de, D: Deserializer<'de>>(
        d: D,
        field: &'static str,
        t: &Tracker,
    ) -> Result<Self, D::Error> {
        d.deserialize_seq(RangesVisitor { field, t })
    }
}

struct RangesVisitor<'t> {
    field: &'static str,
    t: &'t Tracker,
}

impl<'de> Visitor<'de> for RangesVisitor<'_> {
    type Value = GseqRanges;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(RANGES_EXPECTED)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GseqRanges, A::Error> {
        let mut out = GseqRanges::new();
        while let Some(pair) = seq.next_element_seed(PairSeed {
            field: self.field,
            t: self.t,
        })? {
            out.push(pair).map_err(|_| {
                self.t.fail(ContractError::TooLong {
                    field: self.field,
                    max: MAX_ACK_RANGES,
                })
            })?;
        }
        Ok(out)
    }
}

struct PairSeed<'t> {
    field: &'static str,
    t: &'t Tracker,
}

impl<'de> DeserializeSeed<'de> for PairSeed<'_> {
    type Value = [u64; 2];

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<[u64; 2], D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PairSeed<'_> {
    type Value = [u64; 2];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [first, last] pair of integers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u64; 2], A::Error> {
        let wrong_shape = || {
            self.t.fail(ContractError::WrongType {
                field: self.field,
                expected: RANGES_EXPECTED,
            })
        };
        let mut pair = [0u64; 2];
        for slot in &mut pair {
            let n = seq.next_element_seed(NumberSeed)?.ok_or_else(wrong_shape)?;
            let i = integer(n, self.field, RANGES_EXPECTED, 0, MAX_SAFE_INTEGER as i64)
                .map_err(|e| self.t.fail(e))?;
            *slot = i as u64;
        }
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(wrong_shape());
        }
        Ok(pair)
    }
}

/// A JSON number inside an array.
struct NumberSeed;

impl<'de> DeserializeSeed<'de> for NumberSeed {
    type Value = Number;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Number, D::Error> {
        d.deserialize_f64(NumberVisitor)
    }
}
