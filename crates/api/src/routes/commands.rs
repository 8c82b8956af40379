//! Commands to a tap's scale: `POST /taps/{id}/command` records the command (pending, expiring)
//! and hands it to the [`CommandSink`](crate::state::CommandSink); `GET /commands/{id}` reports
//! where it is.
//!
//! The role a command needs depends on which command it is, so this is the one handler that
//! authorises after parsing its body, through [`command_action`] and [`Caller::authorize`].
//! Parameters are checked by the contract crate's own rules, so the API can never record a
//! command the scale would refuse as malformed.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use scalesense_proto::{CONTRACT_VERSION, CommandId, CommandName, CommandParams};
use scalesense_store::NewCommand;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Authorized, Caller, command_action, perm, secrets};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, Validate, path_id};
use crate::routes::{WithLocation, audit, created_at, visible_tap};
use crate::state::ApiState;
use crate::views::CommandView;

/// The command names of the MQTT contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandNameBody {
    TareEmpty,
    TareFull,
    Calibrate,
    Identify,
    MaintenanceEnter,
    MaintenanceExit,
    SetConfig,
    Reboot,
}

impl From<CommandNameBody> for CommandName {
    fn from(c: CommandNameBody) -> Self {
        match c {
            CommandNameBody::TareEmpty => Self::TareEmpty,
            CommandNameBody::TareFull => Self::TareFull,
            CommandNameBody::Calibrate => Self::Calibrate,
            CommandNameBody::Identify => Self::Identify,
            CommandNameBody::MaintenanceEnter => Self::MaintenanceEnter,
            CommandNameBody::MaintenanceExit => Self::MaintenanceExit,
            CommandNameBody::SetConfig => Self::SetConfig,
            CommandNameBody::Reboot => Self::Reboot,
        }
    }
}

/// `{ command, ...params }` (seed 001). Who may send which: tare, maintenance and identify —
/// staff and up; calibrate, set_config, reboot — managers and up.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    pub command: CommandNameBody,
    /// `calibrate`: the reference weight on the platform, pounds (the wire unit).
    pub known_weight_lbs: Option<f64>,
    /// `identify`: seconds to flash (≤ 600); `maintenance_enter`: leave maintenance after.
    pub duration_s: Option<u32>,
    /// `set_config`: seconds between readings.
    pub interval_s: Option<u32>,
    /// `set_config`: temperature compensation per °C.
    pub temp_coeff: Option<f64>,
}

impl CommandRequest {
    fn params(&self) -> CommandParams {
        CommandParams {
            known_weight_lbs: self.known_weight_lbs,
            duration_s: self.duration_s,
            interval_s: self.interval_s,
            temp_coeff: self.temp_coeff,
        }
    }
}

impl Validate for CommandRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.params()
            .validate_for(self.command.into())
            .map_err(|e| {
                let field = e
                    .field()
                    .map_or("body", |f| f.strip_prefix("params.").unwrap_or(f));
                vec![FieldError::new(field, e.to_string())]
            })
    }
}

/// Sends a command to the tap's scale. Answers `202` with the command (state `pending`); poll
/// `GET /commands/{id}` for the scale's answer.
#[utoipa::path(post, path = "/api/v1/taps/{id}/command", tag = "commands",
    params(("id" = String, Path, description = "Tap id (`#` as `%23`)")),
    request_body = CommandRequest,
    responses(
        (status = 202, body = CommandView, headers(("Location" = String, description = "The command's URL"))),
        (status = 409, description = "No scale on this tap", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn issue(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CommandRequest>,
) -> Result<WithLocation<CommandView>, ApiError> {
    let name: CommandName = body.command.into();
    caller.authorize(command_action(name))?;
    let tap = visible_tap(&state, &caller, &id).await?;
    let device = tap
        .device_id
        .clone()
        .ok_or_else(|| ApiError::Conflict(format!("no scale is on tap {}", tap.id)))?;
    let now = state.now();
    let ttl = i64::try_from(state.config.command_ttl.as_millis()).unwrap_or(i64::MAX);
    let command_id = CommandId::try_from(format!("cmd-{}", secrets::random_suffix(16)).as_str())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let params = body.params();
    let stored = state
        .store
        .create_command(
            &caller.account,
            &NewCommand {
                id: command_id.clone(),
                device_id: device.clone(),
                name: name.as_str().to_owned(),
                params: serde_json::to_value(&params)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                issued_by: caller.actor(),
                issued_at: now,
                expires_at: now.saturating_add(ttl),
            },
        )
        .await?;
    let wire = scalesense_proto::Command {
        v: CONTRACT_VERSION,
        id: command_id.clone(),
        params,
        issued_at: u64::try_from(stored.issued_at).unwrap_or(0),
        expires_at: u64::try_from(stored.expires_at).unwrap_or(0),
    };
    if let Err(e) = state.commands.publish_command(&device, name, &wire).await {
        // Recorded as pending: the server republishes open commands when it can.
        tracing::warn!(device = %device, command = %command_id, error = %e, "command not published yet");
    }
    let view = CommandView::from(&stored);
    audit::<(), _>(
        &state,
        &caller,
        "command.issue",
        &format!("tap:{}", tap.id),
        None,
        Some(&view),
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        created_at(&format!("/api/v1/commands/{command_id}")),
        Json(view),
    ))
}

/// A command and where it is (pending, delivered, succeeded, failed, expired).
#[utoipa::path(get, path = "/api/v1/commands/{id}", tag = "commands",
    params(("id" = String, Path, description = "Command id")),
    responses((status = 200, body = CommandView)),
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ViewTaps>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CommandView>, ApiError> {
    let id: CommandId = path_id(&id, "command")?;
    let command = state.store.command(&caller.account, &id).await?;
    let device = state
        .store
        .device(&caller.account, &command.device_id)
        .await?;
    caller.check_optional_location(device.location_id.as_ref(), format!("command {id}"))?;
    Ok(Json(CommandView::from(&command)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_json;

    #[test]
    fn contract_rules_check_params() {
        let ok: CommandRequest =
            parse_json(br#"{"command":"calibrate","known_weight_lbs":20}"#).unwrap();
        assert!(ok.validate().is_ok());
        let missing: CommandRequest = parse_json(br#"{"command":"calibrate"}"#).unwrap();
        assert_eq!(missing.validate().unwrap_err()[0].field, "known_weight_lbs");
        let long: CommandRequest =
            parse_json(br#"{"command":"identify","duration_s":100000}"#).unwrap();
        assert_eq!(long.validate().unwrap_err()[0].field, "duration_s");
        assert!(parse_json::<CommandRequest>(br#"{"command":"format_disk"}"#).is_err());
    }
}
