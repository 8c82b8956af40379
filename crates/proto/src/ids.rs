//! Identifiers that cross the wire, as newtypes built by `TryFrom<&str>`: a value that exists is
//! valid, so topic builders and stores never re-check it. Each id is a bounded `heapless` string
//! so it costs no allocation on the scale.
//!
//! Shapes (chosen to match the seeds' examples and to be safe inside an MQTT topic level and a
//! URL path segment once percent-encoded):
//! - `DeviceId`: 1–32 of `A–Z a–z 0–9 - _`, e.g. `SCALE-0042`.
//! - `GatewayId`: same alphabet, 1–32, e.g. `gw-loc-001`.
//! - `LocationId`: 1–32 of lowercase `a–z 0–9 -`, starting with a letter, e.g. `loc-001`.
//! - `TapId`: `{location}#TAP#{nn}` with tap number 1–999, written with at least two digits,
//!   e.g. `loc-001#TAP#07`.
//! - `CommandId`: 1–40 of `A–Z a–z 0–9 - _`, e.g. a UUID or `cmd-20260318-0001`.

use core::fmt;
use core::str::FromStr;

use heapless::String;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains a character that is not allowed: {found:?}")]
    BadChar { kind: &'static str, found: char },
    #[error("{kind} has the wrong shape: expected {expected}")]
    BadShape {
        kind: &'static str,
        expected: &'static str,
    },
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn is_location_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn check(
    kind: &'static str,
    s: &str,
    max: usize,
    allowed: fn(char) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if let Some(found) = s.chars().find(|c| !allowed(*c)) {
        return Err(IdError::BadChar { kind, found });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:literal, $validate:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String<$max>);

        impl $name {
            /// Longest accepted identifier, in bytes.
            pub const MAX_LEN: usize = $max;

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;

            fn try_from(s: &str) -> Result<Self, IdError> {
                let validate: fn(&str) -> Result<(), IdError> = $validate;
                validate(s)?;
                let mut out = String::new();
                // Cannot fail: the validator bounded the length.
                out.push_str(s).map_err(|_| IdError::TooLong { kind: $kind, max: $max })?;
                Ok(Self(out))
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::try_from(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a valid ", $kind))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        $name::try_from(s).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

string_id!(
    /// A scale, e.g. `SCALE-0042`. Also its MQTT client id.
    DeviceId,
    "device id",
    32,
    |s| check("device id", s, 32, is_token_char)
);

string_id!(
    /// A bar's edge gateway, e.g. `gw-loc-001`.
    GatewayId,
    "gateway id",
    32,
    |s| check("gateway id", s, 32, is_token_char)
);

string_id!(
    /// A command sent to a scale; the scale remembers recent ids so a redelivery runs once.
    CommandId,
    "command id",
    40,
    |s| check("command id", s, 40, is_token_char)
);

string_id!(
    /// A bar, e.g. `loc-001`.
    LocationId,
    "location id",
    32,
    |s| {
        check("location id", s, 32, is_location_char)?;
        if s.starts_with(|c: char| c.is_ascii_lowercase()) {
            Ok(())
        } else {
            Err(IdError::BadShape {
                kind: "location id",
                expected: "a lowercase letter first, e.g. loc-001",
            })
        }
    }
);

/// Marker between a location and a tap number in a [`TapId`].
const TAP_MARKER: &str = "#TAP#";
const TAP_SHAPE: &str = "{location}#TAP#{number}, e.g. loc-001#TAP#07";

string_id!(
    /// A tap at a location, written `loc-001#TAP#07` as in the seeds.
    TapId,
    "tap id",
    40,
    |s| {
        let bad = IdError::BadShape { kind: "tap id", expected: TAP_SHAPE };
        if s.is_empty() {
            return Err(IdError::Empty { kind: "tap id" });
        }
        if s.len() > 40 {
            return Err(IdError::TooLong { kind: "tap id", max: 40 });
        }
        let (loc, num) = s.split_once(TAP_MARKER).ok_or(bad)?;
        LocationId::try_from(loc)?;
        if num.len() < 2 || num.len() > 3 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad);
        }
        match num.parse::<u16>() {
            Ok(n) if (1..=999).contains(&n) && (n >= 10 || num.len() == 2) => Ok(()),
            _ => Err(bad),
        }
    }
);

impl TapId {
    /// The tap `number` (1–999) at `location`, written with at least two digits.
    pub fn new(location: &LocationId, number: u16) -> Result<Self, IdError> {
        use core::fmt::Write;
        let mut s: String<48> = String::new();
        write!(s, "{location}{TAP_MARKER}{number:02}").map_err(|_| IdError::TooLong {
            kind: "tap id",
            max: Self::MAX_LEN,
        })?;
        Self::try_from(s.as_str())
    }

    /// The location part of the id.
    pub fn location(&self) -> LocationId {
        let (loc, _) = self
            .as_str()
            .split_once(TAP_MARKER)
            .unwrap_or((self.as_str(), ""));
        // Cannot fail: validated on construction.
        LocationId::try_from(loc).unwrap_or_else(|_| unreachable!("tap id validated"))
    }

    /// The tap number (1–999).
    pub fn number(&self) -> u16 {
        self.as_str()
            .rsplit_once(TAP_MARKER)
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or_else(|| unreachable!("tap id validated"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn seed_examples_parse() {
        assert_eq!(
            DeviceId::try_from("SCALE-0042").unwrap().as_str(),
            "SCALE-0042"
        );
        let tap = TapId::try_from("loc-001#TAP#07").unwrap();
        assert_eq!(tap.location().as_str(), "loc-001");
        assert_eq!(tap.number(), 7);
        assert_eq!(
            TapId::new(&LocationId::try_from("loc-001").unwrap(), 7).unwrap(),
            tap
        );
        assert_eq!(
            TapId::new(&LocationId::try_from("loc-001").unwrap(), 123)
                .unwrap()
                .as_str(),
            "loc-001#TAP#123"
        );
    }

    #[test]
    fn bad_ids_say_why() {
        assert_eq!(
            DeviceId::try_from(""),
            Err(IdError::Empty { kind: "device id" })
        );
        assert_eq!(
            DeviceId::try_from("SCALE/42"),
            Err(IdError::BadChar {
                kind: "device id",
                found: '/'
            })
        );
        assert!(matches!(
            DeviceId::try_from("keg/+/#"),
            Err(IdError::BadChar { .. })
        ));
        assert!(matches!(
            LocationId::try_from("Loc-1"),
            Err(IdError::BadChar { .. })
        ));
        assert!(matches!(
            LocationId::try_from("1loc"),
            Err(IdError::BadShape { .. })
        ));
        for bad in [
            "loc-001#TAP#7",
            "loc-001#TAP#00",
            "loc-001#TAP#",
            "loc-001#TAP#0007",
            "loc-001TAP07",
            "#TAP#07",
            "loc-001#TAP#7a",
        ] {
            assert!(TapId::try_from(bad).is_err(), "{bad} should be rejected");
        }
        assert!(matches!(
            DeviceId::try_from("A23456789012345678901234567890123"),
            Err(IdError::TooLong { max: 32, .. })
        ));
    }

    #[test]
    fn ids_are_json_strings() {
        let id: DeviceId = serde_json_core::from_str::<DeviceId>("\"SCALE-0001\"")
            .unwrap()
            .0;
        assert_eq!(id.as_str(), "SCALE-0001");
        assert!(serde_json_core::from_str::<DeviceId>("\"bad id\"").is_err());
        let mut buf = [0u8; 32];
        let n = serde_json_core::to_slice(&id, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"\"SCALE-0001\"");
    }

    proptest::proptest! {
        #[test]
        fn valid_device_ids_round_trip(s in "[A-Za-z0-9_-]{1,32}") {
            let id = DeviceId::try_from(s.as_str()).unwrap();
            proptest::prop_assert_eq!(id.as_str(), s.as_str());
            proptest::prop_assert_eq!(id.to_string().parse::<DeviceId>().unwrap(), id);
        }

        #[test]
        fn tap_ids_round_trip(loc in "[a-z][a-z0-9-]{0,20}", n in 1u16..=999) {
            let loc = LocationId::try_from(loc.as_str()).unwrap();
            let tap = TapId::new(&loc, n).unwrap();
            proptest::prop_assert_eq!(tap.number(), n);
            proptest::prop_assert_eq!(tap.location(), loc);
            proptest::prop_assert_eq!(TapId::try_from(tap.as_str()).unwrap(), tap);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,50}") {
            let _ = DeviceId::try_from(s.as_str());
            let _ = TapId::try_from(s.as_str());
            let _ = LocationId::try_from(s.as_str());
        }
    }
}
