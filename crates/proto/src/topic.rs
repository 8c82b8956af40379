//! MQTT topic names and subscription filters (BRIEF §3). The seeds' topic layout is kept as is,
//! so a broker ACL or an IoT Core rule written for the seeds still matches.
//!
//! Topics are parsed into a typed [`Topic`] at the edge; nothing else in the system splits topic
//! strings. This module must never accept a wildcard as a concrete topic: a wildcard is only ever
//! a subscription filter, built by the constants and functions below.

use core::fmt::{self, Write};

use heapless::String;

use crate::command::{CommandName, UnknownCommand};
use crate::ids::{DeviceId, GatewayId, IdError};

/// Capacity of a topic or filter string. The longest topic is
/// `keg/command/{32-byte id}/maintenance_enter` (62 bytes).
pub const TOPIC_CAPACITY: usize = 80;

/// A topic name or a subscription filter, stored without allocation.
pub type TopicString = String<TOPIC_CAPACITY>;

/// Capacity of a shared-subscription filter (`$share/{group}/{filter}`).
pub const SHARED_CAPACITY: usize = 128;

/// Longest shared-subscription group name accepted by [`shared`].
pub const MAX_GROUP_LEN: usize = 32;

/// Every reading from every scale.
pub const READINGS_FILTER: &str = "keg/readings/+";
/// Every scale's status (retained, including last wills).
pub const STATUS_FILTER: &str = "keg/status/+";
/// Every scale's command responses.
pub const RESPONSE_FILTER: &str = "keg/response/+";
/// Every command to every scale (a gateway relaying downlink).
pub const COMMAND_FILTER: &str = "keg/command/+/+";
/// Every OTA notice to every scale (a gateway relaying downlink).
pub const OTA_FILTER: &str = "keg/ota/+";
/// Every gateway's health (retained).
pub const GATEWAY_STATUS_FILTER: &str = "gw/status/+";
/// Every gateway's commit confirmations (diagnostics; a gateway subscribes to its own topic).
pub const GATEWAY_ACK_FILTER: &str = "gw/ack/+";

/// Which way a message flows relative to the scale or gateway that the topic names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a scale or gateway towards the server.
    Uplink,
    /// From the server towards a scale or gateway.
    Downlink,
}

/// A concrete topic, as published. Parsing and formatting are exact inverses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `keg/readings/{device_id}`: scale → server, QoS 1, not retained.
    Reading(DeviceId),
    /// `keg/status/{device_id}`: scale → server, QoS 1, retained (the last will too).
    Status(DeviceId),
    /// `keg/command/{device_id}/{command}`: server → scale, QoS 1, retained until answered.
    Command {
        device: DeviceId,
        command: CommandName,
    },
    /// `keg/response/{device_id}`: scale → server, QoS 1, not retained.
    Response(DeviceId),
    /// `keg/ota/{device_id}`: server → scale, QoS 1, not retained.
    Ota(DeviceId),
    /// `gw/status/{gateway_id}`: gateway → server, QoS 1, retained.
    GatewayStatus(GatewayId),
    /// `gw/ack/{gateway_id}`: server → gateway, QoS 1, not retained.
    GatewayAck(GatewayId),
}

/// Why a string is not a topic of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The first levels name no topic of the contract (e.g. `keg/unknown/...`, `$SYS/...`).
    #[error("unknown topic prefix")]
    UnknownPrefix,
    /// The prefix is known but the number of levels is wrong.
    #[error("expected {expected} topic levels, found {found}")]
    WrongLevels { expected: usize, found: usize },
    /// The id level is not a valid device or gateway id.
    #[error("bad id in topic: {0}")]
    BadId(#[from] IdError),
    /// The command level names no known command.
    #[error("{0}")]
    UnknownCommand(#[from] UnknownCommand),
    /// A concrete topic contains `+` or `#`.
    #[error("a topic name must not contain the wildcards + or #")]
    Wildcard,
    /// A shared-subscription group that is empty, too long, or contains `/`, `+` or `#`.
    #[error("bad shared-subscription group: 1–32 characters, no '/', '+' or '#'")]
    BadGroup,
    /// A filter too long to fit the fixed-size buffer.
    #[error("filter is too long")]
    TooLong,
}

impl Topic {
    /// Parse a published topic name. Rejects wildcards, unknown prefixes, bad ids and commands.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if topic.contains(['+', '#']) {
            return Err(TopicError::Wildcard);
        }
        let found = topic.split('/').count();
        let mut levels = topic.split('/');
        let (Some(root), Some(kind)) = (levels.next(), levels.next()) else {
            return Err(TopicError::UnknownPrefix);
        };
        let expected = match (root, kind) {
            ("keg", "command") => 4,
            ("keg", "readings" | "status" | "response" | "ota") | ("gw", "status" | "ack") => 3,
            _ => return Err(TopicError::UnknownPrefix),
        };
        if found != expected {
            return Err(TopicError::WrongLevels { expected, found });
        }
        let id = levels.next().unwrap_or_default();
        let device = || DeviceId::try_from(id);
        let gateway = || GatewayId::try_from(id);
        Ok(match (root, kind) {
            ("keg", "readings") => Self::Reading(device()?),
            ("keg", "status") => Self::Status(device()?),
            ("keg", "response") => Self::Response(device()?),
            ("keg", "ota") => Self::Ota(device()?),
            ("keg", _) => {
                let device = device()?;
                let command = levels.next().unwrap_or_default().parse()?;
                Self::Command { device, command }
            }
            ("gw", "status") => Self::GatewayStatus(gateway()?),
            _ => Self::GatewayAck(gateway()?),
        })
    }

    /// The topic name as a fixed-capacity string (never truncated: see [`TOPIC_CAPACITY`]).
    pub fn write_to(&self) -> TopicString {
        let mut out = TopicString::new();
        // Cannot fail: ids are at most 32 bytes, so the longest topic is 62 bytes.
        write!(out, "{self}").unwrap_or_else(|_| unreachable!("topic longer than capacity"));
        out
    }

    /// MQTT QoS for publishing on this topic. Every topic of the contract is QoS 1: at least
    /// once, with idempotent receivers (readings on `(device, boot, seq)`, commands on `id`).
    pub fn qos(&self) -> u8 {
        1
    }

    /// Whether messages on this topic are published retained: status (so a late subscriber
    /// sees whether a scale is up), commands (so a sleeping scale receives them on wake) and
    /// gateway status.
    pub fn retained(&self) -> bool {
        matches!(
            self,
            Self::Status(_) | Self::Command { .. } | Self::GatewayStatus(_)
        )
    }

    /// Which way the message flows.
    pub fn direction(&self) -> Direction {
        match self {
            Self::Reading(_) | Self::Status(_) | Self::Response(_) | Self::GatewayStatus(_) => {
                Direction::Uplink
            }
            Self::Command { .. } | Self::Ota(_) | Self::GatewayAck(_) => Direction::Downlink,
        }
    }

    /// The scale this topic is about, if it is a scale topic.
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Self::Reading(d)
            | Self::Status(d)
            | Self::Response(d)
            | Self::Ota(d)
            | Self::Command { device: d, .. } => Some(d),
            Self::GatewayStatus(_) | Self::GatewayAck(_) => None,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reading(d) => write!(f, "keg/readings/{d}"),
            Self::Status(d) => write!(f, "keg/status/{d}"),
            Self::Command { device, command } => write!(f, "keg/command/{device}/{command}"),
            Self::Response(d) => write!(f, "keg/response/{d}"),
            Self::Ota(d) => write!(f, "keg/ota/{d}"),
            Self::GatewayStatus(g) => write!(f, "gw/status/{g}"),
            Self::GatewayAck(g) => write!(f, "gw/ack/{g}"),
        }
    }
}

impl core::str::FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::parse(s)
    }
}

/// The filter a scale subscribes to for its commands: `keg/command/{device_id}/+`.
pub fn command_filter(device: &DeviceId) -> TopicString {
    let mut out = TopicString::new();
    // Cannot fail: 12 + 32 + 2 bytes at most.
    write!(out, "keg/command/{device}/+").unwrap_or_else(|_| unreachable!("filter too long"));
    out
}

/// A shared-subscription filter `$share/{group}/{filter}`, so replicas in `group` split the
/// messages matching `filter` between them (MQTT 5; Mosquitto, EMQX and VerneMQ support it).
pub fn shared(group: &str, filter: &str) -> Result<String<SHARED_CAPACITY>, TopicError> {
    if group.is_empty() || group.len() > MAX_GROUP_LEN || group.contains(['/', '+', '#']) {
        return Err(TopicError::BadGroup);
    }
    let mut out = String::new();
    write!(out, "$share/{group}/{filter}").map_err(|_| TopicError::TooLong)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::try_from(s).unwrap()
    }

    fn gw(s: &str) -> GatewayId {
        GatewayId::try_from(s).unwrap()
    }

    #[test]
    fn seed_topics_parse_and_print_back() {
        let cases = [
            ("keg/readings/SCALE-0042", Topic::Reading(dev("SCALE-0042"))),
            ("keg/status/SCALE-0042", Topic::Status(dev("SCALE-0042"))),
            (
                "keg/command/SCALE-0042/tare_empty",
                Topic::Command {
                    device: dev("SCALE-0042"),
                    command: CommandName::TareEmpty,
                },
            ),
            (
                "keg/response/SCALE-0042",
                Topic::Response(dev("SCALE-0042")),
            ),
            ("keg/ota/SCALE-0042", Topic::Ota(dev("SCALE-0042"))),
            (
                "gw/status/gw-loc-001",
                Topic::GatewayStatus(gw("gw-loc-001")),
            ),
            ("gw/ack/gw-loc-001", Topic::GatewayAck(gw("gw-loc-001"))),
        ];
        for (text, topic) in cases {
            assert_eq!(Topic::parse(text), Ok(topic.clone()), "{text}");
            assert_eq!(topic.write_to().as_str(), text);
        }
    }

    #[test]
    fn qos_retain_and_direction_follow_the_contract_table() {
        let d = dev("S1");
        let g = gw("G1");
        let table = [
            (Topic::Reading(d.clone()), false, Direction::Uplink),
            (Topic::Status(d.clone()), true, Direction::Uplink),
            (
                Topic::Command {
                    device: d.clone(),
                    command: CommandName::Reboot,
                },
                true,
                Direction::Downlink,
            ),
            (Topic::Response(d.clone()), false, Direction::Uplink),
            (Topic::Ota(d.clone()), false, Direction::Downlink),
            (Topic::GatewayStatus(g.clone()), true, Direction::Uplink),
            (Topic::GatewayAck(g), false, Direction::Downlink),
        ];
        for (topic, retained, direction) in table {
            assert_eq!(topic.qos(), 1, "{topic}");
            assert_eq!(topic.retained(), retained, "{topic}");
            assert_eq!(topic.direction(), direction, "{topic}");
        }
        assert_eq!(Topic::Ota(d.clone()).device(), Some(&d));
        assert_eq!(Topic::GatewayAck(gw("G1")).device(), None);
    }

    #[test]
    fn bad_topics_say_why() {
        assert_eq!(Topic::parse("keg/readings/+"), Err(TopicError::Wildcard));
        assert_eq!(Topic::parse("keg/#"), Err(TopicError::Wildcard));
        assert_eq!(
            Topic::parse("keg/levels/S1"),
            Err(TopicError::UnknownPrefix)
        );
        assert_eq!(
            Topic::parse("$SYS/broker/uptime"),
            Err(TopicError::UnknownPrefix)
        );
        assert_eq!(Topic::parse(""), Err(TopicError::UnknownPrefix));
        assert_eq!(Topic::parse("keg"), Err(TopicError::UnknownPrefix));
        assert_eq!(
            Topic::parse("keg/readings/S1/extra"),
            Err(TopicError::WrongLevels {
                expected: 3,
                found: 4
            })
        );
        assert_eq!(
            Topic::parse("keg/command/S1"),
            Err(TopicError::WrongLevels {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            Topic::parse("keg/readings/"),
            Err(TopicError::BadId(IdError::Empty { kind: "device id" }))
        );
        assert!(matches!(
            Topic::parse("keg/readings/bad id"),
            Err(TopicError::BadId(IdError::BadChar { found: ' ', .. }))
        ));
        assert_eq!(
            Topic::parse("keg/command/S1/format_disk"),
            Err(TopicError::UnknownCommand(UnknownCommand))
        );
        assert_eq!(
            Topic::parse("keg/readings/SCALE-0042/"),
            Err(TopicError::WrongLevels {
                expected: 3,
                found: 4
            })
        );
    }

    #[test]
    fn filters_and_shared_subscriptions() {
        assert_eq!(
            command_filter(&dev("SCALE-0042")).as_str(),
            "keg/command/SCALE-0042/+"
        );
        assert_eq!(
            shared("scalesense", READINGS_FILTER).unwrap().as_str(),
            "$share/scalesense/keg/readings/+"
        );
        for bad in ["", "a/b", "a+", "#", "g234567890123456789012345678901234"] {
            assert_eq!(
                shared(bad, READINGS_FILTER),
                Err(TopicError::BadGroup),
                "{bad:?}"
            );
        }
        let long = [b'a'; 120];
        let long = core::str::from_utf8(&long).unwrap();
        assert_eq!(shared("g", long), Err(TopicError::TooLong));
    }

    #[test]
    fn longest_topic_fits() {
        let id = dev("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345");
        let topic = Topic::Command {
            device: id,
            command: CommandName::MaintenanceEnter,
        };
        assert_eq!(topic.write_to().len(), 62);
        assert_eq!(Topic::parse(&topic.write_to()), Ok(topic));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,90}") {
            if let Ok(topic) = Topic::parse(&s) {
                let written = topic.write_to();
                proptest::prop_assert_eq!(written.as_str(), s.as_str());
            }
        }

        #[test]
        fn every_device_topic_round_trips(id in "[A-Za-z0-9_-]{1,32}", which in 0usize..13) {
            let d = DeviceId::try_from(id.as_str()).unwrap();
            let topic = match which {
                0 => Topic::Reading(d),
                1 => Topic::Status(d),
                2 => Topic::Response(d),
                3 => Topic::Ota(d),
                4 => Topic::GatewayStatus(GatewayId::try_from(id.as_str()).unwrap()),
                n => Topic::Command { device: d, command: CommandName::ALL[n - 5] },
            };
            proptest::prop_assert_eq!(Topic::parse(&topic.write_to()), Ok(topic));
        }
    }
}
