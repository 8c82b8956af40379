//! The gateway's configuration: the `scalesense gateway` flags, each also readable from a
//! `SCALESENSE_GATEWAY_*` environment variable (the systemd unit's environment file sets them).
//!
//! Parsing is strict and happens before anything starts: a bad URL, size or id is a clear error
//! at start-up, never a surprise once the bar is running on the queue.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use scalesense_proto::GatewayId;

/// An MQTT broker address: `mqtt://HOST[:PORT]` (plain, port 1883 by default) or
/// `mqtts://HOST[:PORT]` (TLS, port 8883 by default). IPv6 hosts go in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Why a broker URL or a size was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {0:?}")]
    Scheme(String),
    #[error("missing host in {0:?}")]
    Host(String),
    #[error("bad port in {0:?}")]
    Port(String),
    #[error("expected a size such as 512MiB, 2GiB, 100MB or a number of bytes, got {0:?}")]
    Size(String),
}

impl FromStr for BrokerUrl {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (tls, rest) = if let Some(rest) = s.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = s.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(ParseError::Scheme(s.to_owned()));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| ParseError::Host(s.to_owned()))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(ParseError::Port(s.to_owned())),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(ParseError::Host(s.to_owned()));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ParseError::Port(s.to_owned()))?,
            None => default_port,
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Parse a byte size: a number with an optional unit (B, KB, MB, GB, TB in powers of 1000;
/// KiB, MiB, GiB, TiB in powers of 1024; K, M, G, T are taken as the binary units).
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    let bad = || ParseError::Size(s.to_owned());
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    num.checked_mul(mult).ok_or_else(bad)
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("expected a whole number of seconds above 0, got {s:?}"))
}

/// `scalesense gateway`: run the bar gateway.
///
/// Takes every message the bar's scales publish on the local broker, writes it to a durable
/// queue on disk (fsync'd before the local broker gets its acknowledgement), forwards it to the
/// server's broker adding `gw` and `gseq`, and deletes it only when the server confirms the
/// commit on gw/ack/{gateway_id}. Commands and OTA notices from the server are relayed to the
/// scales. Health goes to gw/status/{gateway_id} (retained) and to /healthz and /metrics.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// This gateway's id: 1–32 of A–Z a–z 0–9 - _. Names its gw/status and gw/ack topics and is
    /// added as `gw` to every message it forwards. Keep it stable: the queue's sequence numbers
    /// are per gateway id.
    #[arg(long, env = "SCALESENSE_GATEWAY_ID")]
    pub gateway_id: GatewayId,

    /// The server's MQTT broker: mqtts://HOST[:PORT] (TLS, give --ca) or mqtt://HOST[:PORT].
    #[arg(long, env = "SCALESENSE_GATEWAY_UPSTREAM")]
    pub upstream: BrokerUrl,

    /// The bar's MQTT broker that the scales publish to (Mosquitto or any MQTT 3.1.1 broker).
    #[arg(
        long,
        env = "SCALESENSE_GATEWAY_LOCAL",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    pub local: BrokerUrl,

    /// Directory of the durable queue. Must be on a real disk (not tmpfs) to survive power loss.
    #[arg(
        long,
        env = "SCALESENSE_GATEWAY_DATA_DIR",
        default_value = "/var/lib/scalesense-gateway"
    )]
    pub data_dir: PathBuf,

    /// Disk quota of the queue, e.g. 512MiB or 4GiB (at least 64KiB). When it is full the oldest
    /// queued messages are dropped, counted and reported in health.
    #[arg(long, env = "SCALESENSE_GATEWAY_MAX_DISK", default_value = "1GiB", value_parser = parse_size)]
    pub max_disk: u64,

    /// CA certificate (PEM) that signed the upstream broker's certificate; needed for mqtts://.
    #[arg(long, env = "SCALESENSE_GATEWAY_CA")]
    pub ca: Option<PathBuf>,

    /// This gateway's client certificate (PEM) for mutual TLS; needs --key.
    #[arg(long, env = "SCALESENSE_GATEWAY_CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --cert.
    #[arg(long, env = "SCALESENSE_GATEWAY_KEY", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Address of the health endpoints GET /healthz and GET /metrics (Prometheus text).
    #[arg(
        long,
        env = "SCALESENSE_GATEWAY_HEALTH_LISTEN",
        default_value = "127.0.0.1:9184"
    )]
    pub health_listen: SocketAddr,

    /// How many forwarded messages may wait for the server's confirmation at once.
    #[arg(long, env = "SCALESENSE_GATEWAY_WINDOW", default_value_t = 1000,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub window: u16,

    /// Resend unconfirmed messages when the oldest has waited this long, seconds.
    #[arg(long, env = "SCALESENSE_GATEWAY_CONFIRM_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub confirm_timeout: Duration,

    /// Seconds between health publications on gw/status/{gateway_id}.
    #[arg(long, env = "SCALESENSE_GATEWAY_HEALTH_INTERVAL", default_value = "60", value_parser = parse_seconds)]
    pub health_interval: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<BrokerUrl, ParseError> {
        s.parse()
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            url("mqtt://127.0.0.1:1883").unwrap(),
            BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        let u = url("mqtts://broker.example.com").unwrap();
        assert_eq!((u.tls, u.port), (true, 8883));
        assert_eq!(u.to_string(), "mqtts://broker.example.com:8883");
        let v6 = url("mqtt://[::1]:1884/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1884));
        assert_eq!(v6.to_string(), "mqtt://[::1]:1884");
        assert_eq!(
            url("http://x:1"),
            Err(ParseError::Scheme("http://x:1".into()))
        );
        assert!(matches!(url("mqtt://:1883"), Err(ParseError::Host(_))));
        assert!(matches!(url("mqtt://h:0"), Err(ParseError::Port(_))));
        assert!(matches!(url("mqtt://h:99999"), Err(ParseError::Port(_))));
        assert!(matches!(url("mqtt://u@h:1"), Err(ParseError::Host(_))));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("65536"), Ok(65_536));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
