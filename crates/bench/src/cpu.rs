//! CPU time of processes and threads, read from `/proc` (Linux).
//!
//! The bench charges CPU to whoever does the ingest: the bench process itself for our server
//! (embedded broker and pipeline run in it), a child process for the Python baseline, and the
//! broker's process for Mosquitto when the bench started it. Publishers run in the bench
//! process on their own runtime, whose threads carry a name prefix; their time is read per
//! thread and subtracted from the process's.
//!
//! Times come in clock ticks of `USER_HZ`, which Linux fixes at 100 per second for `/proc`
//! on every architecture it runs on; a measured window of seconds makes the 10 ms grain
//! negligible. What this module must never do: guess a number when `/proc` cannot be read (it
//! answers `None`, and the report says "n/a").

use std::path::Path;
use std::time::Duration;

/// `/proc` clock ticks per second (`USER_HZ`).
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time from a `/proc/…/stat` file's text.
pub fn parse_stat(text: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14 and stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks(utime + stime))
}

fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 1000 / TICKS_PER_SECOND)
}

fn read_stat(path: &Path) -> Option<Duration> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// CPU time used so far by this process (all its threads, living and ended).
pub fn this_process() -> Option<Duration> {
    read_stat(Path::new("/proc/self/stat"))
}

/// CPU time used so far by process `pid`.
pub fn process(pid: u32) -> Option<Duration> {
    read_stat(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// CPU time used so far by this process's living threads whose name starts with `prefix`.
pub fn threads_named(prefix: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            // A thread that ended between the listing and the read has nothing left to count.
            total += read_stat(&entry.path().join("stat")).unwrap_or_default();
        }
    }
    Some(total)
}

/// The pid of a running process named `name` (its `comm`), if there is exactly one.
pub fn find_process(name: &str) -> Option<u32> {
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            if found.is_some() {
                return None;
            }
            found = Some(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_parsed_even_with_odd_names() {
        let line = "4242 (tokio (runtime) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(line), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_burns_measurable_time() {
        let before = this_process().unwrap_or_default();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(this_process().unwrap_or_default() > before);
    }
}
