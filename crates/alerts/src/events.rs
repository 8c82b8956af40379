//! Live alert events for the dashboard. The engine calls an [`AlertEvents`] right after each
//! change is committed, whatever the hour: quiet hours hold e-mail and webhooks, never these.
//!
//! The server implements the trait on its event bus (`alert_fired` / `alert_cleared` WebSocket
//! messages). Implementations must not block: the engine calls them inline.

use std::fmt::Debug;

use scalesense_domain::alert::{AlertKind, Severity};
use scalesense_store::{AccountId, LocationId};
use serde::Serialize;

/// One alert as the dashboard sees it after a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    #[serde(skip)]
    pub account_id: AccountId,
    pub location_id: LocationId,
    /// `{location}/{kind}/{entity}`: stable for the alert's whole life.
    pub id: String,
    pub kind: AlertKind,
    /// The tap id (low keg) or device id (the other kinds).
    pub entity: String,
    pub severity: Severity,
    /// `active`, `escalated`, `acknowledged` or `resolved`.
    pub state: &'static str,
    pub fired_at: i64,
    /// When this change happened.
    pub at: i64,
    /// The alert's facts ([`crate::AlertContext`] as JSON).
    pub context: serde_json::Value,
}

/// Where live alert events go. `alert_fired` is called when an alert fires and again when it
/// escalates (the same `id`, now critical: the dashboard replaces its copy); `alert_cleared`
/// when it resolves.
pub trait AlertEvents: Send + Sync + Debug {
    fn alert_fired(&self, alert: &AlertEvent);
    fn alert_cleared(&self, alert: &AlertEvent);
}
