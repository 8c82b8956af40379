//! E-mail over real SMTP with `lettre`: plain for a local relay (`scalesense up` next to a
//! Postfix or a test sink), STARTTLS or implicit TLS (rustls with ring, webpki roots) for a
//! provider, with optional credentials. Every message is `multipart/alternative` with a
//! plain-text and an HTML body, both quoted-printable so any UTF-8 (beer names) arrives intact;
//! with attachments (the daily report's PDF), that pair is wrapped in `multipart/mixed`.
//!
//! This module must never log a password, and never wait longer than the configured timeout.

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment as AttachmentPart, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::render::Email;
use crate::error::DeliveryError;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS: only for a relay on the same host or network (default port 25).
    Plain,
    /// STARTTLS required (default port 587).
    StartTls,
    /// Implicit TLS, "SMTPS" (default port 465).
    Tls,
}

/// Where and how to send e-mail.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    /// `None`: the security mode's standard port.
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The `From:` mailbox, e.g. `Scale Sense <alerts@bar.example>`.
    pub from: String,
    /// Per SMTP command.
    pub timeout: Duration,
}

impl core::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A file sent along with an e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// A MIME type, e.g. `application/pdf`.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Sends rendered e-mails through one SMTP server (connections are pooled).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl core::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

fn mailbox(address: &str) -> Result<Mailbox, DeliveryError> {
    address
        .parse::<Mailbox>()
        .map_err(|e| DeliveryError::BadAddress {
            address: address.to_owned(),
            reason: e.to_string(),
        })
}

impl Mailer {
    /// Must be called inside a tokio runtime (the connection pool starts a task).
    pub fn new(config: &SmtpConfig) -> Result<Self, DeliveryError> {
        let from = mailbox(&config.from)?;
        let builder = match config.security {
            SmtpSecurity::Plain => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
            }
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                    .map_err(|e| DeliveryError::Smtp(e.to_string()))?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)
                .map_err(|e| DeliveryError::Smtp(e.to_string()))?,
        };
        let mut builder = builder.timeout(Some(config.timeout));
        if let Some(port) = config.port {
            builder = builder.port(port);
        }
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            server: format!("{}:{:?}", config.host, config.port),
        })
    }

    /// Sends `email` to every address in `to` (one message, all recipients in `To:`).
    pub async fn send(&self, to: &[String], email: &Email) -> Result<(), DeliveryError> {
        self.send_with_attachments(to, email, &[]).await
    }

    /// Like [`Mailer::send`], with files attached (base64) after the text and HTML bodies.
    pub async fn send_with_attachments(
        &self,
        to: &[String],
        email: &Email,
        attachments: &[Attachment],
    ) -> Result<(), DeliveryError> {
        if to.is_empty() {
            return Err(DeliveryError::BadAddress {
                address: String::new(),
                reason: "no recipient".into(),
            });
        }
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone());
        for address in to {
            builder = builder.to(mailbox(address)?);
        }
        let part = |content: ContentType, body: &str| -> Result<SinglePart, DeliveryError> {
            let body =
                Body::new_with_encoding(body.to_owned(), ContentTransferEncoding::QuotedPrintable)
                    .map_err(|_| DeliveryError::BadMessage("body cannot be encoded".into()))?;
            Ok(SinglePart::builder().header(content).body(body))
        };
        let bodies = MultiPart::alternative()
            .singlepart(part(ContentType::TEXT_PLAIN, &email.text)?)
            .singlepart(part(ContentType::TEXT_HTML, &email.html)?);
        let content = if attachments.is_empty() {
            bodies
        } else {
            let mut mixed = MultiPart::mixed().multipart(bodies);
            for a in attachments {
                let content_type = ContentType::parse(&a.content_type).map_err(|e| {
                    DeliveryError::BadMessage(format!("attachment type {:?}: {e}", a.content_type))
                })?;
                mixed = mixed.singlepart(
                    AttachmentPart::new(a.filename.clone()).body(a.bytes.clone(), content_type),
                );
            }
            mixed
        };
        let message = builder
            .multipart(content)
            .map_err(|e| DeliveryError::BadMessage(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::Smtp(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(from: &str) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(2525),
            security: SmtpSecurity::Plain,
            username: Some("bar".into()),
            password: Some("hunter2".into()),
            from: from.into(),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn config_never_prints_the_password() {
        let shown = format!("{:?}", config("Scale Sense <alerts@bar.test>"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[tokio::test]
    async fn bad_sender_is_refused_up_front() {
        assert!(Mailer::new(&config("Scale Sense <alerts@bar.test>")).is_ok());
        assert!(matches!(
            Mailer::new(&config("not an address")),
            Err(DeliveryError::BadAddress { .. })
        ));
    }
}
