//! Why a payload was rejected, in words fit for a dead-letter table.
//!
//! Every rejection names the field it is about (`level_pct: 130 is out of range 0–100`), so an
//! operator can fix the sender without reading code. The type is `Copy` and allocation-free so
//! the firmware can keep and report it; it must never carry a copy of the offending payload.

use crate::ids::IdError;

/// Why a payload does not satisfy the contract. `Display` is the text stored with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ContractError {
    /// The bytes are not one JSON object (not JSON, truncated, nested too deep, an array, or
    /// trailing bytes after the object).
    #[error("malformed payload: not a single JSON object")]
    Malformed,
    /// A required field is absent.
    #[error("{field}: required field is missing")]
    Missing { field: &'static str },
    /// A field holds a JSON value of the wrong type (also `null` for a required field).
    #[error("{field}: wrong type, expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// A number outside its allowed range. `min`/`max` are the documented bounds.
    #[error("{field}: {value} is out of range {min}–{max}")]
    OutOfRange {
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    /// A number that is infinite (for example `1e999`) or NaN.
    #[error("{field}: not a finite number")]
    NotFinite { field: &'static str },
    /// `v` is newer than this build understands; the sender speaks a later contract.
    #[error("v: contract version {found} is newer than the supported version {supported}")]
    UnsupportedVersion { found: u64, supported: u16 },
    /// A string longer than the field allows.
    #[error("{field}: longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    /// A field that appears twice in one object.
    #[error("{field}: appears more than once")]
    Duplicate { field: &'static str },
    /// An identifier field that is not a valid identifier.
    #[error("{field}: {source}")]
    BadId {
        field: &'static str,
        source: IdError,
    },
    /// Any other rule, stated as the reason.
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

impl ContractError {
    /// The field the error is about (`params.known_weight_lbs` for nested fields), or `None`
    /// when the payload as a whole is malformed.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Malformed => None,
            Self::UnsupportedVersion { .. } => Some("v"),
            Self::Missing { field }
            | Self::WrongType { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::NotFinite { field }
            | Self::TooLong { field, .. }
            | Self::Duplicate { field }
            | Self::BadId { field, .. }
            | Self::Invalid { field, .. } => Some(field),
        }
    }

    /// A short stable name of the kind of error, for metrics labels and dead-letter columns.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Missing { .. } => "missing",
            Self::WrongType { .. } => "wrong_type",
            Self::OutOfRange { .. } => "out_of_range",
            Self::NotFinite { .. } => "not_finite",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::TooLong { .. } => "too_long",
            Self::Duplicate { .. } => "duplicate",
            Self::BadId { .. } => "bad_id",
            Self::Invalid { .. } => "invalid",
        }
    }
}

/// Why a payload could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The value breaks the contract; it is never put on the wire.
    #[error("refusing to encode an invalid payload: {0}")]
    Invalid(#[from] ContractError),
    /// The caller's buffer is too small for the encoded payload.
    #[error("the encoded payload does not fit in {capacity} bytes")]
    BufferTooSmall { capacity: usize },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_reads_well_in_a_dead_letter_table() {
        let e = ContractError::OutOfRange {
            field: "level_pct",
            value: 130.0,
            min: 0.0,
            max: 100.0,
        };
        assert_eq!(e.to_string(), "level_pct: 130 is out of range 0–100");
        assert_eq!(e.field(), Some("level_pct"));
        assert_eq!(e.kind(), "out_of_range");
        assert_eq!(
            ContractError::Missing { field: "seq" }.to_string(),
            "seq: required field is missing"
        );
        assert_eq!(
            ContractError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
            .to_string(),
            "v: contract version 2 is newer than the supported version 1"
        );
        assert_eq!(
            ContractError::BadId {
                field: "gw",
                source: IdError::Empty { kind: "gateway id" }
            }
            .to_string(),
            "gw: gateway id must not be empty"
        );
        assert_eq!(ContractError::Malformed.field(), None);
    }
}
