//! Cursor pagination for lists: `?limit=` (1–500, default 100) and `?cursor=` (opaque, from the
//! previous page's `next_cursor`). A cursor is the sort key of the last item returned, base64url
//! encoded, so a page never repeats or skips an item that was already there when the first page
//! was read, whatever is inserted meanwhile.
//!
//! Clients must treat a cursor as opaque; the encoding may change. A cursor that does not decode
//! is a `422` on `cursor`, never a panic.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, FieldError};
use crate::extract::{Checks, Validate};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 500;

/// `?limit=&cursor=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 512)]
    pub cursor: Option<String>,
}

impl Validate for PageParams {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Checks::new()
            .check(
                self.limit.is_none_or(|l| (1..=MAX_LIMIT).contains(&l)),
                "limit",
                format!("must be from 1 to {MAX_LIMIT}"),
            )
            .check(
                self.cursor.as_deref().is_none_or(|c| decode(c).is_some()),
                "cursor",
                "is not a cursor this API returned",
            )
            .finish()
    }
}

impl PageParams {
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT) as usize
    }

    /// The decoded sort key after which the page starts.
    pub fn after(&self) -> Result<Option<String>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| decode(c).ok_or_else(|| ApiError::field("cursor", "is not a cursor")))
            .transpose()
    }
}

fn decode(cursor: &str) -> Option<String> {
    if cursor.len() > 512 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

/// Makes the cursor for a sort key.
pub fn encode(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// A sort key from an integer that sorts as text in numeric order (for non-negative values
/// such as ids and epoch milliseconds).
pub fn int_key(n: i64) -> String {
    format!("{:020}", n.max(0))
}

/// One page of `items` sorted by `key` ascending: those after the cursor, at most `limit`,
/// with the next cursor when more follow.
pub fn page<T>(
    items: Vec<T>,
    params: &PageParams,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let after = params.after()?;
    let limit = params.limit();
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|item| after.as_ref().is_none_or(|a| key(item) > *a))
        .collect();
    let next = if rest.len() > limit {
        rest.truncate(limit);
        rest.last().map(|last| encode(&key(last)))
    } else {
        None
    };
    Ok((rest, next))
}

/// As [`page`] for items sorted by `key` descending (newest first).
pub fn page_desc<T>(
    items: Vec<T>,
    params: &PageParams,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let after = params.after()?;
    let limit = params.limit();
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|item| after.as_ref().is_none_or(|a| key(item) < *a))
        .collect();
    let next = if rest.len() > limit {
        rest.truncate(limit);
        rest.last().map(|last| encode(&key(last)))
    } else {
        None
    };
    Ok((rest, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(limit: u32, cursor: Option<String>) -> PageParams {
        PageParams {
            limit: Some(limit),
            cursor,
        }
    }

    #[test]
    fn pages_walk_the_whole_list_once() {
        let items: Vec<String> = (0..7).map(|i| format!("k{i}")).collect();
        let (p1, c1) = page(items.clone(), &params(3, None), Clone::clone).unwrap();
        assert_eq!(p1, ["k0", "k1", "k2"]);
        let (p2, c2) = page(items.clone(), &params(3, c1), Clone::clone).unwrap();
        assert_eq!(p2, ["k3", "k4", "k5"]);
        let (p3, c3) = page(items, &params(3, c2), Clone::clone).unwrap();
        assert_eq!(p3, ["k6"]);
        assert_eq!(c3, None);
    }

    #[test]
    fn descending_pages_and_bad_cursors() {
        let items: Vec<i64> = vec![9, 7, 5, 3];
        let (p1, c1) = page_desc(items.clone(), &params(2, None), |n| int_key(*n)).unwrap();
        assert_eq!(p1, [9, 7]);
        let (p2, c2) = page_desc(items, &params(2, c1), |n| int_key(*n)).unwrap();
        assert_eq!(p2, [5, 3]);
        assert_eq!(c2, None);
        let bad = params(2, Some("!!".into()));
        assert!(bad.validate().is_err());
        assert!(params(0, None).validate().is_err());
        assert!(params(501, None).validate().is_err());
    }

    proptest! {
        #[test]
        fn any_cursor_text_is_rejected_or_accepted_without_panic(s in "\\PC{0,600}") {
            let p = PageParams { limit: None, cursor: Some(s) };
            let _ = p.validate();
            let _ = page(vec![1, 2, 3], &p, |n: &i32| n.to_string());
        }

        #[test]
        fn paging_any_list_returns_each_item_once(
            mut keys in proptest::collection::btree_set("[a-z0-9]{1,6}", 0..40),
            limit in 1u32..10,
        ) {
            let items: Vec<String> = std::mem::take(&mut keys).into_iter().collect();
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let (p, next) = page(items.clone(), &params(limit, cursor), Clone::clone).unwrap();
                prop_assert!(p.len() <= limit as usize);
                seen.extend(p);
                match next { Some(c) => cursor = Some(c), None => break }
            }
            prop_assert_eq!(seen, items);
        }
    }
}
