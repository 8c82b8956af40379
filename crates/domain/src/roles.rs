//! Who may do what: seed 001's permission matrix as one table.
//!
//! Roles are ordered, `Staff < Manager < Admin`, and each role can do everything the roles below
//! it can, so the table names only the least role an action needs. Every check in the server goes
//! through [`permits`]; this module must never grow a second, disagreeing copy of the matrix.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's role within their account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Bar staff: view taps, tare, maintenance.
    Staff,
    /// Also: assign beers and kegs, reports, settings, calibration.
    Manager,
    /// The operator: also firmware updates, users, locations, gateways.
    Admin,
}

impl Role {
    pub const ALL: [Self; 3] = [Self::Staff, Self::Manager, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Manager => "manager",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected staff, manager or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Case-insensitive, so the seeds' group names (`Staff`, `Manager`, `Admin`) parse too.
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Everything the API guards. The first eight rows are the seed's matrix; the rest are what
/// the API adds, each decided below in [`Action::least_role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    // Seed 001 matrix.
    ViewTaps,
    Tare,
    Maintenance,
    AssignBeerKeg,
    ViewReports,
    ManageSettings,
    Calibrate,
    OtaFirmware,
    ManageUsers,
    // Added by the API.
    Identify,
    AcknowledgeAlert,
    SetConfig,
    Reboot,
    ManageBeers,
    ManageKegs,
    ManageDevices,
    RegisterDevice,
    ManageLocations,
    ManageGateways,
    ViewAuditLog,
    ManageTokens,
}

impl Action {
    pub const ALL: [Self; 21] = [
        Self::ViewTaps,
        Self::Tare,
        Self::Maintenance,
        Self::AssignBeerKeg,
        Self::ViewReports,
        Self::ManageSettings,
        Self::Calibrate,
        Self::OtaFirmware,
        Self::ManageUsers,
        Self::Identify,
        Self::AcknowledgeAlert,
        Self::SetConfig,
        Self::Reboot,
        Self::ManageBeers,
        Self::ManageKegs,
        Self::ManageDevices,
        Self::RegisterDevice,
        Self::ManageLocations,
        Self::ManageGateways,
        Self::ViewAuditLog,
        Self::ManageTokens,
    ];

    /// The permission matrix: the least role allowed to take this action.
    pub fn least_role(self) -> Role {
        match self {
            // Seed: view tap levels, tare / maintenance — everyone.
            Self::ViewTaps
            | Self::Tare
            | Self::Maintenance
            // Blinking a scale's LED to find it is harmless and done at the bar.
            | Self::Identify
            // Staff are the ones at the bar when a keg runs low: they must be able to say
            // "seen". An acknowledgement silences nothing; the alert stays until it clears.
            | Self::AcknowledgeAlert => Role::Staff,

            // Seed: assign beer/keg, reports, settings, calibrate — managers.
            Self::AssignBeerKeg
            | Self::ViewReports
            | Self::ManageSettings
            | Self::Calibrate
            // Scale configuration and reboots change how a scale measures or interrupt it.
            | Self::SetConfig
            | Self::Reboot
            // The beer and keg library feeds "assign beer/keg".
            | Self::ManageBeers
            | Self::ManageKegs
            // Editing a registered device (its tap, its name) is part of running the bar...
            | Self::ManageDevices => Role::Manager,

            // ...but registering one admits a new identity to the broker: the operator's call.
            Self::RegisterDevice
            // Seed: OTA firmware, manage users — admins; the rest of the operator's estate too.
            | Self::OtaFirmware
            | Self::ManageUsers
            | Self::ManageLocations
            | Self::ManageGateways
            | Self::ViewAuditLog
            | Self::ManageTokens => Role::Admin,
        }
    }
}

/// Whether `role` may take `action`.
pub fn permits(role: Role, action: Action) -> bool {
    role >= action.least_role()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_matrix_every_cell() {
        // Seed 001, row by row: (action, staff, manager, admin).
        let matrix = [
            (Action::ViewTaps, true, true, true),
            (Action::Tare, true, true, true),
            (Action::Maintenance, true, true, true),
            (Action::AssignBeerKeg, false, true, true),
            (Action::ViewReports, false, true, true),
            (Action::ManageSettings, false, true, true),
            (Action::Calibrate, false, true, true),
            (Action::OtaFirmware, false, false, true),
            (Action::ManageUsers, false, false, true),
        ];
        for (action, staff, manager, admin) in matrix {
            assert_eq!(permits(Role::Staff, action), staff, "staff {action:?}");
            assert_eq!(
                permits(Role::Manager, action),
                manager,
                "manager {action:?}"
            );
            assert_eq!(permits(Role::Admin, action), admin, "admin {action:?}");
        }
    }

    #[test]
    fn api_additions_every_cell() {
        let least = [
            (Action::Identify, Role::Staff),
            (Action::AcknowledgeAlert, Role::Staff),
            (Action::SetConfig, Role::Manager),
            (Action::Reboot, Role::Manager),
            (Action::ManageBeers, Role::Manager),
            (Action::ManageKegs, Role::Manager),
            (Action::ManageDevices, Role::Manager),
            (Action::RegisterDevice, Role::Admin),
            (Action::ManageLocations, Role::Admin),
            (Action::ManageGateways, Role::Admin),
            (Action::ViewAuditLog, Role::Admin),
            (Action::ManageTokens, Role::Admin),
        ];
        for (action, min) in least {
            for role in Role::ALL {
                assert_eq!(permits(role, action), role >= min, "{role} {action:?}");
            }
        }
        // Both lists together name every action once.
        assert_eq!(least.len() + 9, Action::ALL.len());
    }

    #[test]
    fn higher_roles_can_do_everything_lower_ones_can() {
        for action in Action::ALL {
            assert!(permits(Role::Admin, action), "{action:?}");
            if permits(Role::Staff, action) {
                assert!(permits(Role::Manager, action));
            }
        }
        assert!(Role::Staff < Role::Manager && Role::Manager < Role::Admin);
    }

    #[test]
    fn role_names() {
        assert_eq!("Manager".parse::<Role>(), Ok(Role::Manager));
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert_eq!("owner".parse::<Role>(), Err(UnknownRole("owner".into())));
        assert_eq!(serde_json::to_string(&Role::Staff).unwrap(), "\"staff\"");
        assert_eq!(Role::Admin.to_string(), "admin");
        assert_eq!(
            serde_json::to_string(&Action::AcknowledgeAlert).unwrap(),
            "\"acknowledge_alert\""
        );
    }
}
