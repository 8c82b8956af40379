//! The offline buffer: readings wait here until the broker has acknowledged them.
//!
//! Every reading enters the ring first, connected or not, and leaves it only when the PUBACK
//! for its publish arrives; a reading sent but not acknowledged when the connection drops is
//! sent again after the reconnect, oldest first (the server de-duplicates on `(boot, seq)`).
//! The ring is bounded: when it is full the oldest reading is dropped and counted, and the
//! count goes out in the next status message. It must never drop silently and never allocate.

use heapless::Deque;

/// The tag a publish carries until its PUBACK comes back. The board maps the MQTT packet id
/// to it; the simulator can use it as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishId(pub u32);

/// Four hours of readings at one a minute, plus headroom.
pub const OFFLINE_CAPACITY: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Entry<T> {
    item: T,
    in_flight: Option<PublishId>,
}

/// A bounded FIFO of items awaiting acknowledgement.
#[derive(Debug)]
pub struct OfflineRing<T, const N: usize> {
    entries: Deque<Entry<T>, N>,
    dropped: u32,
}

impl<T: Copy, const N: usize> Default for OfflineRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const N: usize> OfflineRing<T, N> {
    pub const fn new() -> Self {
        Self {
            entries: Deque::new(),
            dropped: 0,
        }
    }

    /// Appends an item; when full, drops the oldest first and returns it.
    pub fn push(&mut self, item: T) -> Option<T> {
        let evicted = if self.entries.is_full() {
            self.dropped = self.dropped.saturating_add(1);
            self.entries.pop_front().map(|e| e.item)
        } else {
            None
        };
        // Cannot fail: there is room after the eviction above.
        let _ = self.entries.push_back(Entry {
            item,
            in_flight: None,
        });
        evicted
    }

    /// The oldest item not yet in flight, marked as sent under `id`.
    pub fn send_next(&mut self, id: PublishId) -> Option<T> {
        let entry = self.entries.iter_mut().find(|e| e.in_flight.is_none())?;
        entry.in_flight = Some(id);
        Some(entry.item)
    }

    /// Removes the item sent under `id`. Returns it, or `None` for an unknown id (an ack for
    /// an item already evicted, or a stale ack from an earlier connection).
    pub fn ack(&mut self, id: PublishId) -> Option<T> {
        let item = self.entries.iter().find(|e| e.in_flight == Some(id))?.item;
        self.entries.retain(|e| e.in_flight != Some(id));
        Some(item)
    }

    /// The connection dropped: nothing is in flight any more, everything will be sent again.
    pub fn requeue_in_flight(&mut self) {
        for e in &mut self.entries {
            e.in_flight = None;
        }
    }

    pub fn in_flight(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.in_flight.is_some())
            .count()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub const fn capacity(&self) -> usize {
        N
    }

    /// How many items were dropped since the last call; resets the count.
    pub fn take_dropped(&mut self) -> u32 {
        core::mem::take(&mut self.dropped)
    }

    /// Items oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.item)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::VecDeque;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn capacity_covers_four_hours_at_one_a_minute() {
        let ring = OfflineRing::<u32, OFFLINE_CAPACITY>::new();
        assert!(ring.capacity() >= 240);
    }

    #[test]
    fn sends_oldest_first_and_removes_only_on_ack() {
        let mut ring = OfflineRing::<u32, 8>::new();
        for seq in 1..=3 {
            ring.push(seq);
        }
        assert_eq!(ring.send_next(PublishId(10)), Some(1));
        assert_eq!(ring.send_next(PublishId(11)), Some(2));
        assert_eq!(ring.in_flight(), 2);
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.ack(PublishId(11)), Some(2));
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(ring.ack(PublishId(11)), None, "second ack is a no-op");
        assert_eq!(ring.ack(PublishId(10)), Some(1));
        assert_eq!(ring.send_next(PublishId(12)), Some(3));
        assert_eq!(ring.send_next(PublishId(13)), None);
    }

    #[test]
    fn disconnect_resends_unacked_in_order() {
        let mut ring = OfflineRing::<u32, 8>::new();
        for seq in 1..=3 {
            ring.push(seq);
        }
        ring.send_next(PublishId(1));
        ring.send_next(PublishId(2));
        ring.requeue_in_flight();
        assert_eq!(ring.in_flight(), 0);
        // A PUBACK from the old connection no longer matches anything.
        assert_eq!(ring.ack(PublishId(1)), None);
        assert_eq!(ring.send_next(PublishId(3)), Some(1));
        assert_eq!(ring.send_next(PublishId(4)), Some(2));
        assert_eq!(ring.send_next(PublishId(5)), Some(3));
    }

    #[test]
    fn full_ring_drops_oldest_and_counts() {
        let mut ring = OfflineRing::<u32, 4>::new();
        for seq in 1..=4 {
            assert_eq!(ring.push(seq), None);
        }
        assert_eq!(ring.push(5), Some(1));
        assert_eq!(ring.push(6), Some(2));
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert_eq!(ring.take_dropped(), 2);
        assert_eq!(ring.take_dropped(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        Send,
        Ack(usize),
        Disconnect,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Push),
            2 => Just(Op::Send),
            2 => (0usize..8).prop_map(Op::Ack),
            1 => Just(Op::Disconnect),
        ]
    }

    proptest! {
        /// The ring behaves like a `VecDeque` model: order kept, acked items gone, overflow
        /// drops the oldest and counts it, nothing else disappears.
        #[test]
        fn matches_a_vecdeque_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut ring = OfflineRing::<u32, 6>::new();
            let mut model: VecDeque<(u32, Option<u32>)> = VecDeque::new();
            let mut next_item = 0u32;
            let mut next_id = 0u32;
            let mut dropped = 0u32;
            for op in ops {
                match op {
                    Op::Push => {
                        if model.len() == 6 {
                            model.pop_front();
                            dropped += 1;
                        }
                        model.push_back((next_item, None));
                        ring.push(next_item);
                        next_item += 1;
                    }
                    Op::Send => {
                        let expected = model.iter_mut().find(|e| e.1.is_none()).map(|e| {
                            e.1 = Some(next_id);
                            e.0
                        });
                        prop_assert_eq!(ring.send_next(PublishId(next_id)), expected);
                        next_id += 1;
                    }
                    Op::Ack(back) => {
                        let id = next_id.saturating_sub(1 + back as u32);
                        let pos = model.iter().position(|e| e.1 == Some(id));
                        let expected = pos.and_then(|p| model.remove(p)).map(|e| e.0);
                        prop_assert_eq!(ring.ack(PublishId(id)), expected);
                    }
                    Op::Disconnect => {
                        for e in &mut model {
                            e.1 = None;
                        }
                        ring.requeue_in_flight();
                    }
                }
                let items: Vec<u32> = ring.iter().copied().collect();
                let model_items: Vec<u32> = model.iter().map(|e| e.0).collect();
                prop_assert_eq!(items, model_items);
            }
            prop_assert_eq!(ring.take_dropped(), dropped);
        }
    }
}
