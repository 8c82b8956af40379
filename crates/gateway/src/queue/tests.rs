//! The queue against a model: a map of durable unconfirmed records plus the appends not yet
//! synced, driven through random appends, syncs, confirmations, reads, clean restarts and
//! crashes that lose the unflushed buffers and then cut, corrupt or extend the unsynced tail of
//! the files at random byte offsets.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

type Msg = (String, Vec<u8>);

const TOPICS: [&str; 3] = [
    "keg/readings/S1",
    "keg/status/SCALE-0042",
    "keg/response/S3",
];

impl Queue {
    /// Simulate a crash: of the bytes written but not yet synced, only a prefix (chosen by
    /// `keep`) reaches the file, as when the process dies or the power fails mid-write.
    fn crash(self, keep: u64) {
        let Self { active, acks, .. } = self;
        for (writer, keep) in [(active, keep), (acks, keep / 3)] {
            let (mut file, buffered) = writer.into_parts();
            let buffered = buffered.unwrap();
            let n = (keep % (buffered.len() as u64 + 1)) as usize;
            file.write_all(&buffered[..n]).unwrap();
        }
    }

    fn active_tail(&self) -> (PathBuf, u64) {
        (
            self.active_segment().path.clone(),
            self.active_durable_bytes,
        )
    }

    fn acks_tail(&self) -> (PathBuf, u64) {
        (self.acks_path.clone(), self.acks_durable_bytes)
    }

    fn first_segment(&self) -> u64 {
        *self.segments.keys().next().unwrap()
    }

    fn read_all(&mut self) -> BTreeMap<u64, Msg> {
        self.read(0, usize::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|r| (r.gseq, (r.topic, r.payload)))
            .collect()
    }
}

fn payload(gseq_hint: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (gseq_hint as usize * 31 + i) as u8)
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Cut,
    Flip,
    Zeros,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        topic: usize,
        len: usize,
    },
    Sync,
    Ack {
        pick: usize,
        span: u64,
    },
    AckUnsynced,
    Read {
        from: u64,
        max: usize,
    },
    Restart,
    Crash {
        segment: Damage,
        acks: Damage,
        at: u64,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![Just(Damage::Cut), Just(Damage::Flip), Just(Damage::Zeros)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..TOPICS.len(), 0usize..1500).prop_map(|(topic, len)| Op::Append { topic, len }),
        3 => Just(Op::Sync),
        4 => (any::<usize>(), 0u64..6).prop_map(|(pick, span)| Op::Ack { pick, span }),
        1 => Just(Op::AckUnsynced),
        2 => (0u64..200, 1usize..20).prop_map(|(from, max)| Op::Read { from, max }),
        1 => Just(Op::Restart),
        2 => (damage(), damage(), 0u64..10_000)
            .prop_map(|(segment, acks, at)| Op::Crash { segment, acks, at }),
    ]
}

/// Damage the part of `path` beyond `durable` bytes (what a crash may have left half-written).
fn damage_tail(path: &Path, durable: u64, how: Damage, at: u64) {
    let len = fs::metadata(path).unwrap().len();
    let file = OpenOptions::new().write(true).open(path).unwrap();
    match how {
        Damage::Cut if len > durable => file.set_len(durable + at % (len - durable + 1)).unwrap(),
        Damage::Flip if len > durable => {
            let pos = durable + at % (len - durable);
            let mut bytes = fs::read(path).unwrap();
            bytes[pos as usize] ^= 0x5a;
            fs::write(path, bytes).unwrap();
        }
        Damage::Zeros => {
            let mut f = OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(&vec![0; (at % 40) as usize + 1]).unwrap();
        }
        _ => {}
    }
}

#[derive(Debug, Default)]
struct Model {
    /// Durable, unconfirmed.
    durable: BTreeMap<u64, Msg>,
    /// Appended, not yet durable, in order.
    pending: BTreeMap<u64, Msg>,
    /// Confirmed since the last sync: a crash may bring them back.
    confirmed_unsynced: BTreeMap<u64, Msg>,
    /// The highest gseq ever durable (and so possibly forwarded): never to be reused.
    max_durable: u64,
}

impl Model {
    /// Move what the queue reports durable from `pending` to `durable`.
    fn follow_durable(&mut self, durable_next: u64) {
        let rest = self.pending.split_off(&durable_next);
        if let Some(max) = self.pending.keys().next_back() {
            self.max_durable = self.max_durable.max(*max);
        }
        self.durable.append(&mut self.pending);
        self.pending = rest;
    }
}

fn run(ops: Vec<Op>, max_disk: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), max_disk).unwrap();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Append { topic, len } => {
                let body = payload(q.next_gseq, len);
                let a = q.append(TOPICS[topic], &body, 1_700_000_000_000).unwrap();
                prop_assert_eq!(a.gseq, q.next_gseq - 1);
                prop_assert!(a.gseq > m.max_durable);
                m.pending.insert(a.gseq, (TOPICS[topic].to_owned(), body));
                if a.dropped > 0 {
                    // The dropped records are exactly the unconfirmed ones below the new oldest
                    // segment: the oldest ones.
                    let first = q.first_segment();
                    let below = |map: &BTreeMap<u64, Msg>| map.range(..first).count() as u64;
                    prop_assert_eq!(a.dropped, below(&m.durable) + below(&m.pending));
                    m.durable = m.durable.split_off(&first);
                    m.pending = m.pending.split_off(&first);
                    m.confirmed_unsynced = m.confirmed_unsynced.split_off(&first);
                }
                prop_assert!(
                    q.disk_bytes() <= max_disk,
                    "{} > {max_disk}",
                    q.disk_bytes()
                );
            }
            Op::Sync => {
                q.sync().unwrap();
                prop_assert_eq!(q.durable_next(), q.next_gseq);
                m.confirmed_unsynced.clear();
            }
            Op::Ack { pick, span } => {
                if m.durable.is_empty() {
                    continue;
                }
                let lo = *m.durable.keys().nth(pick % m.durable.len()).unwrap();
                let hi = lo + span;
                let newly = q.ack(&[(lo, hi)]).unwrap();
                let hit: Vec<u64> = m.durable.range(lo..=hi).map(|(g, _)| *g).collect();
                prop_assert_eq!(newly, hit.len() as u64);
                for g in hit {
                    let msg = m.durable.remove(&g).unwrap();
                    m.confirmed_unsynced.insert(g, msg);
                }
            }
            Op::AckUnsynced => {
                // A confirmation for records that were never durable (so never forwarded) is
                // not applied.
                let newly = q.ack(&[(q.durable_next(), u64::MAX)]).unwrap();
                prop_assert_eq!(newly, 0);
            }
            Op::Read { from, max } => {
                let got: Vec<(u64, Msg)> = q
                    .read(from, max, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.gseq, (r.topic, r.payload)))
                    .collect();
                let want: Vec<(u64, Msg)> = m
                    .durable
                    .range(from..)
                    .take(max)
                    .map(|(g, msg)| (*g, msg.clone()))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Restart => {
                q.close().unwrap();
                q = Queue::open(dir.path(), max_disk).unwrap();
                prop_assert_eq!(q.recovery(), &Recovery::default());
                m.follow_durable(u64::MAX);
                m.confirmed_unsynced.clear();
            }
            Op::Crash { segment, acks, at } => {
                q = crash_and_check(q, &mut m, dir.path(), max_disk, (segment, acks, at))?;
            }
        }
        m.follow_durable(q.durable_next());
        let stats = q.stats();
        prop_assert_eq!(stats.depth, (m.durable.len() + m.pending.len()) as u64);
        let oldest = m.durable.keys().chain(m.pending.keys()).min().copied();
        prop_assert_eq!(stats.oldest_gseq, oldest);
    }
    Ok(())
}

/// Crash `q`, damage the unsynced tails, reopen, and check what came back against the model.
fn crash_and_check(
    q: Queue,
    m: &mut Model,
    dir: &Path,
    max_disk: u64,
    (segment, acks, at): (Damage, Damage, u64),
) -> Result<Queue, TestCaseError> {
    let (seg_path, seg_durable) = q.active_tail();
    let (acks_path, acks_durable) = q.acks_tail();
    q.crash(at * 13);
    damage_tail(&seg_path, seg_durable, segment, at);
    damage_tail(&acks_path, acks_durable, acks, at / 7);
    let mut q = Queue::open(dir, max_disk).unwrap();
    prop_assert!(q.recovery().corrupt_copies.is_empty());
    let recovered = q.read_all();
    // Everything durable and unconfirmed survives, unchanged.
    for (g, msg) in &m.durable {
        prop_assert_eq!(recovered.get(g), Some(msg), "durable record {} lost", g);
    }
    // Nothing else appears but unsynced appends (a prefix of them) and records whose
    // confirmation had not been synced.
    let mut pending_alive = Vec::new();
    for (g, msg) in &recovered {
        if m.durable.contains_key(g) {
            continue;
        }
        if let Some(p) = m.pending.get(g) {
            prop_assert_eq!(p, msg);
            pending_alive.push(*g);
        } else {
            prop_assert_eq!(m.confirmed_unsynced.get(g), Some(msg), "ghost {}", g);
        }
    }
    let prefix: Vec<u64> = m
        .pending
        .keys()
        .take(pending_alive.len())
        .copied()
        .collect();
    prop_assert_eq!(pending_alive, prefix);
    prop_assert!(q.next_gseq > m.max_durable);
    m.durable = recovered;
    m.max_durable = m
        .max_durable
        .max(m.durable.keys().next_back().copied().unwrap_or(0));
    m.pending.clear();
    m.confirmed_unsynced.clear();
    Ok(q)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_its_model_through_crashes(
        ops in proptest::collection::vec(op(), 1..160),
        quota_kib in 64u64..160,
    ) {
        run(ops, quota_kib * 1024)?;
    }
}

fn fill(q: &mut Queue, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            q.append("keg/readings/S1", &payload(i as u64, 200), 1)
                .unwrap()
                .gseq
        })
        .collect()
}

#[test]
fn gseq_starts_at_one_and_continues_across_restarts_and_confirmations() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(fill(&mut q, 3), vec![1, 2, 3]);
    q.sync().unwrap();
    assert_eq!(q.ack(&[(1, 3)]).unwrap(), 3);
    q.close().unwrap();
    let mut q = Queue::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(q.stats().depth, 0);
    assert_eq!(fill(&mut q, 1), vec![4]);
}

#[test]
fn out_of_order_confirmations_delete_exactly_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), 1 << 20).unwrap();
    fill(&mut q, 10);
    q.sync().unwrap();
    assert_eq!(q.ack(&[(4, 6), (9, 9)]).unwrap(), 4);
    assert_eq!(
        q.ack(&[(5, 5)]).unwrap(),
        0,
        "a repeated confirmation counts once"
    );
    let left: Vec<u64> = q
        .read(0, 100, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.gseq)
        .collect();
    assert_eq!(left, vec![1, 2, 3, 7, 8, 10]);
    assert_eq!(q.stats().oldest_gseq, Some(1));
    q.close().unwrap();
    let mut q = Queue::open(dir.path(), 1 << 20).unwrap();
    let left: Vec<u64> = q
        .read(0, 100, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.gseq)
        .collect();
    assert_eq!(
        left,
        vec![1, 2, 3, 7, 8, 10],
        "confirmations survive a restart"
    );
}

#[test]
fn records_are_invisible_until_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), 1 << 20).unwrap();
    fill(&mut q, 2);
    assert!(q.read(0, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(q.stats().depth, 2);
    let ticket = q.begin_sync().unwrap();
    fill(&mut q, 1);
    ticket.sync().unwrap();
    q.finish_sync(&ticket);
    let seen: Vec<u64> = q
        .read(0, 10, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.gseq)
        .collect();
    assert_eq!(
        seen,
        vec![1, 2],
        "the record appended after begin_sync waits for the next sync"
    );
}

#[test]
fn full_disk_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let quota = 64 * 1024;
    let mut q = Queue::open(dir.path(), quota).unwrap();
    let gseqs = fill(&mut q, 1000);
    q.sync().unwrap();
    let stats = q.stats();
    assert!(stats.disk_bytes <= quota);
    assert!(stats.dropped_full > 0);
    assert_eq!(stats.depth + stats.dropped_full, 1000);
    let kept: Vec<u64> = q
        .read(0, 2000, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.gseq)
        .collect();
    assert_eq!(kept.last(), gseqs.last(), "the newest are kept");
    assert_eq!(
        kept.first().copied(),
        Some(stats.dropped_full + 1),
        "the oldest went"
    );
}

#[test]
fn a_damaged_sealed_segment_is_copied_aside_and_cut_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let quota = 256 * 1024;
    let mut q = Queue::open(dir.path(), quota).unwrap();
    fill(&mut q, 400);
    q.close().unwrap();
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() > 2);
    // Flip a byte in the middle of the oldest (sealed) segment.
    let mut bytes = fs::read(&segs[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&segs[0], &bytes).unwrap();

    let mut q = Queue::open(dir.path(), quota).unwrap();
    let rec = q.recovery().clone();
    assert_eq!(rec.corrupt_copies.len(), 1);
    assert!(rec.corrupt_copies[0].starts_with(dir.path().join("corrupt")));
    assert!(rec.corrupt_bytes > 0);
    assert_eq!(
        fs::read(&rec.corrupt_copies[0]).unwrap(),
        bytes,
        "the damaged file is kept"
    );
    let kept: Vec<u64> = q
        .read(0, 1000, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.gseq)
        .collect();
    // The records before the damage and every later segment are kept, in order.
    assert_eq!(kept[0], 1);
    assert!(kept.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*kept.last().unwrap(), 400);
    assert!(kept.len() < 400);
    // And the queue goes on.
    assert_eq!(q.append("keg/readings/S1", b"{}", 1).unwrap().gseq, 401);
    q.close().unwrap();
    let q = Queue::open(dir.path(), quota).unwrap();
    assert_eq!(
        q.recovery(),
        &Recovery::default(),
        "repaired once, clean after"
    );
}

#[test]
fn a_torn_newest_segment_header_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), 1 << 20).unwrap();
    fill(&mut q, 3);
    q.close().unwrap();
    // A crash while creating the next segment leaves a header-less file behind.
    fs::write(segment_path(dir.path(), 4), b"SSG").unwrap();
    let mut q = Queue::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(q.recovery().torn_tails, 1);
    assert_eq!(q.read(0, 10, usize::MAX).unwrap().len(), 3);
    assert_eq!(q.append("keg/readings/S1", b"{}", 1).unwrap().gseq, 4);
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _q = Queue::open(dir.path(), 1 << 20).unwrap();
    assert!(matches!(
        Queue::open(dir.path(), 1 << 20),
        Err(QueueError::Locked { .. })
    ));
}

#[test]
fn oversize_messages_and_tiny_quotas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Queue::open(dir.path(), 1024),
        Err(QueueError::DiskTooSmall { .. })
    ));
    let mut q = Queue::open(dir.path(), MIN_DISK_BYTES).unwrap();
    let big = vec![b'x'; (MIN_DISK_BYTES / 4) as usize + 1];
    assert!(matches!(
        q.append("keg/readings/S1", &big, 1),
        Err(QueueError::TooLarge { .. })
    ));
}

#[test]
fn oldest_age_is_read_from_the_oldest_unconfirmed_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), 1 << 20).unwrap();
    for (i, ms) in [100u64, 200, 300].into_iter().enumerate() {
        q.append("keg/readings/S1", &payload(i as u64, 10), ms)
            .unwrap();
    }
    assert_eq!(q.oldest_enqueued_ms().unwrap(), None, "nothing durable yet");
    q.sync().unwrap();
    assert_eq!(q.oldest_enqueued_ms().unwrap(), Some(100));
    q.ack(&[(1, 1)]).unwrap();
    assert_eq!(q.oldest_enqueued_ms().unwrap(), Some(200));
    // Reading for the age does not disturb a forwarding pass in progress.
    let first = q.read(2, 1, usize::MAX).unwrap();
    q.ack(&[(2, 2)]).unwrap();
    assert_eq!(q.oldest_enqueued_ms().unwrap(), Some(300));
    assert_eq!(first[0].gseq, 2);
    assert_eq!(q.read(3, 5, usize::MAX).unwrap()[0].enqueued_ms, 300);
}
