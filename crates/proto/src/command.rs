//! The closed set of commands a scale understands. The name travels in the topic
//! (`keg/command/{device_id}/{name}`), not in the payload, so the set lives here where both the
//! topic parser and the payload validation can see it. Adding a command is a contract change.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// A command name, written in snake_case on the wire (`tare_empty`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandName {
    /// Record the current weight as the empty keg (the new keg's tare).
    TareEmpty,
    /// Record the current weight as the full keg.
    TareFull,
    /// Derive the scale factor from a known weight on the platform.
    Calibrate,
    /// Flash the LED and show the id on the display, so staff find the scale.
    Identify,
    /// Pause normal readings (keg change, cleaning); the scale says so in its status.
    MaintenanceEnter,
    /// Leave maintenance and resume readings.
    MaintenanceExit,
    /// Change the reading interval or temperature coefficient.
    SetConfig,
    /// Restart the scale.
    Reboot,
}

/// A topic level or string that names no known command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown command (expected one of tare_empty, tare_full, calibrate, identify, maintenance_enter, maintenance_exit, set_config, reboot)"
)]
pub struct UnknownCommand;

impl CommandName {
    /// Every command, in contract order.
    pub const ALL: [Self; 8] = [
        Self::TareEmpty,
        Self::TareFull,
        Self::Calibrate,
        Self::Identify,
        Self::MaintenanceEnter,
        Self::MaintenanceExit,
        Self::SetConfig,
        Self::Reboot,
    ];

    /// The wire name, as used in the topic.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TareEmpty => "tare_empty",
            Self::TareFull => "tare_full",
            Self::Calibrate => "calibrate",
            Self::Identify => "identify",
            Self::MaintenanceEnter => "maintenance_enter",
            Self::MaintenanceExit => "maintenance_exit",
            Self::SetConfig => "set_config",
            Self::Reboot => "reboot",
        }
    }
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CommandName {
    type Err = UnknownCommand;

    fn from_str(s: &str) -> Result<Self, UnknownCommand> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(UnknownCommand)
    }
}

impl TryFrom<&str> for CommandName {
    type Error = UnknownCommand;

    fn try_from(s: &str) -> Result<Self, UnknownCommand> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for c in CommandName::ALL {
            assert_eq!(c.as_str().parse::<CommandName>(), Ok(c));
            let mut buf = [0u8; 32];
            let n = serde_json_core::to_slice(&c, &mut buf).unwrap();
            assert_eq!(&buf[1..n - 1], c.as_str().as_bytes());
            let (back, _) = serde_json_core::from_slice::<CommandName>(&buf[..n]).unwrap();
            assert_eq!(back, c);
        }
        assert_eq!(
            CommandName::try_from("maintenance_enter"),
            Ok(CommandName::MaintenanceEnter)
        );
    }

    #[test]
    fn unknown_and_wrongly_cased_names_are_rejected() {
        for bad in [
            "",
            "Tare_Empty",
            "tare-empty",
            "tareEmpty",
            "reboot ",
            "format",
        ] {
            assert_eq!(bad.parse::<CommandName>(), Err(UnknownCommand), "{bad:?}");
        }
    }
}
