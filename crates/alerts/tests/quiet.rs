//! Quiet hours: an alert at 02:00 local sends nothing by e-mail, is live at once, and is in the
//! single overnight digest at opening time.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{HOUR, MIN, World, next_mail, smtp_sink};
use scalesense_alerts::{
    Mailer, OutboxConfig, OutboxReport, OutboxWorker, SmtpConfig, SmtpSecurity,
};
use scalesense_store::{ChannelKind, OutboxStatus};
use serde_json::json;

/// 2026-06-11 01:00 UTC = 02:00 IST in Dublin, the bar closed at 01:00.
const TWO_AM: i64 = 1_781_139_600_000;
/// 16:00 IST the same day: opening time.
const OPENING: i64 = TWO_AM + 14 * HOUR;

#[tokio::test]
async fn an_alert_at_two_am_waits_for_the_opening_digest() {
    let (port, mut inbox) = smtp_sink().await;
    let mut w = World::new(json!({"quiet_hours": {"open": "16:00", "close": "01:00"}})).await;
    w.channel("ch-mail", ChannelKind::Email, "bar@anchor.test", json!({}))
        .await;
    let outbox = OutboxWorker::new(
        w.store.clone(),
        Arc::new(w.clock.clone()),
        Some(
            Mailer::new(&SmtpConfig {
                host: "127.0.0.1".into(),
                port: Some(port),
                security: SmtpSecurity::Plain,
                username: None,
                password: None,
                from: "alerts@scalesense.test".into(),
                timeout: Duration::from_secs(10),
            })
            .unwrap(),
        ),
        OutboxConfig {
            dashboard_url: "http://dash.test".into(),
            ..OutboxConfig::default()
        },
    )
    .unwrap();

    // 02:00: the keg runs low; it fires at 02:02.
    w.at(TWO_AM);
    w.level(15.0).await;
    w.at(TWO_AM + 2 * MIN);
    let r = w.level(15.0).await;
    assert_eq!((r.fired, r.queued), (1, 1));
    // Live at once.
    let live = w.events.take();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].0, live[0].1.at), ("fired", TWO_AM + 2 * MIN));
    // Nothing by e-mail: the only queued item is the digest, due at the opening.
    assert_eq!(outbox.run_once().await.unwrap(), OutboxReport::default());
    let items = w.outbox().await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].idempotency_key,
        format!("digest:loc-001@{OPENING}:ch-mail")
    );
    assert_eq!(
        (items[0].status, items[0].next_attempt_at),
        (OutboxStatus::Pending, OPENING)
    );

    // 03:00: a new keg resolves it; still no e-mail, still one digest.
    w.at(TWO_AM + HOUR);
    let r = w.level(100.0).await;
    assert_eq!((r.cleared, r.queued), (1, 0));
    assert_eq!(w.events.take().len(), 1);
    w.at(OPENING - MIN);
    assert_eq!(outbox.run_once().await.unwrap(), OutboxReport::default());
    assert!(
        inbox.try_recv().is_err(),
        "nothing was e-mailed during quiet hours"
    );
    assert_eq!(w.outbox().await.len(), 1);

    // 16:00: one digest with both lines.
    w.at(OPENING);
    assert_eq!(outbox.run_once().await.unwrap().sent, 1);
    let digest = next_mail(&mut inbox, 10).await;
    assert_eq!(digest.rcpt, ["bar@anchor.test"]);
    assert_eq!(
        digest.header("Subject").unwrap(),
        "[Scale Sense] Overnight digest for The Anchor: 1 fired, 0 escalated, 1 resolved"
    );
    let text = digest.part("text/plain").unwrap();
    assert_eq!(
        text,
        "Overnight digest for The Anchor\n\
         While the bar was closed, until opening at 2026-06-11 16:00 IST:\n\n\
         02:02  fired     Low keg (warning): Tap 1 (Guinness Draught) — level 15.0 %, time remaining unknown (no recent pours)\n\
         \x20      http://dash.test/#/taps/loc-001%23TAP%2301\n\
         03:00  resolved  Low keg (warning): Tap 1 (Guinness Draught)\n\
         \x20      http://dash.test/#/taps/loc-001%23TAP%2301\n\
         \n-- \nScale Sense\n"
    );
    // Exactly once per opening.
    w.at(OPENING + HOUR);
    assert_eq!(outbox.run_once().await.unwrap(), OutboxReport::default());
    assert!(inbox.try_recv().is_err());

    // Open now: the next alert is e-mailed at once, not digested.
    w.at(OPENING + 2 * HOUR);
    w.level(15.0).await;
    w.at(OPENING + 2 * HOUR + 2 * MIN);
    assert_eq!(w.level(15.0).await.fired, 1);
    assert_eq!(outbox.run_once().await.unwrap().sent, 1);
    let now = next_mail(&mut inbox, 10).await;
    assert!(
        now.header("Subject")
            .unwrap()
            .starts_with("[Scale Sense] Low keg (warning): Tap 1"),
        "{:?}",
        now.header("Subject")
    );
}
