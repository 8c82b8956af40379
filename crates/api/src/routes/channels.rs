//! Notification channels (issue 7): where a location's alerts go — e-mail addresses and signed
//! webhooks — with their filters, the delivery log of the outbox, and the test notification.
//!
//! Everything here is the `ManageSettings` action (managers and up): a webhook URL makes the
//! server send requests wherever it points, so staff never configure one. A channel belongs to
//! one location, or to the whole account (`location_id: null`); a caller limited to some
//! locations sees the account-wide channels but may not create, change or delete them, and a
//! channel of a location the caller may not see is `404`, like one that does not exist.
//!
//! The channel's `settings` document is the alerts crate's (`ChannelRules`: `severities`,
//! `alert_types`, `resolved`, `recipients`, `secret`); keys this module does not manage are
//! kept as found. The webhook signing secret is generated here and returned only in the answer
//! that created (or rotated) it: it must never appear in a listing, an audit line or a log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scalesense_proto::LocationId;
use scalesense_store::{
    Channel, ChannelKind, ChannelUpdate, Location, NewChannel, OutboxItem, OutboxStatus, RecordId,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::{Authorized, Caller, perm, secrets};
use crate::error::{ApiError, FieldError, PROBLEM_JSON, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Checks, Validate, path_id};
use crate::pagination::{PageParams, int_key, page_desc};
use crate::routes::{WithLocation, audit, created_at, visible_location};
use crate::state::ApiState;
use crate::views::ts;

/// Most outbox rows one delivery listing considers (pages are cut from these).
const MAX_DELIVERIES: u32 = 1_000;
/// Most e-mail recipients on one channel (the target's and `recipients` together).
const MAX_RECIPIENTS: usize = 20;
/// Longest webhook URL.
const MAX_URL: usize = 2_000;

/// How a channel delivers. (Web Push is not implemented, so it cannot be created.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKindName {
    Email,
    Webhook,
    Push,
}

impl From<ChannelKind> for ChannelKindName {
    fn from(kind: ChannelKind) -> Self {
        match kind {
            ChannelKind::Email => Self::Email,
            ChannelKind::Webhook => Self::Webhook,
            ChannelKind::Push => Self::Push,
        }
    }
}

/// An alert severity a channel may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelSeverity {
    Warning,
    Critical,
}

/// An alert kind a channel may ask for (the domain's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelAlertType {
    LowKeg,
    ScaleOffline,
    LowBattery,
    CalibrationDrift,
    StaleReading,
}

/// A notification channel. The webhook secret is never listed: `secret` is present only in
/// the answer that created or rotated it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelView {
    pub id: String,
    /// `null`: every location of the account.
    pub location_id: Option<String>,
    pub kind: ChannelKindName,
    /// E-mail: the address (a comma-separated list is accepted); webhook: the URL.
    pub target: String,
    /// E-mail: more addresses besides `target`.
    pub recipients: Vec<String>,
    /// Only these severities; empty: all.
    pub severities: Vec<ChannelSeverity>,
    /// Only these alert kinds; empty: all.
    pub alert_types: Vec<ChannelAlertType>,
    /// Whether resolutions are sent too.
    pub resolved: bool,
    pub enabled: bool,
    /// Webhook: whether a signing secret is set (deliveries fail without one).
    pub has_secret: bool,
    /// The webhook signing secret: only in the answer that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The newest delivery on this channel (listings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<DeliveryView>,
}

/// The keys of a channel's settings document this module manages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Rules {
    recipients: Vec<String>,
    severities: Vec<ChannelSeverity>,
    alert_types: Vec<ChannelAlertType>,
    resolved: Option<bool>,
    secret: Option<String>,
}

fn rules(channel: &Channel) -> Rules {
    serde_json::from_value(channel.settings.clone()).unwrap_or_else(|e| {
        tracing::warn!(channel = %channel.id, error = %e, "stored channel settings unreadable; showing the defaults");
        Rules::default()
    })
}

fn channel_view(channel: &Channel) -> ChannelView {
    let r = rules(channel);
    ChannelView {
        id: channel.id.to_string(),
        location_id: channel.location_id.as_ref().map(ToString::to_string),
        kind: channel.kind.into(),
        target: channel.target.clone(),
        recipients: r.recipients,
        severities: r.severities,
        alert_types: r.alert_types,
        resolved: r.resolved.unwrap_or(true),
        enabled: channel.enabled,
        has_secret: r.secret.is_some_and(|s| !s.is_empty()),
        secret: None,
        last_delivery: None,
    }
}

/// The channels of a location.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelView>,
}

/// Where a notification is: `failed` is a `pending` one whose last attempt failed (it will be
/// retried); `dead` gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Sent,
    Failed,
    Dead,
}

/// One notification in the outbox.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub channel_id: String,
    /// `alert`, `digest` or `test`.
    pub notification: String,
    /// Alerts: `fired`, `escalated` or `resolved`.
    pub event: Option<String>,
    /// Alerts: `low_keg`, … and the tap or device.
    pub alert_kind: Option<String>,
    pub entity: Option<String>,
    pub severity: Option<String>,
    pub state: DeliveryState,
    pub attempts: i64,
    /// Why the last attempt failed (`webhook answered HTTP 500`, an SMTP reply, …).
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Pending: when the next attempt is due.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub sent_at: Option<String>,
}

fn payload_str(item: &OutboxItem, key: &str) -> Option<String> {
    item.payload.get(key)?.as_str().map(str::to_owned)
}

fn delivery_view(item: &OutboxItem) -> DeliveryView {
    let state = match item.status {
        OutboxStatus::Sent => DeliveryState::Sent,
        OutboxStatus::Dead => DeliveryState::Dead,
        OutboxStatus::Pending if item.last_error.is_some() => DeliveryState::Failed,
        OutboxStatus::Pending => DeliveryState::Pending,
    };
    DeliveryView {
        id: item.id,
        channel_id: item.channel_id.to_string(),
        notification: payload_str(item, "type").unwrap_or_else(|| "unknown".into()),
        event: payload_str(item, "event"),
        alert_kind: payload_str(item, "kind"),
        entity: payload_str(item, "entity"),
        severity: payload_str(item, "severity"),
        state,
        attempts: item.attempts,
        last_error: item.last_error.clone(),
        created_at: ts(item.created_at),
        next_attempt_at: (item.status == OutboxStatus::Pending).then(|| ts(item.next_attempt_at)),
        sent_at: item.sent_at.map(ts),
    }
}

/// One page of a location's deliveries, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

/// The answer of a successful test notification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestResult {
    pub delivered: bool,
}

/// A new channel.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannelRequest {
    /// The location whose alerts it gets; `null` or missing: every location (only for callers
    /// who see every location).
    pub location_id: Option<String>,
    /// `email` or `webhook`.
    pub kind: ChannelKindName,
    /// E-mail: an address (or a comma-separated list); webhook: an `https://` or `http://` URL.
    #[schema(max_length = 2000)]
    pub target: String,
    /// E-mail: more addresses.
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub severities: Vec<ChannelSeverity>,
    #[serde(default)]
    pub alert_types: Vec<ChannelAlertType>,
    /// Also send resolutions (default true).
    pub resolved: Option<bool>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// A change to a channel; every field optional. Its location and kind never change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    pub enabled: Option<bool>,
    #[schema(max_length = 2000)]
    pub target: Option<String>,
    pub recipients: Option<Vec<String>>,
    pub severities: Option<Vec<ChannelSeverity>>,
    pub alert_types: Option<Vec<ChannelAlertType>>,
    pub resolved: Option<bool>,
    /// Webhook: replace the signing secret with a new one (returned in this answer only).
    pub rotate_secret: Option<bool>,
}

fn is_email(address: &str) -> bool {
    address.len() <= 254
        && address
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        && !address
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control() || matches!(ch, ',' | '<' | '>'))
}

fn check_addresses(c: &mut Checks, target: &str, recipients: &[String]) {
    let listed: Vec<&str> = target
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    c.check(
        !listed.is_empty() && listed.iter().all(|a| is_email(a)),
        "target",
        "must be an e-mail address (or a comma-separated list of them)",
    );
    for (i, r) in recipients.iter().enumerate() {
        c.check(
            is_email(r.trim()),
            &format!("recipients[{i}]"),
            "must be an e-mail address",
        );
    }
    c.check(
        listed.len() + recipients.len() <= MAX_RECIPIENTS,
        "recipients",
        format!("at most {MAX_RECIPIENTS} addresses"),
    );
}

fn check_url(c: &mut Checks, url: &str) {
    let parsed = axum::http::Uri::try_from(url).ok();
    let ok = url.len() <= MAX_URL
        && !url.chars().any(char::is_whitespace)
        && parsed.as_ref().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some_and(|a| !a.host().is_empty())
        });
    c.check(
        ok,
        "target",
        format!("must be an https:// or http:// URL of at most {MAX_URL} characters"),
    );
}

fn check_target(c: &mut Checks, kind: ChannelKindName, target: &str, recipients: &[String]) {
    match kind {
        ChannelKindName::Email => check_addresses(c, target, recipients),
        ChannelKindName::Webhook => {
            check_url(c, target);
            c.check(
                recipients.is_empty(),
                "recipients",
                "only e-mail channels have recipients",
            );
        }
        ChannelKindName::Push => {
            c.check(
                false,
                "kind",
                "push channels are not supported yet: use email or webhook",
            );
        }
    }
}

impl Validate for NewChannelRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        check_target(&mut c, self.kind, self.target.trim(), &self.recipients);
        c.finish()
    }
}

impl Validate for ChannelPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        if let Some(target) = &self.target {
            c.check(
                !target.trim().is_empty() && target.len() <= MAX_URL,
                "target",
                "must not be empty",
            );
        }
        if let Some(recipients) = &self.recipients {
            c.check(
                recipients.len() <= MAX_RECIPIENTS,
                "recipients",
                format!("at most {MAX_RECIPIENTS} addresses"),
            );
        }
        c.finish()
    }
}

fn new_secret() -> String {
    format!(
        "whsec_{}{}",
        secrets::random_suffix(16),
        secrets::random_suffix(16)
    )
}

/// Writes the managed keys into a settings document, keeping every other key.
fn with_rules(
    mut doc: Map<String, Value>,
    recipients: &[String],
    severities: &[ChannelSeverity],
    alert_types: &[ChannelAlertType],
    resolved: bool,
) -> Result<Map<String, Value>, ApiError> {
    let json = |v: serde_json::Result<Value>| v.map_err(|e| ApiError::Internal(e.to_string()));
    let recipients: Vec<String> = recipients.iter().map(|r| r.trim().to_owned()).collect();
    doc.insert("recipients".into(), json(serde_json::to_value(recipients))?);
    doc.insert("severities".into(), json(serde_json::to_value(severities))?);
    doc.insert(
        "alert_types".into(),
        json(serde_json::to_value(alert_types))?,
    );
    doc.insert("resolved".into(), Value::Bool(resolved));
    Ok(doc)
}

/// The channel `raw` names, if the caller may see it.
async fn visible_channel(
    state: &ApiState,
    caller: &Caller,
    raw: &str,
) -> Result<Channel, ApiError> {
    let id: RecordId = path_id(raw, "channel")?;
    let channel = state.store.channel(&caller.account, &id).await?;
    match &channel.location_id {
        Some(location) if !caller.sees(location) => {
            Err(ApiError::not_found(format!("channel {id}")))
        }
        _ => Ok(channel),
    }
}

/// Account-wide channels reach every location: only a caller who sees all may change them.
fn check_may_change(
    caller: &Caller,
    channel_location: Option<&LocationId>,
) -> Result<(), ApiError> {
    if channel_location.is_none() && caller.allowed_locations.is_some() {
        return Err(ApiError::field(
            "location_id",
            "an account-wide channel can only be managed by a user who sees every location",
        ));
    }
    Ok(())
}

fn for_location(channel: &Channel, location: &Location) -> bool {
    channel
        .location_id
        .as_ref()
        .is_none_or(|l| *l == location.id)
}

/// An item of an account-wide channel is about this location when its payload says so (alerts,
/// digests) or names no location (tests).
fn item_for_location(item: &OutboxItem, location: &Location) -> bool {
    payload_str(item, "location_id").is_none_or(|l| l == location.id.as_str())
}

/// A location's channels and the account-wide ones, each with its newest delivery.
#[utoipa::path(get, path = "/api/v1/locations/{id}/channels", tag = "notifications",
    params(("id" = String, Path, description = "Location id")),
    responses((status = 200, body = ChannelList)),
)]
pub async fn list(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageSettings>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ChannelList>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let channels = state.store.channels(&caller.account).await?;
    let recent = state
        .store
        .location_outbox(&caller.account, &location.id, MAX_DELIVERIES)
        .await?;
    let items = channels
        .iter()
        .filter(|c| for_location(c, &location))
        .map(|c| {
            let mut view = channel_view(c);
            view.last_delivery = recent
                .iter()
                .find(|item| item.channel_id == c.id && item_for_location(item, &location))
                .map(delivery_view);
            view
        })
        .collect();
    Ok(Json(ChannelList { items }))
}

/// Adds a channel. A webhook channel gets a signing secret, shown in this answer only.
#[utoipa::path(post, path = "/api/v1/channels", tag = "notifications",
    request_body = NewChannelRequest,
    responses((status = 201, body = ChannelView)),
)]
pub async fn create(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageSettings>,
    ApiJson(body): ApiJson<NewChannelRequest>,
) -> Result<WithLocation<ChannelView>, ApiError> {
    let location = match &body.location_id {
        Some(raw) => Some(visible_location(&state, &caller, raw).await?.id),
        None => None,
    };
    check_may_change(&caller, location.as_ref())?;
    let kind = match body.kind {
        ChannelKindName::Email => ChannelKind::Email,
        ChannelKindName::Webhook => ChannelKind::Webhook,
        ChannelKindName::Push => {
            return Err(ApiError::field(
                "kind",
                "push channels are not supported yet",
            ));
        }
    };
    let mut settings = with_rules(
        Map::new(),
        &body.recipients,
        &body.severities,
        &body.alert_types,
        body.resolved.unwrap_or(true),
    )?;
    let secret = (kind == ChannelKind::Webhook).then(new_secret);
    if let Some(secret) = &secret {
        settings.insert("secret".into(), Value::String(secret.clone()));
    }
    let id = RecordId::try_from(format!("ch-{}", secrets::random_suffix(8)).as_str())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let channel = state
        .store
        .create_channel(
            &caller.account,
            &NewChannel {
                id,
                location_id: location,
                kind,
                target: body.target.trim().to_owned(),
                settings: Value::Object(settings),
                enabled: body.enabled.unwrap_or(true),
            },
        )
        .await?;
    let view = channel_view(&channel);
    audit::<(), _>(
        &state,
        &caller,
        "channel.create",
        &format!("channel:{}", channel.id),
        None,
        Some(&view),
    )
    .await;
    let path = format!("/api/v1/channels/{}", channel.id);
    Ok((
        StatusCode::CREATED,
        created_at(&path),
        Json(ChannelView { secret, ..view }),
    ))
}

/// Changes a channel: enable or disable it, its target, recipients and filters, or rotate a
/// webhook's secret (the new one is in this answer only).
#[utoipa::path(patch, path = "/api/v1/channels/{id}", tag = "notifications",
    params(("id" = String, Path, description = "Channel id")),
    request_body = ChannelPatch,
    responses((status = 200, body = ChannelView)),
)]
pub async fn update(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageSettings>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<ChannelPatch>,
) -> Result<Json<ChannelView>, ApiError> {
    let channel = visible_channel(&state, &caller, &id).await?;
    check_may_change(&caller, channel.location_id.as_ref())?;
    let kind = ChannelKindName::from(channel.kind);
    let current = rules(&channel);
    let target = patch
        .target
        .as_deref()
        .map_or_else(|| channel.target.clone(), |t| t.trim().to_owned());
    let recipients = patch.recipients.clone().unwrap_or(current.recipients);
    let mut checks = Checks::new();
    check_target(&mut checks, kind, &target, &recipients);
    checks.finish().map_err(ApiError::Validation)?;
    let rotate = patch.rotate_secret.unwrap_or(false);
    if rotate && kind != ChannelKindName::Webhook {
        return Err(ApiError::field(
            "rotate_secret",
            "only webhook channels have a secret",
        ));
    }
    let doc = match &channel.settings {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut settings = with_rules(
        doc,
        &recipients,
        patch.severities.as_deref().unwrap_or(&current.severities),
        patch.alert_types.as_deref().unwrap_or(&current.alert_types),
        patch.resolved.or(current.resolved).unwrap_or(true),
    )?;
    let secret = rotate.then(new_secret);
    if let Some(secret) = &secret {
        settings.insert("secret".into(), Value::String(secret.clone()));
    }
    let updated = state
        .store
        .update_channel(
            &caller.account,
            &channel.id,
            &ChannelUpdate {
                target,
                settings: Value::Object(settings),
                enabled: patch.enabled.unwrap_or(channel.enabled),
            },
        )
        .await?;
    let before = channel_view(&channel);
    let after = channel_view(&updated);
    audit(
        &state,
        &caller,
        if rotate {
            "channel.rotate_secret"
        } else {
            "channel.update"
        },
        &format!("channel:{}", channel.id),
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(Json(ChannelView { secret, ..after }))
}

/// Removes a channel, with its queued notifications and delivery log.
#[utoipa::path(delete, path = "/api/v1/channels/{id}", tag = "notifications",
    params(("id" = String, Path, description = "Channel id")),
    responses((status = 204, description = "Removed")),
)]
pub async fn remove(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageSettings>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let channel = visible_channel(&state, &caller, &id).await?;
    check_may_change(&caller, channel.location_id.as_ref())?;
    let removed = state
        .store
        .delete_channel(&caller.account, &channel.id)
        .await?;
    let before = channel_view(&removed);
    audit::<_, ()>(
        &state,
        &caller,
        "channel.delete",
        &format!("channel:{}", removed.id),
        Some(&before),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// A test notification that could not be delivered: `502` naming the SMTP or HTTP error.
fn delivery_failed(detail: &str) -> Response {
    let problem = Problem {
        r#type: "urn:scalesense:problem:delivery-failed".into(),
        title: "Bad Gateway".into(),
        status: StatusCode::BAD_GATEWAY.as_u16(),
        detail: format!("the test notification was not delivered: {detail}"),
        errors: Vec::new(),
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    (
        StatusCode::BAD_GATEWAY,
        [(axum::http::header::CONTENT_TYPE, PROBLEM_JSON)],
        body,
    )
        .into_response()
}

/// Sends a test message on the channel now (enabled or not, quiet hours or not). The attempt is
/// in the delivery log either way.
#[utoipa::path(post, path = "/api/v1/channels/{id}/test", tag = "notifications",
    params(("id" = String, Path, description = "Channel id")),
    responses((status = 200, body = TestResult),
        (status = 502, description = "Not delivered: the SMTP or HTTP error", body = Problem, content_type = "application/problem+json")),
)]
pub async fn test(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageSettings>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let channel = visible_channel(&state, &caller, &id).await?;
    let Some(notifier) = state.notifier.clone() else {
        return Err(ApiError::Unavailable(
            "this server sends no notifications (no outbox worker)".into(),
        ));
    };
    let result = notifier.send_test(&caller.account, &channel.id).await;
    let after = serde_json::json!({"delivered": result.is_ok(), "error": result.as_ref().err()});
    audit::<(), _>(
        &state,
        &caller,
        "channel.test",
        &format!("channel:{}", channel.id),
        None,
        Some(&after),
    )
    .await;
    match result {
        Ok(()) => Ok(Json(TestResult { delivered: true }).into_response()),
        Err(detail) => Ok(delivery_failed(&detail)),
    }
}

/// `?channel=` narrows the delivery log to one channel.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Items per page, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// Only this channel's deliveries.
    #[param(max_length = 64)]
    pub channel: Option<String>,
}

impl Validate for DeliveryParams {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::new();
        if let Err(errors) = self.page().validate() {
            for e in errors {
                c.push(e);
            }
        }
        if let Some(channel) = &self.channel {
            c.check(
                RecordId::try_from(channel.as_str()).is_ok(),
                "channel",
                "is not a channel id",
            );
        }
        c.finish()
    }
}

impl DeliveryParams {
    fn page(&self) -> PageParams {
        PageParams {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

/// A location's notification deliveries (its channels' and the account-wide ones'), newest
/// first: pending, sent, failed (will retry) and dead ones with their last error.
#[utoipa::path(get, path = "/api/v1/locations/{id}/notifications", tag = "notifications",
    params(("id" = String, Path, description = "Location id"), DeliveryParams),
    responses((status = 200, body = DeliveryPage)),
)]
pub async fn deliveries(
    State(state): State<ApiState>,
    Authorized(caller, ..): Authorized<perm::ManageSettings>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let location = visible_location(&state, &caller, &id).await?;
    let mut items = state
        .store
        .location_outbox(&caller.account, &location.id, MAX_DELIVERIES)
        .await?;
    items.retain(|item| {
        item_for_location(item, &location)
            && params
                .channel
                .as_deref()
                .is_none_or(|c| item.channel_id.as_str() == c)
    });
    let (items, next_cursor) = page_desc(items, &params.page(), |i| int_key(i.id))?;
    Ok(Json(DeliveryPage {
        items: items.iter().map(delivery_view).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(kind: ChannelKindName, target: &str, recipients: &[&str]) -> Vec<String> {
        let recipients: Vec<String> = recipients.iter().map(|r| (*r).to_owned()).collect();
        let mut c = Checks::new();
        check_target(&mut c, kind, target, &recipients);
        c.finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn email_targets_are_addresses() {
        use ChannelKindName::Email;
        assert!(errors(Email, "bar@pub.example", &[]).is_empty());
        assert!(errors(Email, "a@pub.example, b@pub.example", &["c@pub.example"]).is_empty());
        assert_eq!(errors(Email, "not an address", &[]), ["target"]);
        assert_eq!(errors(Email, "", &[]), ["target"]);
        assert_eq!(errors(Email, "a@b", &[]), ["target"]);
        assert_eq!(
            errors(Email, "a@pub.example", &["ok@pub.example", "nope"]),
            ["recipients[1]"]
        );
        let many: Vec<String> = (0..20).map(|i| format!("r{i}@pub.example")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(errors(Email, "a@pub.example", &many), ["recipients"]);
    }

    #[test]
    fn webhook_targets_are_http_urls() {
        use ChannelKindName::Webhook;
        assert!(errors(Webhook, "https://hooks.example/in?x=1", &[]).is_empty());
        assert!(errors(Webhook, "http://127.0.0.1:9000/hook", &[]).is_empty());
        for bad in [
            "ftp://hooks.example/",
            "hooks.example/in",
            "https://",
            "https://exa mple/",
            "/relative",
        ] {
            assert_eq!(errors(Webhook, bad, &[]), ["target"], "{bad}");
        }
        assert_eq!(
            errors(Webhook, "https://hooks.example/", &["a@pub.example"]),
            ["recipients"]
        );
        assert_eq!(errors(ChannelKindName::Push, "x", &[]), ["kind"]);
    }

    #[test]
    fn settings_keep_foreign_keys_and_views_hide_the_secret() {
        let mut doc = Map::new();
        doc.insert("secret".into(), "whsec_x".into());
        doc.insert("digest".into(), true.into());
        let doc = with_rules(
            doc,
            &[" a@pub.example ".into()],
            &[ChannelSeverity::Critical],
            &[ChannelAlertType::LowKeg, ChannelAlertType::StaleReading],
            false,
        )
        .unwrap();
        assert_eq!(
            Value::Object(doc.clone()),
            serde_json::json!({
                "secret": "whsec_x", "digest": true, "recipients": ["a@pub.example"],
                "severities": ["critical"], "alert_types": ["low_keg", "stale_reading"],
                "resolved": false
            })
        );
        let channel = Channel {
            id: RecordId::try_from("ch-1").unwrap(),
            account_id: scalesense_store::AccountId::try_from("acme").unwrap(),
            location_id: None,
            kind: ChannelKind::Webhook,
            target: "https://hooks.example/".into(),
            settings: Value::Object(doc),
            enabled: true,
        };
        let view = channel_view(&channel);
        assert!(view.has_secret && !view.resolved);
        let json = serde_json::to_string(&view).unwrap();
        assert!(!json.contains("whsec_x"), "{json}");
        assert_eq!(new_secret().len(), "whsec_".len() + 64);
    }
}
