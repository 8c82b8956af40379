//! The alert engine on a fake clock over a real SQLite store: grace periods, escalation,
//! acknowledgement, hysteresis, offline timing, maintenance and restarts.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

mod common;

use common::{HOUR, MIN, SEC, T0, World, open_all_day};
use scalesense_alerts::{AlertContext, EvalReport};
use scalesense_store::{AlertChange, AlertKey, AlertState, ChannelKind, Severity};
use serde_json::json;

async fn bar_with_email() -> World {
    let w = World::new(open_all_day()).await;
    w.channel("ch-mail", ChannelKind::Email, "bar@anchor.test", json!({}))
        .await;
    w
}

#[tokio::test]
async fn a_condition_shorter_than_the_grace_period_never_fires() {
    let mut w = bar_with_email().await;
    w.at(T0);
    let r = w.level(15.0).await;
    assert_eq!(r.fired, 0);
    let key = AlertKey {
        location_id: w.location.clone(),
        kind: "low_keg".into(),
        entity: w.tap.to_string(),
    };
    let grace = w.store.grace(&w.account, &key).await.unwrap().unwrap();
    assert_eq!((grace.started_at, grace.expires_at), (T0, T0 + 2 * MIN));

    w.at(T0 + 90 * SEC);
    w.level(60.0).await;
    assert!(w.store.grace(&w.account, &key).await.unwrap().is_none());
    // Past the old grace deadline (the scale is still within its offline allowance).
    w.at(T0 + 4 * MIN);
    let r = w.engine.tick().await.unwrap();
    assert_eq!((r.fired, r.failed_locations), (0, 0));
    assert!(w.events.take().is_empty());
    assert!(w.active().await.is_empty());
    assert!(w.history().await.is_empty());
    assert!(w.outbox().await.is_empty());
}

#[tokio::test]
async fn a_condition_longer_than_the_grace_period_fires_once() {
    let mut w = bar_with_email().await;
    for (i, at) in [0, 60, 119].into_iter().enumerate() {
        w.at(T0 + at * SEC);
        assert_eq!(w.level(15.0).await.fired, 0, "reading {i}");
    }
    w.at(T0 + 2 * MIN);
    let r = w.level(15.0).await;
    assert_eq!((r.fired, r.queued), (1, 1));
    let events = w.events.take();
    assert_eq!(events.len(), 1);
    let (what, e) = &events[0];
    assert_eq!(*what, "fired");
    assert_eq!(e.id, "loc-001/low_keg/loc-001#TAP#01");
    assert_eq!((e.state, e.fired_at), ("active", T0 + 2 * MIN));
    let context = AlertContext::from_json(&e.context);
    assert_eq!(context.level_pct, Some(15.0));
    assert_eq!(context.tap_name.as_deref(), Some("Tap 1"));
    assert_eq!(context.beer.as_deref(), Some("Guinness Draught"));
    assert_eq!(context.first_seen, Some(T0));
    assert_eq!(context.hours_remaining, None);

    // Holding on, ticking, more readings: nothing fires again.
    for at in [3, 4, 10] {
        w.at(T0 + at * MIN);
        let r = w.level(14.0).await;
        assert_eq!((r.fired, r.queued), (0, 0));
        assert_eq!(w.engine.tick().await.unwrap().fired, 0);
    }
    assert!(w.events.take().is_empty());
    let active = w.active().await;
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].state, active[0].severity),
        (AlertState::Active, Severity::Warning)
    );
    assert_eq!(w.outbox().await.len(), 1);
    assert_eq!(
        w.outbox().await[0].idempotency_key,
        format!(
            "alert:loc-001/low_keg/loc-001#TAP#01@{}:fired:ch-mail",
            T0 + 2 * MIN
        )
    );
}

#[tokio::test]
async fn escalation_at_the_critical_threshold() {
    let mut w = bar_with_email().await;
    w.at(T0);
    w.level(18.0).await;
    w.at(T0 + 2 * MIN);
    assert_eq!(w.level(18.0).await.fired, 1);
    w.at(T0 + 5 * MIN);
    let r = w.level(9.0).await;
    assert_eq!((r.escalated, r.queued), (1, 1));
    assert_eq!(
        w.events.summary(),
        [
            ("fired", "low_keg".into(), "active", "warning".into()),
            ("fired", "low_keg".into(), "escalated", "critical".into()),
        ]
    );
    let active = w.active().await;
    assert_eq!(
        (active[0].state, active[0].severity),
        (AlertState::Escalated, Severity::Critical)
    );
    // Back above 12 % (critical + hysteresis): de-escalates quietly to an active warning.
    w.at(T0 + 6 * MIN);
    let r = w.level(12.5).await;
    assert_eq!((r.escalated, r.cleared, r.queued), (0, 0, 0));
    assert!(w.events.take().is_empty());
    let active = w.active().await;
    assert_eq!(
        (active[0].state, active[0].severity),
        (AlertState::Active, Severity::Warning)
    );
    assert_eq!(
        w.history().await,
        [
            ("low_keg".into(), "active".into(), "warning".into()),
            ("low_keg".into(), "escalated".into(), "critical".into()),
            ("low_keg".into(), "active".into(), "warning".into()),
        ]
    );
}

#[tokio::test]
async fn acknowledge_then_resolve() {
    let mut w = bar_with_email().await;
    w.at(T0);
    w.level(15.0).await;
    w.at(T0 + 2 * MIN);
    w.level(15.0).await;
    w.events.take();
    // The API acknowledges through the store.
    let key = AlertKey {
        location_id: w.location.clone(),
        kind: "low_keg".into(),
        entity: w.tap.to_string(),
    };
    let alert = w.active().await.remove(0);
    w.store
        .change_alert(
            &w.account,
            &key,
            &AlertChange {
                state: AlertState::Acknowledged,
                severity: alert.severity,
                at: T0 + 3 * MIN,
                by: Some("user:sam".into()),
                context: alert.context.clone(),
            },
        )
        .await
        .unwrap();
    // Still low: stays acknowledged, nobody is told again.
    w.at(T0 + 4 * MIN);
    let r = w.level(15.0).await;
    assert_eq!((r.fired, r.escalated, r.cleared), (0, 0, 0));
    let active = w.active().await;
    assert_eq!(active[0].state, AlertState::Acknowledged);
    assert_eq!(active[0].acknowledged_by.as_deref(), Some("user:sam"));
    // A new keg: resolves.
    w.at(T0 + 20 * MIN);
    let r = w.level(100.0).await;
    assert_eq!((r.cleared, r.queued), (1, 1));
    let events = w.events.take();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].0, events[0].1.state), ("cleared", "resolved"));
    assert_eq!(events[0].1.fired_at, T0 + 2 * MIN);
    assert!(w.active().await.is_empty());
    let states: Vec<String> = w.history().await.into_iter().map(|l| l.1).collect();
    assert_eq!(states, ["active", "acknowledged", "resolved"]);
    let keys: Vec<String> = w
        .outbox()
        .await
        .into_iter()
        .map(|i| i.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        [
            format!(
                "alert:loc-001/low_keg/loc-001#TAP#01@{}:fired:ch-mail",
                T0 + 2 * MIN
            ),
            format!(
                "alert:loc-001/low_keg/loc-001#TAP#01@{}:resolved:ch-mail",
                T0 + 2 * MIN
            ),
        ]
    );
}

#[tokio::test]
async fn a_level_hovering_at_the_threshold_does_not_flap() {
    let mut w = bar_with_email().await;
    w.at(T0);
    w.level(19.0).await;
    w.at(T0 + 2 * MIN);
    assert_eq!(w.level(19.0).await.fired, 1);
    // Hovering around 20 % (hysteresis 2 points): the open alert holds.
    for (i, level) in [20.5, 19.8, 21.0, 20.2, 21.9, 19.9, 21.5]
        .into_iter()
        .enumerate()
    {
        w.at(T0 + (3 + i as i64) * MIN);
        let r = w.level(level).await;
        assert_eq!((r.fired, r.cleared), (0, 0), "at {level} %");
    }
    w.at(T0 + 15 * MIN);
    assert_eq!(w.level(22.5).await.cleared, 1);
    // Above the threshold after clearing: nothing new.
    w.at(T0 + 16 * MIN);
    assert_eq!(w.level(21.0).await.fired, 0);
    assert_eq!(
        w.events.summary(),
        [
            ("fired", "low_keg".into(), "active", "warning".into()),
            ("cleared", "low_keg".into(), "resolved", "warning".into()),
        ]
    );
    assert_eq!(w.outbox().await.len(), 2);
}

#[tokio::test]
async fn offline_after_five_minutes_and_critical_after_thirty() {
    let mut w = bar_with_email().await;
    w.at(T0);
    w.level(80.0).await;
    for (at, fired) in [(T0 + MIN, 0), (T0 + 5 * MIN, 0), (T0 + 5 * MIN + SEC, 1)] {
        w.at(at);
        assert_eq!(
            w.engine.tick().await.unwrap().fired,
            fired,
            "at +{} s",
            (at - T0) / SEC
        );
    }
    let events = w.events.take();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.id, "loc-001/scale_offline/SCALE-0001");
    let context = AlertContext::from_json(&events[0].1.context);
    assert_eq!(context.silent_secs, Some(301));
    assert_eq!(context.tap_name.as_deref(), Some("Tap 1"));
    w.at(T0 + 30 * MIN);
    assert_eq!(w.engine.tick().await.unwrap().escalated, 0);
    w.at(T0 + 30 * MIN + SEC);
    assert_eq!(w.engine.tick().await.unwrap().escalated, 1);
    w.at(T0 + 45 * MIN);
    assert_eq!(w.engine.tick().await.unwrap(), EvalReport::default());
    // The scale is back: its reading clears the alert at once.
    w.at(T0 + 46 * MIN);
    assert_eq!(w.level(80.0).await.cleared, 1);
    assert_eq!(
        w.events.summary(),
        [
            (
                "fired",
                "scale_offline".into(),
                "escalated",
                "critical".into()
            ),
            (
                "cleared",
                "scale_offline".into(),
                "resolved",
                "critical".into()
            ),
        ]
    );
    // Online and silent long enough for "stale" only once it is not offline: nothing else fired.
    assert!(w.active().await.is_empty());
}

#[tokio::test]
async fn a_status_message_clears_offline_and_a_silent_online_scale_is_stale() {
    let mut w = bar_with_email().await;
    w.at(T0);
    w.level(80.0).await;
    w.at(T0 + 10 * MIN);
    assert_eq!(w.engine.tick().await.unwrap().fired, 1);
    // A status (telemetry) message: heard from, though no reading.
    let device = w
        .store
        .record_device_status(
            &w.device,
            &scalesense_store::DeviceStatusUpdate {
                status: scalesense_store::DeviceStatus::Online,
                fw_version: None,
                maintenance: None,
                battery_v: None,
                battery_pct: Some(88.0),
                rssi: None,
                at: T0 + 11 * MIN,
            },
        )
        .await
        .unwrap()
        .unwrap();
    w.at(T0 + 11 * MIN);
    let mut batch = scalesense_alerts::BatchSummary::new();
    batch.add_status(&device);
    assert_eq!(w.engine.after_batch(&batch).await.cleared, 1);
    // Still no reading 15 min after the last one, but online: stale readings.
    w.at(T0 + 15 * MIN + SEC);
    assert_eq!(w.engine.tick().await.unwrap().fired, 1);
    assert_eq!(
        w.events.summary(),
        [
            ("fired", "scale_offline".into(), "active", "warning".into()),
            (
                "cleared",
                "scale_offline".into(),
                "resolved",
                "warning".into()
            ),
            ("fired", "stale_reading".into(), "active", "warning".into()),
        ]
    );
    w.at(T0 + 16 * MIN);
    assert_eq!(w.level(80.0).await.cleared, 1);
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_grace_period() {
    let mut w = bar_with_email().await;
    w.at(T0);
    w.level(15.0).await;
    // The server restarts a minute into the grace period.
    w.restart();
    w.at(T0 + MIN);
    assert_eq!(w.engine.load().await.unwrap(), 1);
    w.at(T0 + 90 * SEC);
    assert_eq!(
        w.level(15.0).await.fired,
        0,
        "the grace period carries on, not restarts"
    );
    // No reading arrives any more: the tick fires it when the original grace period ends.
    w.at(T0 + 2 * MIN);
    let r = w.engine.tick().await.unwrap();
    assert_eq!(r.fired, 1);
    let events = w.events.take();
    assert_eq!(events[0].1.fired_at, T0 + 2 * MIN);
    let context = AlertContext::from_json(&events[0].1.context);
    assert_eq!(context.first_seen, Some(T0));
    assert_eq!(context.level_pct, Some(15.0));
    // Another restart: the active alert is not fired again, nor notified twice.
    w.restart();
    w.engine.load().await.unwrap();
    w.at(T0 + 3 * MIN);
    assert_eq!(w.level(15.0).await.fired, 0);
    assert_eq!(w.engine.tick().await.unwrap().fired, 0);
    assert!(w.events.take().is_empty());
    assert_eq!(w.outbox().await.len(), 1);
    assert_eq!(w.active().await.len(), 1);
}

#[tokio::test]
async fn readings_of_a_tap_in_maintenance_raise_no_low_keg() {
    let mut w = bar_with_email().await;
    w.at(T0);
    w.level(15.0).await;
    w.store
        .set_maintenance(&w.account, &w.device, true)
        .await
        .unwrap();
    // The keg is being swapped: near-empty readings.
    for at in [1, 2, 3, 5, 10] {
        w.at(T0 + at * MIN);
        assert_eq!(w.level(2.0).await.fired, 0);
        assert_eq!(w.engine.tick().await.unwrap().fired, 0);
    }
    let key = AlertKey {
        location_id: w.location.clone(),
        kind: "low_keg".into(),
        entity: w.tap.to_string(),
    };
    assert!(
        w.store.grace(&w.account, &key).await.unwrap().is_none(),
        "the grace period was abandoned"
    );
    w.store
        .set_maintenance(&w.account, &w.device, false)
        .await
        .unwrap();
    w.at(T0 + 11 * MIN);
    w.level(100.0).await;
    assert!(w.events.take().is_empty());
    assert!(w.active().await.is_empty());
}

#[tokio::test]
async fn hours_remaining_raise_low_keg_before_the_level_does() {
    let mut w = bar_with_email().await;
    // 40 L left, poured at 20 L/h, level still 65 %: about two hours left → critical.
    for step in 0..=6 {
        w.at(T0 + step * 5 * MIN);
        let volume = 40.0 - 20.0 * (step as f64 * 5.0 / 60.0);
        w.reading(65.0, volume, 90.0).await;
    }
    let events = w.events.take();
    assert_eq!(events.len(), 1, "{events:?}");
    let (what, e) = &events[0];
    assert_eq!((*what, e.kind.as_str()), ("fired", "low_keg"));
    assert_eq!(format!("{:?}", e.severity), "Critical");
    let context = AlertContext::from_json(&e.context);
    let hours = context.hours_remaining.unwrap();
    // Fired at the first reading after the grace period (15 min in: 35 L left at 20 L/h).
    assert_eq!(e.fired_at, T0 + 15 * MIN);
    assert!((hours - 35.0 / 20.0).abs() < 0.01, "{hours}");
    assert_eq!(context.level_pct, Some(65.0));
    assert!(
        context.summary.contains("about 1.8 h left"),
        "{}",
        context.summary
    );
}

#[tokio::test]
async fn low_battery_fires_after_grace_and_clears_with_hysteresis() {
    let mut w = bar_with_email().await;
    w.at(T0);
    w.reading(80.0, 20.0, 15.0).await;
    w.at(T0 + 2 * MIN);
    assert_eq!(w.reading(80.0, 20.0, 15.0).await.fired, 1);
    w.at(T0 + 3 * MIN);
    assert_eq!(w.reading(80.0, 20.0, 21.0).await.cleared, 0);
    w.at(T0 + 4 * MIN);
    assert_eq!(w.reading(80.0, 20.0, 23.0).await.cleared, 1);
    assert_eq!(
        w.events.summary(),
        [
            ("fired", "low_battery".into(), "active", "warning".into()),
            (
                "cleared",
                "low_battery".into(),
                "resolved",
                "warning".into()
            ),
        ]
    );
}

#[tokio::test]
async fn calibration_drift_fires_at_once_and_clears_on_recalibration() {
    let w = bar_with_email().await;
    w.at(T0 + HOUR);
    let r = w
        .engine
        .on_calibration(&w.account, &w.device, Some(-2.6))
        .await
        .unwrap();
    assert_eq!((r.fired, r.queued), (1, 1));
    let events = w.events.take();
    assert_eq!(events[0].1.id, "loc-001/calibration_drift/SCALE-0001");
    assert_eq!(
        AlertContext::from_json(&events[0].1.context).drift_pct,
        Some(-2.6)
    );
    w.at(T0 + 2 * HOUR);
    let r = w
        .engine
        .on_calibration(&w.account, &w.device, Some(0.4))
        .await
        .unwrap();
    assert_eq!(r.cleared, 1);
    assert!(w.active().await.is_empty());
}
