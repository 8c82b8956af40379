//! Small conversions shared by both backends: parsing stored text back into typed values (a
//! value that no longer parses is `Corrupt`, never a panic), JSON columns, and LIKE patterns.

use std::fmt::Display;
use std::str::FromStr;

use crate::error::{Result, StoreError};
use crate::model::{DEAD_LETTER_PAYLOAD_CAP, DEFAULT_RAW_RETENTION_DAYS};

/// Parses a stored identifier.
pub(crate) fn parse<T>(column: &'static str, value: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("stored {column} {value:?} is invalid: {e}")))
}

/// Parses an optional stored identifier.
pub(crate) fn parse_opt<T>(column: &'static str, value: Option<&str>) -> Result<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    value.map(|v| parse(column, v)).transpose()
}

/// Reads a JSON text column.
pub(crate) fn json(value: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(value)?)
}

/// Reads an optional JSON text column.
pub(crate) fn json_opt(value: Option<&str>) -> Result<Option<serde_json::Value>> {
    value.map(json).transpose()
}

/// Writes a JSON text column.
pub(crate) fn json_text(value: &serde_json::Value) -> String {
    value.to_string()
}

/// A `LIKE … ESCAPE '\'` pattern matching `q` anywhere, lower-cased (the column it is matched
/// against is stored lower-cased, so the search is case-insensitive on both backends).
pub(crate) fn contains_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The text a beer is searched by.
pub(crate) fn beer_search_text(name: &str, brewery: &str, style: &str) -> String {
    format!("{name}\n{brewery}\n{style}").to_lowercase()
}

/// How many days of raw readings a location keeps, from its settings document.
pub(crate) fn raw_retention_days(settings: &serde_json::Value) -> i64 {
    settings
        .get("raw_retention_days")
        .and_then(serde_json::Value::as_i64)
        .filter(|d| *d > 0)
        .unwrap_or(DEFAULT_RAW_RETENTION_DAYS)
}

/// The part of a dead-letter payload that is kept.
pub(crate) fn capped(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_CAP)]
}

/// Checks that numbers headed for the database are finite.
pub(crate) fn finite(what: &str, values: &[f64]) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what}: numbers must be finite"
        )))
    }
}

/// Converts a caller's row limit.
pub(crate) fn limit(n: u32) -> i64 {
    i64::from(n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern(" Stout "), "%stout%");
        assert_eq!(contains_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }

    #[test]
    fn retention_defaults_to_thirty_days() {
        assert_eq!(raw_retention_days(&serde_json::json!({})), 30);
        assert_eq!(
            raw_retention_days(&serde_json::json!({"raw_retention_days": 7})),
            7
        );
        assert_eq!(
            raw_retention_days(&serde_json::json!({"raw_retention_days": -1})),
            30
        );
    }

    #[test]
    fn stored_garbage_is_corrupt() {
        let r: Result<crate::ids::KegId> = parse("keg id", "bad#id");
        assert!(matches!(r, Err(StoreError::Corrupt(_))));
        assert_eq!(capped(&[0u8; 5000]).len(), DEAD_LETTER_PAYLOAD_CAP);
    }
}
