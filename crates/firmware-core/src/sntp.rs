//! SNTP (RFC 4330) client packets, so the scale knows the wall-clock time.
//!
//! The time matters twice: readings carry `ts`, and a command may only run while
//! `now ≤ expires_at`, which the scale cannot judge without a clock. The board sends
//! [`request`] over UDP port 123 and hands the answer to [`parse_response`]; this module only
//! builds and checks bytes, and never opens a socket or reads a clock.

/// NTP packets are 48 bytes without extensions.
pub const PACKET_LEN: usize = 48;
/// The NTP port.
pub const PORT: u16 = 123;
/// Seconds from the NTP era (1900) to the Unix epoch (1970).
const NTP_TO_UNIX_S: u64 = 2_208_988_800;

/// Why a server's answer was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SntpError {
    #[error("answer shorter than {PACKET_LEN} bytes")]
    Short,
    #[error("not a server answer (mode {0})")]
    NotServer(u8),
    #[error("server is unsynchronised or sent a kiss-of-death (stratum {0})")]
    Unsynchronised(u8),
    #[error("answer does not match our request")]
    Mismatch,
    #[error("server time is before 2020")]
    Implausible,
}

/// A client request (version 4, mode 3). `nonce` goes in the transmit timestamp; the server
/// echoes it as the originate timestamp, which ties the answer to this request.
pub fn request(nonce: u64) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = (4 << 3) | 3;
    packet[40..48].copy_from_slice(&nonce.to_be_bytes());
    packet
}

/// The server's transmit time in Unix epoch milliseconds.
pub fn parse_response(packet: &[u8], nonce: u64) -> Result<u64, SntpError> {
    let packet: &[u8; PACKET_LEN] = packet
        .get(..PACKET_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or(SntpError::Short)?;
    let mode = packet[0] & 0b111;
    if mode != 4 {
        return Err(SntpError::NotServer(mode));
    }
    let leap = packet[0] >> 6;
    let stratum = packet[1];
    if leap == 3 || stratum == 0 || stratum > 15 {
        return Err(SntpError::Unsynchronised(stratum));
    }
    let originate = u64::from_be_bytes(word8(packet, 24));
    if originate != nonce {
        return Err(SntpError::Mismatch);
    }
    let seconds = u64::from(u32::from_be_bytes(word4(packet, 40)));
    let fraction = u64::from(u32::from_be_bytes(word4(packet, 44)));
    // Era 0 ends in 2036; timestamps with the top bit clear are taken as era 1 (RFC 4330 §3).
    let seconds = if seconds & 0x8000_0000 == 0 {
        seconds + (1 << 32)
    } else {
        seconds
    };
    let unix_s = seconds
        .checked_sub(NTP_TO_UNIX_S)
        .ok_or(SntpError::Implausible)?;
    let ms = unix_s * 1_000 + ((fraction * 1_000) >> 32);
    if ms < scalesense_proto::payload::MIN_TIMESTAMP_MS {
        return Err(SntpError::Implausible);
    }
    Ok(ms)
}

/// The epoch time at the moment the answer arrived: the server's transmit time plus half the
/// round trip (`sent_ms`, `received_ms` are the caller's monotonic clock).
pub fn epoch_at_receive(server_ms: u64, sent_ms: u64, received_ms: u64) -> u64 {
    server_ms + received_ms.saturating_sub(sent_ms) / 2
}

fn word4(p: &[u8; PACKET_LEN], at: usize) -> [u8; 4] {
    [p[at], p[at + 1], p[at + 2], p[at + 3]]
}

fn word8(p: &[u8; PACKET_LEN], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&p[at..at + 8]);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answer to `nonce` with transmit time `unix_ms`.
    fn answer(nonce: u64, unix_ms: u64) -> [u8; PACKET_LEN] {
        let mut p = [0u8; PACKET_LEN];
        p[0] = (4 << 3) | 4;
        p[1] = 2;
        p[24..32].copy_from_slice(&nonce.to_be_bytes());
        let ntp_s = unix_ms / 1_000 + NTP_TO_UNIX_S;
        let frac = ((unix_ms % 1_000) << 32) / 1_000;
        p[40..44].copy_from_slice(&(ntp_s as u32).to_be_bytes());
        p[44..48].copy_from_slice(&(frac as u32).to_be_bytes());
        p
    }

    #[test]
    fn request_is_a_v4_client_packet_carrying_the_nonce() {
        let r = request(0x0102_0304_0506_0708);
        assert_eq!(r[0], 0x23);
        assert_eq!(&r[40..48], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn parses_the_transmit_time() {
        let t = 1_773_835_200_123;
        let got = parse_response(&answer(42, t), 42).unwrap();
        // The fraction is rounded down through 2^-32 s steps: within a millisecond.
        assert!(t - got <= 1, "{got}");
        // After 2036 the seconds field wraps into era 1.
        let late = 2_110_000_000_000;
        assert!(late - parse_response(&answer(1, late), 1).unwrap() <= 1);
    }

    #[test]
    fn rejects_bad_answers() {
        let good = answer(7, 1_773_835_200_000);
        assert_eq!(parse_response(&good[..47], 7), Err(SntpError::Short));
        assert_eq!(parse_response(&good, 8), Err(SntpError::Mismatch));
        let mut kod = good;
        kod[1] = 0;
        assert_eq!(parse_response(&kod, 7), Err(SntpError::Unsynchronised(0)));
        let mut client = good;
        client[0] = 0x23;
        assert_eq!(parse_response(&client, 7), Err(SntpError::NotServer(3)));
        let old = answer(7, 1_000_000_000_000);
        assert_eq!(parse_response(&old, 7), Err(SntpError::Implausible));
    }

    #[test]
    fn adds_half_the_round_trip() {
        assert_eq!(epoch_at_receive(1_000_000, 500, 700), 1_000_100);
        assert_eq!(epoch_at_receive(1_000_000, 700, 500), 1_000_000);
    }
}
