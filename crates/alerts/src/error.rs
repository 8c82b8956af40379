//! The crate's errors: what the engine, the outbox worker and the lease can fail with.
//!
//! Delivery failures are their own type ([`DeliveryError`]) because the outbox needs to tell a
//! failure worth retrying (a server that is down) from one that never heals by itself (a
//! malformed address, a channel without a secret): the first is retried with backoff, the second
//! is marked failed at once and shown to the operator.

use scalesense_store::StoreError;

/// Why an engine run, a worker pass or a lease call failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("leader lease: {0}")]
    Lease(#[from] sqlx::Error),
    #[error("notification could not be delivered: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("{0}")]
    Invalid(String),
}

/// Why one notification was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The SMTP server refused or the connection failed; retried.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// No SMTP server is configured: e-mail channels cannot be served.
    #[error("no SMTP server is configured")]
    NoSmtp,
    /// A recipient or sender is not an e-mail address.
    #[error("bad e-mail address {address:?}: {reason}")]
    BadAddress { address: String, reason: String },
    /// The message could not be built (never expected with valid addresses).
    #[error("e-mail could not be built: {0}")]
    BadMessage(String),
    /// The webhook URL is not an absolute http(s) URL.
    #[error("bad webhook URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The webhook channel has no `secret` to sign with.
    #[error("webhook channel has no signing secret (settings.secret)")]
    MissingSecret,
    /// The receiver answered with a status other than 2xx; retried.
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    /// Connecting, TLS or the HTTP exchange failed; retried.
    #[error("webhook: {0}")]
    Http(String),
    /// No answer within the timeout; retried.
    #[error("timed out after {0} s")]
    Timeout(u64),
    /// The channel was removed or disabled after the notification was queued.
    #[error("channel {0} is gone or disabled")]
    ChannelGone(String),
    /// The channel kind cannot be delivered by this server (Web Push is not implemented).
    #[error("channel kind {0} is not delivered by this server")]
    Unsupported(String),
    /// The database failed while the message was being assembled (a digest's lines); retried.
    #[error("store: {0}")]
    Store(String),
    /// The stored payload is not one this version understands.
    #[error("unreadable notification payload: {0}")]
    BadPayload(String),
}

impl DeliveryError {
    /// Whether trying again later can help. Permanent failures are marked failed at once.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Smtp(_) | Self::Status(_) | Self::Http(_) | Self::Timeout(_) | Self::Store(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_failures_are_retried() {
        assert!(DeliveryError::Status(500).is_transient());
        assert!(DeliveryError::Timeout(10).is_transient());
        assert!(DeliveryError::Smtp("421".into()).is_transient());
        assert!(!DeliveryError::MissingSecret.is_transient());
        assert!(!DeliveryError::NoSmtp.is_transient());
        assert!(!DeliveryError::ChannelGone("ch-1".into()).is_transient());
    }
}
