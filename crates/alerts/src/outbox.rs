//! The outbox worker: delivers what the engine queued, at least once.
//!
//! Every notification is a row in the store's outbox (idempotency key, attempts, next attempt,
//! status) before anything is sent, so a crash between "sent" and "marked sent" means it is
//! sent again after the restart, with the same idempotency key, never lost. A failure worth
//! retrying (server down, HTTP 5xx, timeout) is retried with exponential backoff; after
//! `max_attempts`, or at once for a failure that cannot heal (bad address, no secret, channel
//! removed), the row is marked `dead` with the error, which the API shows.
//!
//! The worker must run on one replica at a time (the outbox has no claim column): the
//! [`crate::Scheduler`] runs it only while it holds the leader lease. It never runs inside
//! ingest; the engine only queues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use scalesense_store::{
    AccountId, Channel, ChannelKind, NewNotification, OutboxItem, RecordId, Store, StoreError,
};
use serde::Serialize;

use crate::clock::Clock;
use crate::digest;
use crate::error::{AlertsError, DeliveryError};
use crate::notify::email::Mailer;
use crate::notify::render::{self, Email};
use crate::notify::webhook::{
    EVENT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, WebhookClient, sign,
};
use crate::notify::{DigestEntry, DigestNotice, Notification, TestNotice, test_key};
use crate::settings::{ChannelRules, LocationSettings};

/// Alert log lines read to assemble one digest (a night's worth with room to spare).
const DIGEST_LOG_LINES: u32 = 5_000;

/// How the worker delivers and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The dashboard's public URL, for links in messages (`{dashboard_url}/#/taps/…`).
    pub dashboard_url: String,
    /// Items taken per pass.
    pub batch: u32,
    /// Deliveries tried before an item is marked failed.
    pub max_attempts: i64,
    /// Wait before the first retry; doubled each time, up to `max_retry`.
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// Per webhook delivery, connect to answer.
    pub webhook_timeout: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            dashboard_url: "http://localhost:8080".into(),
            batch: 50,
            // 30 s, 1, 2, 4, 8, 16, 32 min: a receiver down for about an hour still gets it.
            max_attempts: 8,
            first_retry: Duration::from_secs(30),
            max_retry: Duration::from_hours(1),
            webhook_timeout: Duration::from_secs(10),
        }
    }
}

impl OutboxConfig {
    /// The wait after the `failures`-th failed attempt (1 = the first).
    pub fn retry_delay(&self, failures: i64) -> Duration {
        let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.max_retry)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxReport {
    pub sent: usize,
    /// Failed, will be tried again.
    pub retrying: usize,
    /// Failed for good (`dead`).
    pub failed: usize,
}

/// A webhook body: `{"id", "event", "created_at", "data"}`.
#[derive(Debug, Serialize)]
struct WebhookBody<'a> {
    /// The idempotency key (also in `X-ScaleSense-Idempotency-Key`).
    id: &'a str,
    event: &'a str,
    created_at: i64,
    data: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct DigestData<'a> {
    #[serde(flatten)]
    digest: &'a DigestNotice,
    entries: &'a [DigestEntry],
}

/// Delivers outbox items by e-mail and webhook.
#[derive(Debug)]
pub struct OutboxWorker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mailer: Option<Mailer>,
    webhooks: WebhookClient,
    config: OutboxConfig,
}

impl OutboxWorker {
    /// `mailer`: `None` when no SMTP server is configured (e-mail items then fail, visibly).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        mailer: Option<Mailer>,
        config: OutboxConfig,
    ) -> Result<Self, AlertsError> {
        Ok(Self {
            webhooks: WebhookClient::new(config.webhook_timeout)?,
            store,
            clock,
            mailer,
            config,
        })
    }

    /// Delivers every item due now (up to `batch`), oldest first.
    pub async fn run_once(&self) -> Result<OutboxReport, AlertsError> {
        let now = self.clock.now_ms();
        let items = self.store.due_notifications(now, self.config.batch).await?;
        let mut channels: HashMap<AccountId, Vec<Channel>> = HashMap::new();
        let mut report = OutboxReport::default();
        for item in items {
            if !channels.contains_key(&item.account_id) {
                let list = self.store.channels(&item.account_id).await?;
                channels.insert(item.account_id.clone(), list);
            }
            let channel = channels
                .get(&item.account_id)
                .and_then(|list| list.iter().find(|c| c.id == item.channel_id && c.enabled));
            let result = match channel {
                Some(channel) => {
                    self.deliver(
                        &item.account_id,
                        channel,
                        &item.idempotency_key,
                        item.created_at,
                        &item.payload,
                    )
                    .await
                }
                None => Err(DeliveryError::ChannelGone(item.channel_id.to_string())),
            };
            match self.settle(&item, result, true).await? {
                Settled::Sent => report.sent += 1,
                Settled::Retrying => report.retrying += 1,
                Settled::Failed => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// "Send test notification": queues a test message for `channel` (enabled or not) and
    /// delivers it now, ignoring quiet hours. The error says why it failed; a failed test is
    /// not retried, and stays visible in the outbox.
    pub async fn send_test(
        &self,
        account: &AccountId,
        channel: &RecordId,
    ) -> Result<(), AlertsError> {
        let now = self.clock.now_ms();
        let channel = self
            .store
            .channels(account)
            .await?
            .into_iter()
            .find(|c| c.id == *channel)
            .ok_or_else(|| StoreError::NotFound {
                entity: "channel",
                id: channel.to_string(),
            })?;
        let payload = serde_json::to_value(Notification::Test(TestNotice {
            channel_id: channel.id.clone(),
            requested_at: now,
        }))
        .map_err(|e| AlertsError::Invalid(format!("test payload: {e}")))?;
        let key = test_key(&channel.id, now);
        let queued = self
            .store
            .enqueue_notification(
                account,
                &NewNotification {
                    channel_id: channel.id.clone(),
                    idempotency_key: key.clone(),
                    payload: payload.clone(),
                    // Delivered right here; the background pass leaves it alone meanwhile.
                    next_attempt_at: now + 600_000,
                    created_at: now,
                },
            )
            .await?;
        let result = self.deliver(account, &channel, &key, now, &payload).await;
        let item = OutboxItem {
            id: queued.id,
            account_id: account.clone(),
            channel_id: channel.id.clone(),
            idempotency_key: key,
            payload,
            status: scalesense_store::OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            sent_at: None,
        };
        self.settle(&item, result.clone(), false).await?;
        result.map_err(AlertsError::Delivery)
    }

    async fn settle(
        &self,
        item: &OutboxItem,
        result: Result<(), DeliveryError>,
        retry: bool,
    ) -> Result<Settled, AlertsError> {
        let now = self.clock.now_ms();
        match result {
            Ok(()) => {
                self.store.mark_notification_sent(item.id, now).await?;
                tracing::info!(id = item.id, key = %item.idempotency_key, "notification sent");
                Ok(Settled::Sent)
            }
            Err(e) => {
                let failures = item.attempts + 1;
                let retry_at = (retry && e.is_transient() && failures < self.config.max_attempts)
                    .then(|| {
                        now.saturating_add(
                            i64::try_from(self.config.retry_delay(failures).as_millis())
                                .unwrap_or(i64::MAX),
                        )
                    });
                self.store
                    .mark_notification_failed(item.id, &e.to_string(), retry_at)
                    .await?;
                tracing::warn!(id = item.id, key = %item.idempotency_key, attempt = failures, error = %e, retry_at, "notification not delivered");
                Ok(if retry_at.is_some() {
                    Settled::Retrying
                } else {
                    Settled::Failed
                })
            }
        }
    }

    async fn deliver(
        &self,
        account: &AccountId,
        channel: &Channel,
        key: &str,
        created_at: i64,
        payload: &serde_json::Value,
    ) -> Result<(), DeliveryError> {
        let notification: Notification = serde_json::from_value(payload.clone())
            .map_err(|e| DeliveryError::BadPayload(e.to_string()))?;
        let rules = ChannelRules::of(channel);
        let entries = match &notification {
            Notification::Digest(d) => self.digest_entries(account, channel, &rules, d).await?,
            Notification::Alert(_) | Notification::Test(_) => Vec::new(),
        };
        match channel.kind {
            ChannelKind::Email => {
                let mailer = self.mailer.as_ref().ok_or(DeliveryError::NoSmtp)?;
                let email = self.email(&notification, &entries);
                mailer
                    .send(&rules.email_recipients(&channel.target), &email)
                    .await
            }
            ChannelKind::Webhook => {
                let secret = rules
                    .secret
                    .as_deref()
                    .ok_or(DeliveryError::MissingSecret)?;
                let (event, data) = self.webhook_data(&notification, &entries)?;
                let body = serde_json::to_vec(&WebhookBody {
                    id: key,
                    event,
                    created_at,
                    data,
                })
                .map_err(|e| DeliveryError::BadPayload(e.to_string()))?;
                let t = self.clock.now_ms().div_euclid(1_000);
                let headers = [
                    (SIGNATURE_HEADER, sign(secret.as_bytes(), t, &body)),
                    (IDEMPOTENCY_HEADER, key.to_owned()),
                    (EVENT_HEADER, event.to_owned()),
                ];
                self.webhooks
                    .post(&channel.target, &headers, Bytes::from(body))
                    .await
            }
            ChannelKind::Push => Err(DeliveryError::Unsupported("push".into())),
        }
    }

    async fn digest_entries(
        &self,
        account: &AccountId,
        channel: &Channel,
        rules: &ChannelRules,
        d: &DigestNotice,
    ) -> Result<Vec<DigestEntry>, DeliveryError> {
        let store_failed = |e: StoreError| DeliveryError::Store(e.to_string());
        let location = self
            .store
            .location(account, &d.location_id)
            .await
            .map_err(store_failed)?;
        let log = self
            .store
            .alert_history(account, &d.location_id, DIGEST_LOG_LINES)
            .await
            .map_err(store_failed)?;
        Ok(digest::entries(
            &log,
            &LocationSettings::of(&location),
            channel.kind,
            rules,
            d.opening,
        ))
    }

    fn email(&self, notification: &Notification, entries: &[DigestEntry]) -> Email {
        let base = &self.config.dashboard_url;
        match notification {
            Notification::Alert(n) => render::alert_email(n, base),
            Notification::Digest(d) => render::digest_email(d, entries, base),
            Notification::Test(t) => render::test_email(t, base),
        }
    }

    fn webhook_data(
        &self,
        notification: &Notification,
        entries: &[DigestEntry],
    ) -> Result<(&'static str, serde_json::Value), DeliveryError> {
        let json = |v: serde_json::Result<serde_json::Value>| {
            v.map_err(|e| DeliveryError::BadPayload(e.to_string()))
        };
        Ok(match notification {
            Notification::Alert(n) => {
                let mut data = json(serde_json::to_value(n))?;
                if let (Some(tap), Some(map)) = (&n.context.tap_id, data.as_object_mut()) {
                    map.insert(
                        "link".into(),
                        render::tap_link(&self.config.dashboard_url, tap).into(),
                    );
                }
                let event = match n.event {
                    crate::notify::NoticeEvent::Fired => "alert_fired",
                    crate::notify::NoticeEvent::Escalated => "alert_escalated",
                    crate::notify::NoticeEvent::Resolved => "alert_resolved",
                };
                (event, data)
            }
            Notification::Digest(d) => (
                "digest",
                json(serde_json::to_value(DigestData { digest: d, entries }))?,
            ),
            Notification::Test(t) => ("test", json(serde_json::to_value(t))?),
        })
    }
}

enum Settled {
    Sent,
    Retrying,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = OutboxConfig::default();
        let secs: Vec<u64> = (1..=9).map(|n| c.retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1_920, 3_600, 3_600]);
        assert_eq!(c.retry_delay(1_000).as_secs(), 3_600);
        assert_eq!(c.retry_delay(0).as_secs(), 30);
    }
}
