//! The gateway's durable on-disk queue: every message the bar's scales publish is written here,
//! and fsync'd, before the local broker gets its acknowledgement; it leaves only when the server
//! confirms the commit (or when the disk quota forces the oldest out, which is counted).
//!
//! # Format, and why not an embedded database
//!
//! A segmented append-only log. The queue directory holds:
//! - `{first_gseq:020}.seg` segments: a 16-byte header (`SSGWSEG1` magic, first gseq), then
//!   records `[body length u32 LE][CRC-32C of body u32 LE][body]`, body =
//!   `[gseq u64][enqueued epoch-ms u64][topic length u16][topic][payload]`. Record `i` of a
//!   segment has gseq `first + i`, so the gseq doubles as a sequence check.
//! - `acks.log`: an 8-byte header (`SSGWACK1`), then confirmations `[CRC-32C u32][from u64][to
//!   u64]` (inclusive gseq ranges), compacted by rewrite-and-rename when it grows.
//! - `LOCK`, held with an exclusive file lock while a process uses the directory; `corrupt/`,
//!   where damaged segments are copied before they are repaired.
//!
//! The workload is exactly a log — append at one end, confirm mostly near the other, replay
//! sequentially — and a log makes the crash rules simple to state and to test: a record is either
//! whole with a good checksum or it, and everything after it in the newest segment, is the torn
//! tail of a write that was never acknowledged. One group append plus one `fdatasync` makes a
//! whole batch durable, and deleting a fully confirmed segment is one `unlink`. redb 4.6 (measured
//! in stack-notes: ≈ 0.5 ms per durable commit) would also be correct, but it is a B-tree with
//! its own copy-on-write pages: more code to carry on the Pi, a file that only grows back after
//! compaction, and crash behaviour we could only test as a black box. The log is one module that
//! the model-based property test (`queue/tests.rs`) drives through appends, confirmations,
//! restarts and simulated crashes that keep a random prefix of the unsynced bytes and then cut,
//! corrupt or extend the files' tails at random byte offsets. (What that test cannot observe is a
//! missing `fsync` itself — a crash of the process keeps what reached the OS — so the fsync calls
//! are kept few and named: [`SyncTicket::sync`], segment rotation, file creation.)
//!
//! # Rules this module keeps
//! - A record is visible to [`Queue::read`] only once it is durable (after [`Queue::sync`] or
//!   [`Queue::finish_sync`]): nothing is forwarded that a crash could take back, so a gseq that
//!   the server has seen is never reused.
//! - Only [`Queue::ack`] (the server's confirmation) and [`Queue::append`] making room under the
//!   disk quota remove records; the latter counts every unconfirmed record it drops.
//! - Opening never fails on damaged data: a torn tail is cut off and counted, a damaged sealed
//!   segment is copied to `corrupt/`, cut at the damage, counted and logged at ERROR — so a bad
//!   file cannot make the gateway crash-loop. Only I/O errors (permissions, a full or failing
//!   disk) and a second process on the same directory fail [`Queue::open`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crc::{CRC_32_ISCSI, Crc};

use crate::ranges::RangeSet;

const SEGMENT_MAGIC: &[u8; 8] = b"SSGWSEG1";
const ACKS_MAGIC: &[u8; 8] = b"SSGWACK1";
const SEGMENT_HEADER_LEN: u64 = 16;
const ACKS_HEADER_LEN: u64 = 8;
const RECORD_HEADER_LEN: u64 = 8;
/// gseq, enqueued-ms, topic length.
const BODY_FIXED_LEN: usize = 8 + 8 + 2;
const ACK_RECORD_LEN: usize = 4 + 8 + 8;
const ACKS_FILE: &str = "acks.log";
const SEGMENT_SUFFIX: &str = ".seg";
const IO_BUFFER: usize = 64 * 1024;

/// Longest topic a record may carry, bytes (the contract's longest topic is 62).
pub const MAX_TOPIC_LEN: usize = 256;
/// Largest payload a record may carry, bytes (contract payloads are below 1 KiB).
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;
const MAX_BODY_LEN: usize = BODY_FIXED_LEN + MAX_TOPIC_LEN + MAX_PAYLOAD_LEN;
/// The smallest disk quota the queue accepts.
pub const MIN_DISK_BYTES: u64 = 64 * 1024;
/// Segments are an eighth of the quota, within these bounds: dropping the oldest segment when
/// the disk is full then frees at most an eighth of the queue, and a confirmed segment is
/// deleted soon after its last record is confirmed.
const MIN_SEGMENT_BYTES: u64 = 1024;
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

static CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Why the queue cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "queue directory {path} is in use by another gateway process (stop it, or give this one another --data-dir)"
    )]
    Locked { path: PathBuf },
    #[error("a message of {len} bytes is larger than the queue accepts ({max} bytes)")]
    TooLarge { len: usize, max: usize },
    #[error("the disk quota of {max_disk} bytes is below the minimum of {min} bytes")]
    DiskTooSmall { max_disk: u64, min: u64 },
    #[error(
        "queue record {gseq} in {path} is damaged ({reason}); restart the gateway: on start-up it copies the damaged segment into corrupt/ and keeps every record before the damage"
    )]
    Corrupt {
        path: PathBuf,
        gseq: u64,
        reason: &'static str,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One queued message, as read back for forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The gateway queue sequence, assigned at append: from 1, one more per message.
    pub gseq: u64,
    /// When the gateway queued it, epoch milliseconds.
    pub enqueued_ms: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What [`Queue::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub gseq: u64,
    /// Unconfirmed records dropped (oldest first) to stay within the disk quota.
    pub dropped: u64,
}

/// What [`Queue::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments whose unsynced tail was torn by a crash and cut off (at most one per start).
    pub torn_tails: u64,
    /// Bytes cut off as torn tails.
    pub torn_bytes: u64,
    /// Damaged sealed segments, copied into `corrupt/` (these paths) and cut at the damage.
    pub corrupt_copies: Vec<PathBuf>,
    /// Bytes of damaged sealed segments that could not be read back.
    pub corrupt_bytes: u64,
    /// Bytes cut off the end of the confirmation log (those confirmations are resent by the
    /// server after the gateway resends the records; nothing is lost).
    pub ack_torn_bytes: u64,
}

/// A snapshot for health reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Records waiting for the server's confirmation.
    pub depth: u64,
    /// Bytes the queue's files use.
    pub disk_bytes: u64,
    /// The lowest unconfirmed gseq, if any.
    pub oldest_gseq: Option<u64>,
    /// The gseq the next append gets.
    pub next_gseq: u64,
    /// Unconfirmed records dropped to stay within the quota since this process opened the queue.
    pub dropped_full: u64,
}

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    /// One past its last record.
    next: u64,
    /// Valid length of the file, header included.
    bytes: u64,
    path: PathBuf,
}

/// Sequential reader over one segment, kept between [`Queue::read`] calls so that forwarding
/// in order costs one pass over the file.
#[derive(Debug)]
struct Cursor {
    first: u64,
    /// gseq of the record at the reader's position.
    gseq: u64,
    reader: BufReader<File>,
    path: PathBuf,
}

/// The data and confirmation files flushed to the OS, ready to be fsync'd without holding the
/// queue (so the forwarder can read and confirm while the disk syncs). Obtained from
/// [`Queue::begin_sync`], completed with [`Queue::finish_sync`].
#[derive(Debug)]
pub struct SyncTicket {
    data: File,
    data_path: PathBuf,
    acks: File,
    acks_path: PathBuf,
    segment_first: u64,
    segment_bytes: u64,
    acks_bytes: u64,
    upto: u64,
}

impl SyncTicket {
    /// fsync both files. Blocking: run it off the async executor.
    pub fn sync(&self) -> Result<(), QueueError> {
        self.data.sync_data().map_err(io_at(&self.data_path))?;
        self.acks.sync_data().map_err(io_at(&self.acks_path))
    }
}

/// The durable queue. See the module documentation for the format and the rules.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    _lock: File,
    max_disk: u64,
    segment_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    /// Writer at the end of the newest segment (the last entry of `segments`).
    active: BufWriter<File>,
    active_durable_bytes: u64,
    acked: RangeSet,
    acks: BufWriter<File>,
    acks_path: PathBuf,
    ack_bytes: u64,
    acks_durable_bytes: u64,
    ack_records: u64,
    next_gseq: u64,
    durable_next: u64,
    cursor: Option<Cursor>,
    oldest_cache: Option<(u64, u64)>,
    dropped_full: u64,
    recovery: Recovery,
    scratch: Vec<u8>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The parts of a record body, checked.
struct Body<'a> {
    enqueued_ms: u64,
    topic: &'a [u8],
    payload: &'a [u8],
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn check_body(body: &[u8], crc: u32, gseq: u64) -> Result<Body<'_>, &'static str> {
    if CRC32C.checksum(body) != crc {
        return Err("checksum mismatch");
    }
    if le_u64(body) != gseq {
        return Err("sequence out of order");
    }
    let topic_len = usize::from(u16::from_le_bytes([body[16], body[17]]));
    if BODY_FIXED_LEN + topic_len > body.len() {
        return Err("topic length out of range");
    }
    Ok(Body {
        enqueued_ms: le_u64(&body[8..]),
        topic: &body[BODY_FIXED_LEN..BODY_FIXED_LEN + topic_len],
        payload: &body[BODY_FIXED_LEN + topic_len..],
    })
}

/// Read one record's header and body into `buf`; `Err(reason)` for anything short or out of
/// range (the caller decides whether that is a torn tail or damage).
fn read_raw(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<(u32, u64), &'static str> {
    let mut header = [0u8; RECORD_HEADER_LEN as usize];
    r.read_exact(&mut header)
        .map_err(|_| "record header cut short")?;
    let len = le_u32(&header) as usize;
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&len) {
        return Err("record length out of range");
    }
    buf.resize(len, 0);
    r.read_exact(buf).map_err(|_| "record cut short")?;
    Ok((le_u32(&header[4..]), RECORD_HEADER_LEN + len as u64))
}

struct Scan {
    next: u64,
    valid_len: u64,
    file_len: u64,
    damage: Option<&'static str>,
}

fn scan_segment(path: &Path, first: u64) -> Result<Scan, QueueError> {
    let file = File::open(path).map_err(io_at(path))?;
    let file_len = file.metadata().map_err(io_at(path))?.len();
    let mut r = BufReader::with_capacity(IO_BUFFER, file);
    let mut scan = Scan {
        next: first,
        valid_len: 0,
        file_len,
        damage: None,
    };
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    if r.read_exact(&mut header).is_err() {
        scan.damage = Some("segment header cut short");
        return Ok(scan);
    }
    if &header[..8] != SEGMENT_MAGIC {
        scan.damage = Some("not a queue segment");
        return Ok(scan);
    }
    if le_u64(&header[8..]) != first {
        scan.damage = Some("segment header names another sequence");
        return Ok(scan);
    }
    scan.valid_len = SEGMENT_HEADER_LEN;
    let mut buf = Vec::new();
    while scan.valid_len < file_len {
        let checked = read_raw(&mut r, &mut buf)
            .and_then(|(crc, len)| check_body(&buf, crc, scan.next).map(|_| len));
        match checked {
            Ok(len) => {
                scan.valid_len += len;
                scan.next += 1;
            }
            Err(reason) => {
                scan.damage = Some(reason);
                break;
            }
        }
    }
    Ok(scan)
}

fn create_segment(dir: &Path, first: u64) -> Result<(PathBuf, File), QueueError> {
    let path = segment_path(dir, first);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io_at(&path))?;
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..].copy_from_slice(&first.to_le_bytes());
    file.write_all(&header).map_err(io_at(&path))?;
    file.sync_all().map_err(io_at(&path))?;
    sync_dir(dir)?;
    Ok((path, file))
}

fn open_append(path: &Path) -> Result<File, QueueError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_at(path))
}

fn truncate_to(path: &Path, len: u64) -> Result<(), QueueError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    file.set_len(len).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

fn ack_record(lo: u64, hi: u64) -> [u8; ACK_RECORD_LEN] {
    let mut rec = [0u8; ACK_RECORD_LEN];
    rec[4..12].copy_from_slice(&lo.to_le_bytes());
    rec[12..].copy_from_slice(&hi.to_le_bytes());
    let crc = CRC32C.checksum(&rec[4..]);
    rec[..4].copy_from_slice(&crc.to_le_bytes());
    rec
}

/// Read the confirmation log; returns the ranges, its valid length and its file length.
fn read_acks(path: &Path) -> Result<(RangeSet, u64, u64), QueueError> {
    let mut set = RangeSet::new();
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((set, 0, 0)),
        Err(e) => return Err(io_at(path)(e)),
    };
    if bytes.len() < ACKS_HEADER_LEN as usize || &bytes[..8] != ACKS_MAGIC {
        return Ok((set, 0, bytes.len() as u64));
    }
    let mut valid = ACKS_HEADER_LEN as usize;
    for rec in bytes[valid..].chunks(ACK_RECORD_LEN) {
        if rec.len() < ACK_RECORD_LEN || CRC32C.checksum(&rec[4..]) != le_u32(rec) {
            break;
        }
        set.insert(le_u64(&rec[4..]), le_u64(&rec[12..]));
        valid += ACK_RECORD_LEN;
    }
    Ok((set, valid as u64, bytes.len() as u64))
}

/// Write a fresh confirmation log holding `set`, atomically (temporary file, fsync, rename).
fn write_acks(dir: &Path, path: &Path, set: &RangeSet) -> Result<File, QueueError> {
    let tmp = dir.join("acks.tmp");
    let mut out = Vec::with_capacity(ACKS_HEADER_LEN as usize + set.len() * ACK_RECORD_LEN);
    out.extend_from_slice(ACKS_MAGIC);
    for (lo, hi) in set.iter() {
        out.extend_from_slice(&ack_record(lo, hi));
    }
    let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
    file.write_all(&out).map_err(io_at(&tmp))?;
    file.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, path).map_err(io_at(path))?;
    sync_dir(dir)?;
    open_append(path)
}

/// Take the directory's exclusive lock (released when the file closes, also on a crash).
fn lock_dir(dir: &Path) -> Result<File, QueueError> {
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_at(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(QueueError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(io_at(&lock_path)(e)),
    }
}

/// The segment files in `dir`, oldest first; leftover temporary files are removed.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, QueueError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX)
            && stem.len() == 20
            && let Ok(first) = stem.parse::<u64>()
        {
            names.push((first, entry.path()));
        } else if Path::new(name).extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(entry.path()).map_err(io_at(&entry.path()))?;
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Scan every segment, cutting off a torn tail of the newest and copying aside and cutting a
/// damaged sealed one; returns what is left.
fn recover_segments(
    dir: &Path,
    names: Vec<(u64, PathBuf)>,
    recovery: &mut Recovery,
) -> Result<BTreeMap<u64, Segment>, QueueError> {
    let mut segments = BTreeMap::new();
    let count = names.len();
    for (i, (first, path)) in names.into_iter().enumerate() {
        let newest = i + 1 == count;
        let scan = scan_segment(&path, first)?;
        if let Some(reason) = scan.damage {
            let lost = scan.file_len - scan.valid_len;
            if newest {
                tracing::warn!(
                    path = %path.display(), bytes = lost, reason,
                    "queue: cutting off the torn tail of the newest segment (a write that was never acknowledged)"
                );
                recovery.torn_tails += 1;
                recovery.torn_bytes += lost;
            } else {
                let copy = Queue::copy_aside(dir, &path)?;
                tracing::error!(
                    path = %path.display(), copy = %copy.display(), bytes = lost, reason,
                    first_lost_gseq = scan.next,
                    "queue: damaged segment; copied aside and cut at the damage, records after it are lost"
                );
                recovery.corrupt_copies.push(copy);
                recovery.corrupt_bytes += lost;
            }
            if scan.valid_len < SEGMENT_HEADER_LEN || (!newest && scan.next == first) {
                // Nothing usable: a sealed one goes, the newest is recreated by the caller.
                fs::remove_file(&path).map_err(io_at(&path))?;
                continue;
            }
            truncate_to(&path, scan.valid_len)?;
        }
        segments.insert(
            first,
            Segment {
                first,
                next: scan.next,
                bytes: scan.valid_len,
                path,
            },
        );
    }
    Ok(segments)
}

impl Queue {
    /// Open (or create) the queue in `dir`, repairing what a crash or damage left (see
    /// [`Recovery`], also logged). `max_disk` bounds the bytes of all queue files.
    pub fn open(dir: &Path, max_disk: u64) -> Result<Self, QueueError> {
        if max_disk < MIN_DISK_BYTES {
            return Err(QueueError::DiskTooSmall {
                max_disk,
                min: MIN_DISK_BYTES,
            });
        }
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_dir(dir)?;
        let mut recovery = Recovery::default();
        let mut segments = recover_segments(dir, list_segments(dir)?, &mut recovery)?;

        let acks_path = dir.join(ACKS_FILE);
        let (mut acked, ack_valid, ack_len) = read_acks(&acks_path)?;
        if ack_valid < ack_len {
            tracing::warn!(
                bytes = ack_len - ack_valid,
                "queue: cutting off the torn tail of the confirmation log; those records will be resent"
            );
            recovery.ack_torn_bytes = ack_len - ack_valid;
        }
        let acked_max = acked.iter().last().map_or(0, |(_, hi)| hi);
        let next_gseq = segments
            .values()
            .next_back()
            .map_or(1, |s| s.next)
            .max(acked_max + 1)
            .max(1);
        if let Some(oldest) = segments.keys().next() {
            acked.remove_below(*oldest);
        }
        // Rewrite the confirmation log: drops its torn tail and anything below the oldest segment.
        let acks_file = write_acks(dir, &acks_path, &acked)?;
        let ack_bytes = ACKS_HEADER_LEN + acked.len() as u64 * ACK_RECORD_LEN as u64;

        let active_file = match segments.values().next_back() {
            Some(s) if s.next == next_gseq => {
                let file = open_append(&s.path)?;
                // Whatever the previous process wrote is durable before anything is forwarded.
                file.sync_all().map_err(io_at(&s.path))?;
                file
            }
            _ => {
                let (path, file) = create_segment(dir, next_gseq)?;
                segments.insert(
                    next_gseq,
                    Segment {
                        first: next_gseq,
                        next: next_gseq,
                        bytes: SEGMENT_HEADER_LEN,
                        path,
                    },
                );
                file
            }
        };
        let active_bytes = segments.values().next_back().map_or(0, |s| s.bytes);

        let mut queue = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            max_disk,
            segment_bytes: (max_disk / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            segments,
            active: BufWriter::with_capacity(IO_BUFFER, active_file),
            active_durable_bytes: active_bytes,
            acked,
            acks: BufWriter::with_capacity(IO_BUFFER, acks_file),
            acks_path,
            ack_bytes,
            acks_durable_bytes: ack_bytes,
            ack_records: 0,
            next_gseq,
            durable_next: next_gseq,
            cursor: None,
            oldest_cache: None,
            dropped_full: 0,
            recovery,
            scratch: Vec::new(),
        };
        let firsts: Vec<u64> = queue.segments.keys().copied().collect();
        queue.ack_records = queue.acked.len() as u64;
        queue.collect(&firsts)?;
        Ok(queue)
    }

    fn copy_aside(dir: &Path, path: &Path) -> Result<PathBuf, QueueError> {
        let corrupt = dir.join("corrupt");
        fs::create_dir_all(&corrupt).map_err(io_at(&corrupt))?;
        let name = path
            .file_name()
            .map_or_else(|| "segment".into(), |n| n.to_string_lossy().into_owned());
        let copy = corrupt.join(format!("{name}.{}", now_ms()));
        fs::copy(path, &copy).map_err(io_at(&copy))?;
        File::open(&copy)
            .and_then(|f| f.sync_all())
            .map_err(io_at(&copy))?;
        Ok(copy)
    }

    /// What opening found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    fn active_segment(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .unwrap_or_else(|| unreachable!("the queue always has an active segment"))
    }

    fn active_segment_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .unwrap_or_else(|| unreachable!("the queue always has an active segment"))
    }

    /// Bytes used by the queue's files.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum::<u64>() + self.ack_bytes
    }

    /// Queue a message; it becomes durable (and readable) at the next sync. If the disk quota is
    /// full, the oldest segment is dropped first and its unconfirmed records are counted.
    pub fn append(
        &mut self,
        topic: &str,
        payload: &[u8],
        enqueued_ms: u64,
    ) -> Result<Appended, QueueError> {
        let body_len = BODY_FIXED_LEN + topic.len() + payload.len();
        let size = RECORD_HEADER_LEN + body_len as u64;
        let max = MAX_PAYLOAD_LEN.min((self.max_disk / 4) as usize);
        if topic.len() > MAX_TOPIC_LEN || payload.len() > max {
            return Err(QueueError::TooLarge {
                len: topic.len() + payload.len(),
                max,
            });
        }
        let active = self.active_segment();
        if active.bytes + size > self.segment_bytes && active.next > active.first {
            self.rotate()?;
        }
        let dropped = self.make_room(size)?;

        let gseq = self.next_gseq;
        let mut rec = std::mem::take(&mut self.scratch);
        rec.clear();
        rec.extend_from_slice(&(body_len as u32).to_le_bytes());
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&gseq.to_le_bytes());
        rec.extend_from_slice(&enqueued_ms.to_le_bytes());
        rec.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        rec.extend_from_slice(topic.as_bytes());
        rec.extend_from_slice(payload);
        let crc = CRC32C.checksum(&rec[RECORD_HEADER_LEN as usize..]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        let path = self.active_segment().path.clone();
        let written = self.active.write_all(&rec);
        self.scratch = rec;
        written.map_err(io_at(&path))?;

        let active = self.active_segment_mut();
        active.next += 1;
        active.bytes += size;
        self.next_gseq += 1;
        Ok(Appended { gseq, dropped })
    }

    /// Seal the active segment (fsync'd whole, so everything in it is durable) and start a new
    /// one at the next gseq.
    fn rotate(&mut self) -> Result<(), QueueError> {
        let path = self.active_segment().path.clone();
        self.active.flush().map_err(io_at(&path))?;
        self.active.get_ref().sync_data().map_err(io_at(&path))?;
        self.durable_next = self.next_gseq;
        let first = self.next_gseq;
        let (path, file) = create_segment(&self.dir, first)?;
        self.active = BufWriter::with_capacity(IO_BUFFER, file);
        self.active_durable_bytes = SEGMENT_HEADER_LEN;
        self.segments.insert(
            first,
            Segment {
                first,
                next: first,
                bytes: SEGMENT_HEADER_LEN,
                path,
            },
        );
        Ok(())
    }

    /// Drop the oldest sealed segments until `size` more bytes fit the quota; returns how many
    /// unconfirmed records went.
    fn make_room(&mut self, size: u64) -> Result<u64, QueueError> {
        let mut dropped = 0;
        while self.disk_bytes() + size > self.max_disk && self.segments.len() > 1 {
            let Some((_, oldest)) = self.segments.pop_first() else {
                break;
            };
            let unconfirmed = self.unconfirmed_in(&oldest);
            fs::remove_file(&oldest.path).map_err(io_at(&oldest.path))?;
            self.forget_segment(&oldest);
            dropped += unconfirmed;
            tracing::warn!(
                first_gseq = oldest.first,
                last_gseq = oldest.next - 1,
                dropped = unconfirmed,
                max_disk = self.max_disk,
                "queue: disk quota full, dropped the oldest segment"
            );
        }
        self.dropped_full += dropped;
        Ok(dropped)
    }

    fn unconfirmed_in(&self, s: &Segment) -> u64 {
        if s.next == s.first {
            return 0;
        }
        (s.next - s.first) - self.acked.count_within(s.first, s.next - 1)
    }

    fn forget_segment(&mut self, s: &Segment) {
        if self.cursor.as_ref().is_some_and(|c| c.first == s.first) {
            self.cursor = None;
        }
        if self.oldest_cache.is_some_and(|(g, _)| g < s.next) {
            self.oldest_cache = None;
        }
        if let Some(oldest) = self.segments.keys().next() {
            self.acked.remove_below(*oldest);
        }
    }

    /// Flush everything appended and confirmed so far to the OS and hand back the files to
    /// fsync. Between this and [`Queue::finish_sync`] the queue may be used as usual.
    pub fn begin_sync(&mut self) -> Result<SyncTicket, QueueError> {
        let active = self.active_segment();
        let (data_path, segment_first, segment_bytes) =
            (active.path.clone(), active.first, active.bytes);
        self.active.flush().map_err(io_at(&data_path))?;
        self.acks.flush().map_err(io_at(&self.acks_path))?;
        Ok(SyncTicket {
            data: self
                .active
                .get_ref()
                .try_clone()
                .map_err(io_at(&data_path))?,
            data_path,
            acks: self
                .acks
                .get_ref()
                .try_clone()
                .map_err(io_at(&self.acks_path))?,
            acks_path: self.acks_path.clone(),
            segment_first,
            segment_bytes,
            acks_bytes: self.ack_bytes,
            upto: self.next_gseq,
        })
    }

    /// Record that a ticket's fsync succeeded: its records become durable and readable.
    pub fn finish_sync(&mut self, ticket: &SyncTicket) {
        self.durable_next = self.durable_next.max(ticket.upto);
        if self.active_segment().first == ticket.segment_first {
            self.active_durable_bytes = self.active_durable_bytes.max(ticket.segment_bytes);
        }
        self.acks_durable_bytes = self.acks_durable_bytes.max(ticket.acks_bytes);
    }

    /// Make everything appended and confirmed so far durable (blocking).
    pub fn sync(&mut self) -> Result<(), QueueError> {
        let ticket = self.begin_sync()?;
        ticket.sync()?;
        self.finish_sync(&ticket);
        Ok(())
    }

    /// Sync and close (a clean shutdown).
    pub fn close(mut self) -> Result<(), QueueError> {
        self.sync()
    }

    /// The gseq below which every record is durable.
    pub fn durable_next(&self) -> u64 {
        self.durable_next
    }

    /// Up to `max_records` durable, unconfirmed records with gseq ≥ `from`, in gseq order,
    /// stopping once `max_bytes` of payload are collected.
    pub fn read(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, QueueError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut g = from;
        while out.len() < max_records && bytes < max_bytes && g < self.durable_next {
            if let Some((_, hi)) = self.acked.covering(g) {
                g = hi + 1;
                continue;
            }
            let first = match self.segments.range(..=g).next_back() {
                Some((first, s)) if g < s.next => *first,
                _ => match self.segments.range(g + 1..).next() {
                    Some((first, _)) => {
                        g = *first;
                        continue;
                    }
                    None => break,
                },
            };
            let record = self.read_one(first, g)?;
            bytes += record.payload.len();
            out.push(record);
            g += 1;
        }
        Ok(out)
    }

    fn read_one(&mut self, first: u64, gseq: u64) -> Result<Record, QueueError> {
        let mut cursor = match self.cursor.take() {
            Some(c) if c.first == first && c.gseq <= gseq => c,
            _ => {
                let path = self.segments[&first].path.clone();
                let mut file = File::open(&path).map_err(io_at(&path))?;
                file.seek(SeekFrom::Start(SEGMENT_HEADER_LEN))
                    .map_err(io_at(&path))?;
                Cursor {
                    first,
                    gseq: first,
                    reader: BufReader::with_capacity(IO_BUFFER, file),
                    path,
                }
            }
        };
        let corrupt = |c: &Cursor, reason| QueueError::Corrupt {
            path: c.path.clone(),
            gseq: c.gseq,
            reason,
        };
        while cursor.gseq < gseq {
            let mut head = [0u8; 16];
            cursor
                .reader
                .read_exact(&mut head)
                .map_err(|_| corrupt(&cursor, "record cut short"))?;
            let len = le_u32(&head) as usize;
            if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&len) || le_u64(&head[8..]) != cursor.gseq
            {
                return Err(corrupt(&cursor, "record header out of order"));
            }
            cursor
                .reader
                .seek_relative(len as i64 - 8)
                .map_err(io_at(&cursor.path))?;
            cursor.gseq += 1;
        }
        let (crc, _) =
            read_raw(&mut cursor.reader, &mut self.scratch).map_err(|r| corrupt(&cursor, r))?;
        let body = check_body(&self.scratch, crc, gseq).map_err(|r| corrupt(&cursor, r))?;
        let topic = String::from_utf8(body.topic.to_vec())
            .map_err(|_| corrupt(&cursor, "topic is not UTF-8"))?;
        let record = Record {
            gseq,
            enqueued_ms: body.enqueued_ms,
            topic,
            payload: body.payload.to_vec(),
        };
        cursor.gseq += 1;
        self.cursor = Some(cursor);
        Ok(record)
    }

    /// Record the server's confirmation of inclusive gseq ranges; returns how many queued
    /// records it confirmed for the first time. Fully confirmed segments are deleted. The
    /// confirmation becomes durable at the next sync (losing it only causes a resend).
    pub fn ack(&mut self, ranges: &[(u64, u64)]) -> Result<u64, QueueError> {
        let lowest = self
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_gseq);
        let mut newly = 0;
        let mut touched = Vec::new();
        for &(lo, hi) in ranges {
            // Only durable records were ever forwarded; anything else is not ours to confirm.
            let (lo, hi) = (lo.max(lowest), hi.min(self.durable_next.saturating_sub(1)));
            if lo > hi {
                continue;
            }
            let new_parts = self.acked.insert(lo, hi);
            if new_parts.is_empty() {
                continue;
            }
            for (a, b) in new_parts {
                for s in self.segments.range(..=b).rev() {
                    let s = s.1;
                    if s.next <= a {
                        break;
                    }
                    if s.next > s.first {
                        let (x, y) = (a.max(s.first), b.min(s.next - 1));
                        if x <= y {
                            newly += y - x + 1;
                            touched.push(s.first);
                        }
                    }
                }
            }
            self.acks
                .write_all(&ack_record(lo, hi))
                .map_err(io_at(&self.acks_path))?;
            self.ack_bytes += ACK_RECORD_LEN as u64;
            self.ack_records += 1;
        }
        if !touched.is_empty() {
            self.oldest_cache = None;
            touched.sort_unstable();
            touched.dedup();
            self.collect(&touched)?;
        }
        if self.ack_records > 256.max(4 * self.acked.len() as u64) {
            self.compact_acks()?;
        }
        Ok(newly)
    }

    /// Delete the fully confirmed sealed segments among `firsts`.
    fn collect(&mut self, firsts: &[u64]) -> Result<(), QueueError> {
        let active = self.active_segment().first;
        for first in firsts {
            if *first == active {
                continue;
            }
            let Some(s) = self.segments.get(first) else {
                continue;
            };
            if self.unconfirmed_in(s) == 0 {
                let s = s.clone();
                fs::remove_file(&s.path).map_err(io_at(&s.path))?;
                self.segments.remove(first);
                self.forget_segment(&s);
            }
        }
        Ok(())
    }

    fn compact_acks(&mut self) -> Result<(), QueueError> {
        self.acks.flush().map_err(io_at(&self.acks_path))?;
        let file = write_acks(&self.dir, &self.acks_path, &self.acked)?;
        self.acks = BufWriter::with_capacity(IO_BUFFER, file);
        self.ack_records = self.acked.len() as u64;
        self.ack_bytes = ACKS_HEADER_LEN + self.ack_records * ACK_RECORD_LEN as u64;
        self.acks_durable_bytes = self.ack_bytes;
        Ok(())
    }

    /// The lowest gseq still waiting for confirmation, if any.
    pub fn oldest_unconfirmed(&self) -> Option<u64> {
        for s in self.segments.values() {
            let mut g = s.first;
            while g < s.next {
                match self.acked.covering(g) {
                    Some((_, hi)) => g = hi + 1,
                    None => return Some(g),
                }
            }
        }
        None
    }

    /// When the oldest durable unconfirmed record was queued, epoch ms.
    pub fn oldest_enqueued_ms(&mut self) -> Result<Option<u64>, QueueError> {
        let Some(g) = self.oldest_unconfirmed().filter(|g| *g < self.durable_next) else {
            return Ok(None);
        };
        if let Some((cached, ms)) = self.oldest_cache
            && cached == g
        {
            return Ok(Some(ms));
        }
        // Read it without disturbing the forwarding cursor.
        let saved = self.cursor.take();
        let first = self.segments.range(..=g).next_back().map_or(g, |(f, _)| *f);
        let read = self.read_one(first, g);
        self.cursor = saved;
        let ms = read?.enqueued_ms;
        self.oldest_cache = Some((g, ms));
        Ok(Some(ms))
    }

    /// Records waiting for confirmation (durable or not).
    pub fn depth(&self) -> u64 {
        self.segments.values().map(|s| self.unconfirmed_in(s)).sum()
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.depth(),
            disk_bytes: self.disk_bytes(),
            oldest_gseq: self.oldest_unconfirmed(),
            next_gseq: self.next_gseq,
            dropped_full: self.dropped_full,
        }
    }
}

#[cfg(test)]
mod tests;
