//! Notifications through the outbox, end to end on loopback: a real SMTP conversation with a
//! sink started by the test, and a webhook receiver (axum) that checks the signature, fails the
//! first two deliveries and accepts the third.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use common::{MIN, SEC, T0, World, next_mail, open_all_day, smtp_sink};
use hmac::{Hmac, KeyInit, Mac};
use scalesense_alerts::{
    AlertsError, DeliveryError, Mailer, OutboxConfig, OutboxReport, OutboxWorker, SmtpConfig,
    SmtpSecurity,
};
use scalesense_store::{ChannelKind, OutboxStatus};
use serde_json::json;
use sha2::Sha256;

const DASHBOARD: &str = "http://dash.test:8080";
const SECRET: &str = "whsec_anchor";

fn mailer(port: u16) -> Mailer {
    Mailer::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        security: SmtpSecurity::Plain,
        username: None,
        password: None,
        from: "Scale Sense <alerts@scalesense.test>".into(),
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

fn worker(w: &World, mailer: Option<Mailer>, max_attempts: i64) -> OutboxWorker {
    OutboxWorker::new(
        w.store.clone(),
        Arc::new(w.clock.clone()),
        mailer,
        OutboxConfig {
            dashboard_url: DASHBOARD.into(),
            max_attempts,
            ..OutboxConfig::default()
        },
    )
    .unwrap()
}

/// Fires a low-keg warning on tap 1 (15 %, no pours: hours unknown) at T0 + 2 min.
async fn fire_low_keg(w: &mut World) {
    w.at(T0);
    w.level(15.0).await;
    w.at(T0 + 2 * MIN);
    assert_eq!(w.level(15.0).await.fired, 1);
}

#[tokio::test]
async fn an_alert_email_goes_through_a_real_smtp_conversation() {
    let (port, mut inbox) = smtp_sink().await;
    let mut w = World::new(open_all_day()).await;
    w.channel(
        "ch-mail",
        ChannelKind::Email,
        "bar@anchor.test",
        json!({"recipients": ["manager@anchor.test"]}),
    )
    .await;
    fire_low_keg(&mut w).await;
    let outbox = worker(&w, Some(mailer(port)), 8);
    let report = outbox.run_once().await.unwrap();
    assert_eq!(
        report,
        OutboxReport {
            sent: 1,
            retrying: 0,
            failed: 0
        }
    );

    let mail = next_mail(&mut inbox, 10).await;
    assert_eq!(mail.from, "alerts@scalesense.test");
    assert_eq!(mail.rcpt, ["bar@anchor.test", "manager@anchor.test"]);
    assert_eq!(
        mail.header("Subject").unwrap(),
        "[Scale Sense] Low keg (warning): Tap 1 (Guinness Draught) at The Anchor"
    );
    assert_eq!(
        mail.header("To").unwrap(),
        "bar@anchor.test, manager@anchor.test"
    );
    let text = mail.part("text/plain").unwrap();
    assert_eq!(
        text,
        "Low keg — warning\n\nLocation: The Anchor\nTap: Tap 1\nBeer: Guinness Draught\n\
         Level: 15.0 %\nHours remaining: unknown (no recent pours)\n\
         Fired: 2026-06-10 13:02 IST\n\n\
         Open the tap: http://dash.test:8080/#/taps/loc-001%23TAP%2301\n\n-- \nScale Sense\n"
    );
    let html = mail.part("text/html").unwrap();
    assert!(
        html.contains("<a href=\"http://dash.test:8080/#/taps/loc-001%23TAP%2301\">"),
        "{html}"
    );
    assert!(html.contains("<td>Guinness Draught</td>"), "{html}");

    let items = w.outbox().await;
    assert_eq!(
        (items[0].status, items[0].attempts),
        (OutboxStatus::Sent, 1)
    );
    assert_eq!(items[0].sent_at, Some(T0 + 2 * MIN));
    // Sent once: the next pass finds nothing to do.
    assert_eq!(outbox.run_once().await.unwrap(), OutboxReport::default());
    assert!(inbox.try_recv().is_err());
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_retried_with_backoff() {
    // A port nobody listens on: bind, note it, close it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut w = World::new(open_all_day()).await;
    w.channel("ch-mail", ChannelKind::Email, "bar@anchor.test", json!({}))
        .await;
    fire_low_keg(&mut w).await;
    let outbox = worker(&w, Some(mailer(port)), 8);
    assert_eq!(outbox.run_once().await.unwrap().retrying, 1);
    let item = w.outbox().await.remove(0);
    assert_eq!((item.status, item.attempts), (OutboxStatus::Pending, 1));
    assert_eq!(item.next_attempt_at, T0 + 2 * MIN + 30 * SEC);
    assert!(item.last_error.unwrap().starts_with("SMTP:"));
    // And without an SMTP server configured at all, it fails at once, visibly.
    let no_smtp = worker(&w, None, 8);
    w.at(T0 + 3 * MIN);
    assert_eq!(no_smtp.run_once().await.unwrap().failed, 1);
    let item = w.outbox().await.remove(0);
    assert_eq!(item.status, OutboxStatus::Dead);
    assert_eq!(
        item.last_error.as_deref(),
        Some("no SMTP server is configured")
    );
}

/// What the webhook receiver saw.
#[derive(Debug, Default)]
struct Receiver {
    calls: Mutex<Vec<Call>>,
    fail_first: usize,
}

#[derive(Debug, Clone)]
struct Call {
    key: String,
    event: String,
    body: serde_json::Value,
    signature_ok: bool,
    accepted: bool,
}

/// Checks the signature the way docs/notifications.md tells integrators to.
fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get("x-scalesense-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_owned()),
            Some(("v1", v)) => v1 = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let Ok(given) = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(v1.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    mac.verify_slice(&given).is_ok()
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut calls = r.calls.lock().unwrap();
    let accepted = calls.len() >= r.fail_first;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    calls.push(Call {
        key: header("x-scalesense-idempotency-key"),
        event: header("x-scalesense-event"),
        body: serde_json::from_slice(&body).unwrap_or_default(),
        signature_ok: signature_ok(&headers, &body),
        accepted,
    });
    if accepted {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

async fn webhook_receiver(fail_first: usize) -> (String, Arc<Receiver>) {
    let receiver = Arc::new(Receiver {
        calls: Mutex::new(Vec::new()),
        fail_first,
    });
    let app = Router::new()
        .route("/hooks/scalesense", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hooks/scalesense",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

#[tokio::test]
async fn a_webhook_is_signed_retried_and_accepted_exactly_once() {
    let (url, receiver) = webhook_receiver(2).await;
    let mut w = World::new(open_all_day()).await;
    w.channel(
        "ch-hook",
        ChannelKind::Webhook,
        &url,
        json!({"secret": SECRET}),
    )
    .await;
    fire_low_keg(&mut w).await;
    let outbox = worker(&w, None, 8);

    // 1st delivery: 500 → retried 30 s later; nothing is due before that.
    assert_eq!(outbox.run_once().await.unwrap().retrying, 1);
    w.at(T0 + 2 * MIN + 29 * SEC);
    assert_eq!(outbox.run_once().await.unwrap(), OutboxReport::default());
    // 2nd: 500 → retried 60 s later.
    w.at(T0 + 2 * MIN + 30 * SEC);
    assert_eq!(outbox.run_once().await.unwrap().retrying, 1);
    let item = w.outbox().await.remove(0);
    assert_eq!(item.next_attempt_at, T0 + 3 * MIN + 30 * SEC);
    assert_eq!(
        item.last_error.as_deref(),
        Some("webhook answered HTTP 500")
    );
    // 3rd: accepted.
    w.at(T0 + 3 * MIN + 30 * SEC);
    assert_eq!(outbox.run_once().await.unwrap().sent, 1);
    w.at(T0 + 30 * MIN);
    assert_eq!(outbox.run_once().await.unwrap(), OutboxReport::default());

    let calls = receiver.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls.iter().filter(|c| c.accepted).count(), 1);
    let key = format!(
        "alert:loc-001/low_keg/loc-001#TAP#01@{}:fired:ch-hook",
        T0 + 2 * MIN
    );
    for call in &calls {
        assert!(call.signature_ok, "{call:?}");
        assert_eq!(call.key, key);
        assert_eq!(call.event, "alert_fired");
        assert_eq!(
            call.body, calls[0].body,
            "every retry carries the same body"
        );
    }
    let body = &calls[2].body;
    assert_eq!(body["id"], key.as_str());
    assert_eq!(body["event"], "alert_fired");
    assert_eq!(body["data"]["kind"], "low_keg");
    assert_eq!(body["data"]["severity"], "warning");
    assert_eq!(body["data"]["context"]["level_pct"], 15.0);
    assert_eq!(body["data"]["context"]["beer"], "Guinness Draught");
    assert_eq!(
        body["data"]["link"],
        "http://dash.test:8080/#/taps/loc-001%23TAP%2301"
    );
    let item = w.outbox().await.remove(0);
    assert_eq!((item.status, item.attempts), (OutboxStatus::Sent, 3));
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_marked_failed_and_visible() {
    let (url, receiver) = webhook_receiver(usize::MAX).await;
    let mut w = World::new(open_all_day()).await;
    w.channel(
        "ch-hook",
        ChannelKind::Webhook,
        &url,
        json!({"secret": SECRET}),
    )
    .await;
    w.channel("ch-nosecret", ChannelKind::Webhook, &url, json!({}))
        .await;
    fire_low_keg(&mut w).await;
    let outbox = worker(&w, None, 3);
    // The channel without a secret fails for good at once; the other is retried.
    let first = outbox.run_once().await.unwrap();
    assert_eq!((first.retrying, first.failed), (1, 1));
    w.at(T0 + 10 * MIN);
    assert_eq!(outbox.run_once().await.unwrap().retrying, 1);
    w.at(T0 + 20 * MIN);
    assert_eq!(outbox.run_once().await.unwrap().failed, 1);
    w.at(T0 + 5 * 60 * MIN);
    assert_eq!(outbox.run_once().await.unwrap(), OutboxReport::default());
    assert_eq!(receiver.calls.lock().unwrap().len(), 3);
    let items = w.outbox().await;
    let by_channel = |ch: &str| items.iter().find(|i| i.channel_id.as_str() == ch).unwrap();
    let hook = by_channel("ch-hook");
    assert_eq!((hook.status, hook.attempts), (OutboxStatus::Dead, 3));
    assert_eq!(
        hook.last_error.as_deref(),
        Some("webhook answered HTTP 500")
    );
    let unsigned = by_channel("ch-nosecret");
    assert_eq!(
        (unsigned.status, unsigned.attempts),
        (OutboxStatus::Dead, 1)
    );
    assert_eq!(
        unsigned.last_error.as_deref(),
        Some("webhook channel has no signing secret (settings.secret)")
    );
}

#[tokio::test]
async fn send_test_notification_delivers_now_and_reports_failures() {
    let (port, mut inbox) = smtp_sink().await;
    let w = World::new(open_all_day()).await;
    let mail = w
        .channel("ch-mail", ChannelKind::Email, "bar@anchor.test", json!({}))
        .await;
    let hook = w
        .channel(
            "ch-hook",
            ChannelKind::Webhook,
            "http://127.0.0.1:9/x",
            json!({}),
        )
        .await;
    let outbox = worker(&w, Some(mailer(port)), 8);
    outbox.send_test(&w.account, &mail).await.unwrap();
    let got = next_mail(&mut inbox, 10).await;
    assert_eq!(got.rcpt, ["bar@anchor.test"]);
    assert_eq!(
        got.header("Subject").unwrap(),
        "[Scale Sense] Test notification"
    );
    assert!(got.part("text/plain").unwrap().contains("channel ch-mail"));

    let err = outbox.send_test(&w.account, &hook).await.unwrap_err();
    assert!(
        matches!(err, AlertsError::Delivery(DeliveryError::MissingSecret)),
        "{err}"
    );
    let statuses: Vec<(String, OutboxStatus)> = w
        .outbox()
        .await
        .into_iter()
        .map(|i| (i.channel_id.to_string(), i.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("ch-mail".into(), OutboxStatus::Sent),
            ("ch-hook".into(), OutboxStatus::Dead)
        ]
    );
    // Nothing left for the background worker.
    w.at(T0 + 60 * MIN);
    assert_eq!(outbox.run_once().await.unwrap(), OutboxReport::default());
}
