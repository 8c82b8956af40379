//! Identifiers the store owns (accounts, users, beers, kegs, …) as validated newtypes, and the
//! reading-series key. The wire ids (`DeviceId`, `TapId`, …) come from `scalesense-proto` and are
//! re-exported from the crate root so callers use one set of types.
//!
//! A value of these types is valid by construction; the store never re-checks it. Ids that come
//! back from the database are parsed again, and a stored id that no longer parses is reported as
//! `Corrupt`, never unwrapped.

use core::fmt;
use core::str::FromStr;

use scalesense_proto::TapId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid store identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreIdError {
    #[error("{kind} must be 1 to {max} characters long")]
    Length { kind: &'static str, max: usize },
    #[error("{kind} contains a character that is not allowed: {found:?}")]
    BadChar { kind: &'static str, found: char },
}

fn check(
    kind: &'static str,
    s: &str,
    max: usize,
    allowed: fn(char) -> bool,
) -> Result<(), StoreIdError> {
    if s.is_empty() || s.len() > max {
        return Err(StoreIdError::Length { kind, max });
    }
    match s.chars().find(|c| !allowed(*c)) {
        Some(found) => Err(StoreIdError::BadChar { kind, found }),
        None => Ok(()),
    }
}

fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn with_hash(c: char) -> bool {
    plain(c) || c == '#'
}

macro_rules! store_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:literal, $allowed:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted identifier, in bytes.
            pub const MAX_LEN: usize = $max;

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = StoreIdError;

            fn try_from(s: &str) -> Result<Self, StoreIdError> {
                check($kind, s, $max, $allowed)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl FromStr for $name {
            type Err = StoreIdError;

            fn from_str(s: &str) -> Result<Self, StoreIdError> {
                Self::try_from(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::try_from(s.as_ref()).map_err(serde::de::Error::custom)
            }
        }
    };
}

store_id!(
    /// A customer account (the tenant): every customer row hangs off one.
    AccountId,
    "account id",
    64,
    plain
);

store_id!(
    /// A dashboard user within an account.
    UserId,
    "user id",
    64,
    plain
);

store_id!(
    /// A beer: `guinness-draught` in the global library, `loc-001#house-ipa` for a
    /// location's custom beer (the seeds' `BEER#loc-001#<id>`).
    BeerId,
    "beer id",
    96,
    with_hash
);

store_id!(
    /// A physical keg, e.g. `keg-20260318-007`. Never contains `#`, so a keg id can never be
    /// mistaken for a tap id in a reading series.
    KegId,
    "keg id",
    64,
    plain
);

store_id!(
    /// An API token, a notification channel or another small named record.
    RecordId,
    "record id",
    64,
    plain
);

/// The series a reading belongs to: its keg, or its tap when no keg is tapped (seed 002:
/// "keyed by keg, not tap — clean break on beer swap"; tap fallback for unassigned kegs).
///
/// Stored as the bare id: tap ids always contain `#TAP#` and keg ids never contain `#`, so the
/// text alone tells which it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Series {
    Keg(KegId),
    Tap(TapId),
}

impl Series {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Keg(k) => k.as_str(),
            Self::Tap(t) => t.as_str(),
        }
    }

    /// Parses a stored series key; `None` when it is neither a keg id nor a tap id.
    pub fn parse(s: &str) -> Option<Self> {
        if s.contains('#') {
            TapId::try_from(s).ok().map(Self::Tap)
        } else {
            KegId::try_from(s).ok().map(Self::Keg)
        }
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate() {
        assert_eq!(
            KegId::try_from("keg-20260318-007").unwrap().as_str(),
            "keg-20260318-007"
        );
        assert!(matches!(
            KegId::try_from("keg#1"),
            Err(StoreIdError::BadChar { found: '#', .. })
        ));
        assert!(matches!(
            AccountId::try_from(""),
            Err(StoreIdError::Length { .. })
        ));
        assert!(BeerId::try_from("loc-001#house-ipa").is_ok());
        assert!(BeerId::try_from("guinness draught").is_err());
    }

    #[test]
    fn series_round_trips() {
        let keg = Series::Keg(KegId::try_from("keg-1").unwrap());
        let tap = Series::Tap(TapId::try_from("loc-001#TAP#07").unwrap());
        assert_eq!(Series::parse(keg.as_str()), Some(keg));
        assert_eq!(Series::parse(tap.as_str()), Some(tap));
        assert_eq!(Series::parse("loc-001#nope"), None);
        assert_eq!(Series::parse(""), None);
    }
}
