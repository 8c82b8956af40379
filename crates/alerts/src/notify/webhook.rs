//! Signed webhooks: a JSON body POSTed to the channel's URL with
//!
//! - `X-ScaleSense-Signature: t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`
//! - `X-ScaleSense-Idempotency-Key: {key}` — the same on every retry of one notification
//! - `X-ScaleSense-Event: alert_fired | alert_escalated | alert_resolved | digest | test`
//!
//! A receiver recomputes the HMAC over the raw body bytes, compares in constant time, and
//! refuses a `t` far from its own clock (replays); [`verify`] does exactly that and is what
//! `docs/notifications.md` documents.
//!
//! The HTTP client is hyper's (already in the tree through axum), one connection per delivery,
//! TLS through tokio-rustls with ring and the webpki roots. It never follows redirects (a 3xx is
//! a failed delivery) and never waits longer than its timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::DeliveryError;

pub const SIGNATURE_HEADER: &str = "x-scalesense-signature";
pub const IDEMPOTENCY_HEADER: &str = "x-scalesense-idempotency-key";
pub const EVENT_HEADER: &str = "x-scalesense-event";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], t: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signature header value for `body` sent at `t` (Unix seconds).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex(&mac(secret, t, body).finalize().into_bytes())
    )
}

/// Why a receiver refuses a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is malformed")]
    Malformed,
    #[error("signature timestamp is outside the tolerance")]
    Expired,
    #[error("signature does not match the body")]
    Mismatch,
}

/// Checks a signature header the way a receiver should: the HMAC of `"{t}.{body}"` matches one
/// `v1=` value (constant-time) and `t` is within `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(unhex(v).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_secs - t).abs() > tolerance_secs {
        return Err(SignatureError::Expired);
    }
    if candidates
        .iter()
        .any(|c| mac(secret, t, body).verify_slice(c).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Posts webhook bodies.
#[derive(Clone)]
pub struct WebhookClient {
    tls: TlsConnector,
    timeout: Duration,
}

impl core::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn http_error(e: impl core::fmt::Display) -> DeliveryError {
    DeliveryError::Http(e.to_string())
}

impl WebhookClient {
    /// A client whose every delivery (connect, TLS, request, answer) ends within `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, DeliveryError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots: rustls::RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DeliveryError::Http(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// POSTs `body` as JSON to `url` with extra `headers`; `Ok` on a 2xx answer.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(), DeliveryError> {
        let secs = self.timeout.as_secs();
        tokio::time::timeout(self.timeout, self.exchange(url, headers, body))
            .await
            .map_err(|_| DeliveryError::Timeout(secs))?
    }

    async fn exchange(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(), DeliveryError> {
        let bad = |reason: &str| DeliveryError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());

        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("scalesense/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(http_error)?;
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(http_error)?;

        let tcp = TcpStream::connect((host, port)).await.map_err(http_error)?;
        // Small requests, answered at once: Nagle would only add latency.
        tcp.set_nodelay(true).map_err(http_error)?;
        let status = if https {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|_| bad("host is not a valid TLS server name"))?;
            let tls = self.tls.connect(name, tcp).await.map_err(http_error)?;
            send(TokioIo::new(tls), request).await?
        } else {
            send(TokioIo::new(tcp), request).await?
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}

/// One HTTP/1.1 exchange on `io`: drives the connection until the answer's head arrives.
async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<StatusCode, DeliveryError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http_error)?;
    let answer = sender.send_request(request);
    tokio::pin!(connection);
    tokio::select! {
        response = answer => Ok(response.map_err(http_error)?.status()),
        closed = &mut connection => {
            closed.map_err(http_error)?;
            Err(DeliveryError::Http("connection closed before an answer".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '1781118840.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let header = sign(SECRET, 1_781_118_840, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1781118840,v1=fd9b21472b6058fd3f4e4b5d1a9a3c984b74920838ccb64db5769553bd34a9a3"
        );
    }

    #[test]
    fn verify_accepts_only_the_signed_body_in_time() {
        let body = br#"{"event":"alert_fired"}"#;
        let header = sign(SECRET, 1_000, body);
        assert_eq!(verify(SECRET, &header, body, 1_100, 300), Ok(()));
        assert_eq!(
            verify(SECRET, &header, br#"{"event":"alert_cleared"}"#, 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, body, 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &header, body, 2_000, 300),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(SECRET, "v1=00", body, 1_000, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, "t=1000,v1=zz", body, 1_000, 300),
            Err(SignatureError::Malformed)
        );
        // A rotated secret: any one matching v1 is enough.
        let both = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(verify(SECRET, &both, body, 1_000, 300), Ok(()));
    }

    #[tokio::test]
    async fn bad_urls_are_permanent_failures() {
        let client = WebhookClient::new(Duration::from_secs(2)).unwrap();
        for url in ["ftp://x/", "not a url", "/relative"] {
            let err = client.post(url, &[], Bytes::new()).await.unwrap_err();
            assert!(matches!(err, DeliveryError::BadUrl { .. }), "{url}: {err}");
            assert!(!err.is_transient());
        }
    }
}
