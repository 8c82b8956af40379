//! A set of `u64` kept as disjoint inclusive ranges: the gateway's record of which queue
//! sequences (`gseq`) the server has confirmed.
//!
//! Confirmations arrive as ranges and, with several server replicas committing interleaved parts
//! of one gateway's stream, out of order; nearly all of them touch the low end of the queue, so a
//! handful of ranges describe millions of confirmed sequences. This type must never hold one
//! entry per number.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent inclusive ranges `start..=end`, keyed by `start`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `lo..=hi`; returns the sub-ranges that were not in the set before, in order (empty
    /// when `lo > hi` or everything was already present).
    pub fn insert(&mut self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        if lo > hi {
            return Vec::new();
        }
        let mut new_parts = Vec::new();
        let (mut start, mut end) = (lo, hi);
        // Every range that overlaps or touches lo..=hi is merged into one; the holes between
        // them (clipped to lo..=hi) are what is new. `cursor` is the lowest number of lo..=hi
        // not yet accounted for.
        let mut cursor = lo;
        let from = self
            .ranges
            .range(..=lo)
            .next_back()
            .filter(|(_, e)| e.saturating_add(1) >= lo)
            .map_or(lo, |(s, _)| *s);
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(from..)
            .take_while(|(s, _)| **s <= hi.saturating_add(1))
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            if s > cursor {
                let gap_end = (s - 1).min(hi);
                if cursor <= gap_end {
                    new_parts.push((cursor, gap_end));
                }
            }
            cursor = cursor.max(e.saturating_add(1));
            start = start.min(s);
            end = end.max(e);
            self.ranges.remove(&s);
        }
        if cursor <= hi {
            new_parts.push((cursor, hi));
        }
        self.ranges.insert(start, end);
        new_parts
    }

    pub fn contains(&self, x: u64) -> bool {
        self.covering(x).is_some()
    }

    /// The range that contains `x`, if any.
    pub fn covering(&self, x: u64) -> Option<(u64, u64)> {
        self.ranges
            .range(..=x)
            .next_back()
            .filter(|(_, e)| **e >= x)
            .map(|(s, e)| (*s, *e))
    }

    /// How many numbers of `lo..=hi` are in the set.
    pub fn count_within(&self, lo: u64, hi: u64) -> u64 {
        if lo > hi {
            return 0;
        }
        let from = self.covering(lo).map_or(lo, |(s, _)| s);
        self.ranges
            .range(from..=hi)
            .map(|(s, e)| (*e).min(hi) - (*s).max(lo) + 1)
            .sum()
    }

    /// Forget every number below `x`.
    pub fn remove_below(&mut self, x: u64) {
        let keep = self.ranges.split_off(&x);
        let straddling = self.ranges.iter().next_back().map(|(_, e)| *e);
        self.ranges = keep;
        if let Some(end) = straddling
            && end >= x
        {
            self.ranges.insert(x, end);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(s, e)| (*s, *e))
    }

    /// The number of separate ranges (not of numbers).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let mut set = RangeSet::new();
        assert_eq!(set.insert(5, 7), vec![(5, 7)]);
        assert_eq!(set.insert(10, 12), vec![(10, 12)]);
        assert_eq!(set.insert(8, 9), vec![(8, 9)]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(5, 12)]);
        assert_eq!(set.insert(1, 20), vec![(1, 4), (13, 20)]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(1, 20)]);
        assert_eq!(set.insert(3, 4), vec![]);
        assert_eq!(set.insert(4, 2), vec![]);
    }

    #[test]
    fn counts_and_prunes() {
        let mut set = RangeSet::new();
        set.insert(1, 10);
        set.insert(20, 30);
        assert_eq!(set.count_within(5, 25), 6 + 6);
        assert_eq!(set.count_within(11, 19), 0);
        set.remove_below(25);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(25, 30)]);
        set.remove_below(40);
        assert!(set.is_empty());
    }

    proptest! {
        #[test]
        fn behaves_like_a_set_of_numbers(
            ops in proptest::collection::vec((0u64..60, 0u64..8, any::<bool>()), 1..40),
            probe_lo in 0u64..70,
            probe_len in 0u64..70,
        ) {
            let mut set = RangeSet::new();
            let mut model = BTreeSet::new();
            for (lo, len, prune) in ops {
                if prune {
                    set.remove_below(lo);
                    model.retain(|x| *x >= lo);
                } else {
                    let hi = lo + len;
                    let new: BTreeSet<u64> = set
                        .insert(lo, hi)
                        .into_iter()
                        .flat_map(|(a, b)| a..=b)
                        .collect();
                    let expected: BTreeSet<u64> =
                        (lo..=hi).filter(|x| !model.contains(x)).collect();
                    prop_assert_eq!(new, expected);
                    model.extend(lo..=hi);
                }
                let flat: BTreeSet<u64> = set.iter().flat_map(|(a, b)| a..=b).collect();
                prop_assert_eq!(&flat, &model);
                // Disjoint and non-adjacent.
                let ranges: Vec<_> = set.iter().collect();
                for pair in ranges.windows(2) {
                    prop_assert!(pair[0].1 + 1 < pair[1].0);
                }
            }
            let hi = probe_lo + probe_len;
            let expected = model.range(probe_lo..=hi).count() as u64;
            prop_assert_eq!(set.count_within(probe_lo, hi), expected);
            for x in 0..70 {
                prop_assert_eq!(set.contains(x), model.contains(&x));
            }
        }
    }
}
