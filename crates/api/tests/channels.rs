//! Notification channels through the router (issue 7): create, list, change and remove them,
//! the secret shown once, location scoping, the delivery log, and the test route through a
//! [`NotificationTester`] (the server's is the alerts' outbox worker; its SMTP and HTTP
//! deliveries are tested in the alerts crate and end to end in `scalesense/tests/up_email.rs`).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use scalesense_api::state::NotificationTester;
use scalesense_store::{AccountId, NewNotification, RecordId, Role};
use serde_json::{Value, json};
use support::fixture::T0;
use support::{Auth, Harness};

/// Records what it was asked to test; fails for targets containing `refuse`.
#[derive(Debug, Default)]
struct Tester {
    asked: Mutex<Vec<(AccountId, RecordId)>>,
    store: Mutex<Option<Arc<dyn scalesense_store::Store>>>,
}

#[async_trait]
impl NotificationTester for Tester {
    async fn send_test(&self, account: &AccountId, channel: &RecordId) -> Result<(), String> {
        self.asked
            .lock()
            .unwrap()
            .push((account.clone(), channel.clone()));
        let store = self.store.lock().unwrap().clone().unwrap();
        let target = store.channel(account, channel).await.unwrap().target;
        if target.contains("refuse") {
            Err("SMTP: 550 5.1.1 mailbox unavailable".into())
        } else {
            Ok(())
        }
    }
}

fn harness_with_tester(h: Option<Harness>) -> Option<(Harness, Arc<Tester>)> {
    let mut h = h?;
    let tester = Arc::new(Tester::default());
    *tester.store.lock().unwrap() = Some(h.store.clone());
    h.router = scalesense_api::router(h.state.clone().with_notifier(tester.clone()));
    Some((h, tester))
}

async fn create(h: &Harness, auth: &Auth, body: Value) -> support::Answer {
    h.call(Method::POST, "/api/v1/channels", auth, Some(body))
        .await
}

async fn channels_and_secrets(h: &Harness) {
    let manager = h.manager().await;
    let mail = create(
        h,
        &manager,
        json!({"location_id": "loc-001", "kind": "email", "target": " bar@acme.example ",
               "recipients": ["chef@acme.example"], "severities": ["critical"],
               "alert_types": ["low_keg", "scale_offline"], "resolved": false}),
    )
    .await;
    assert_eq!(mail.status, StatusCode::CREATED, "{}", mail.body);
    let mail_id = mail.body["id"].as_str().unwrap().to_owned();
    assert!(mail_id.starts_with("ch-"));
    assert_eq!(
        mail.headers["location"],
        format!("/api/v1/channels/{mail_id}").as_str()
    );
    assert_eq!(mail.body["target"], "bar@acme.example");
    assert_eq!(mail.body["recipients"], json!(["chef@acme.example"]));
    assert_eq!(mail.body["severities"], json!(["critical"]));
    assert_eq!(
        mail.body["alert_types"],
        json!(["low_keg", "scale_offline"])
    );
    assert_eq!(mail.body["resolved"], false);
    assert_eq!(mail.body["enabled"], true);
    assert!(mail.body.get("secret").is_none(), "e-mail has no secret");
    // The alerts crate reads the same document.
    let stored = h
        .store
        .channel(&h.fx.acme, &RecordId::try_from(mail_id.as_str()).unwrap())
        .await
        .unwrap();
    let rules = stored.settings;
    assert_eq!(rules["severities"], json!(["critical"]));
    assert_eq!(rules["recipients"], json!(["chef@acme.example"]));

    let hook = create(
        h,
        &manager,
        json!({"kind": "webhook", "target": "https://hooks.acme.example/in"}),
    )
    .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    let secret = hook.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40);
    assert_eq!(hook.body["location_id"], Value::Null, "account-wide");
    assert_eq!(hook.body["has_secret"], true);
    let hook_id = hook.body["id"].as_str().unwrap().to_owned();

    // Bad input names the field.
    for (body, field) in [
        (
            json!({"location_id": "loc-001", "kind": "email", "target": "nobody"}),
            "target",
        ),
        (
            json!({"location_id": "loc-001", "kind": "webhook", "target": "ftp://x.example/"}),
            "target",
        ),
        (
            json!({"location_id": "loc-001", "kind": "push", "target": "x"}),
            "kind",
        ),
        (
            json!({"location_id": "loc-001", "kind": "email", "target": "a@b.example", "recipients": ["no"]}),
            "recipients[0]",
        ),
        (
            json!({"location_id": "loc-001", "kind": "email", "target": "a@b.example", "severities": ["loud"]}),
            "severities[0]",
        ),
    ] {
        let answer = create(h, &manager, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.body
        );
        assert!(
            answer
                .error_fields()
                .iter()
                .any(|f| f == field || f.starts_with(field.split('[').next().unwrap())),
            "{body}: {:?}",
            answer.error_fields()
        );
    }
    // Another account's location is not there.
    let foreign = create(
        h,
        &manager,
        json!({"location_id": h.fx.other_loc.to_string(), "kind": "email", "target": "a@b.example"}),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);

    // Listed with the account-wide one, never with the secret.
    let list = h.get("/api/v1/locations/loc-001/channels", &manager).await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&mail_id.as_str()) && ids.contains(&hook_id.as_str()));
    assert!(!list.body.to_string().contains(&secret));
    let loc2 = format!("/api/v1/locations/{}/channels", h.fx.loc2);
    let other = h.get(&loc2, &manager).await;
    let ids: Vec<&str> = other.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [hook_id.as_str()],
        "loc2 sees only the account-wide one"
    );

    // Change: disable, filters; rotate the webhook's secret (shown once again).
    let path = format!("/api/v1/channels/{mail_id}");
    let patched = h
        .call(
            Method::PATCH,
            &path,
            &manager,
            Some(json!({"enabled": false, "severities": [], "target": "new@acme.example"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["severities"], json!([]));
    assert_eq!(patched.body["target"], "new@acme.example");
    assert_eq!(
        patched.body["alert_types"],
        json!(["low_keg", "scale_offline"])
    );
    assert_eq!(patched.body["recipients"], json!(["chef@acme.example"]));
    let bad = h
        .call(
            Method::PATCH,
            &path,
            &manager,
            Some(json!({"target": "nope"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let no_secret = h
        .call(
            Method::PATCH,
            &path,
            &manager,
            Some(json!({"rotate_secret": true})),
        )
        .await;
    assert_eq!(no_secret.error_fields(), ["rotate_secret"]);
    let rotated = h
        .call(
            Method::PATCH,
            &format!("/api/v1/channels/{hook_id}"),
            &manager,
            Some(json!({"rotate_secret": true})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    // A manager limited to loc2 sees the account-wide channel but may not change it, and does
    // not see loc-001's channel at all.
    h.store
        .update_user(
            &h.fx.acme,
            &"usr-restricted".try_into().unwrap(),
            Some(Role::Manager),
            None,
        )
        .await
        .unwrap();
    let restricted = h.session(&h.fx.acme, "usr-restricted").await;
    assert_eq!(
        h.call(
            Method::PATCH,
            &path,
            &restricted,
            Some(json!({"enabled": true}))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let wide = h
        .call(
            Method::DELETE,
            &format!("/api/v1/channels/{hook_id}"),
            &restricted,
            None,
        )
        .await;
    assert_eq!(wide.error_fields(), ["location_id"]);
    let wide_new = create(
        h,
        &restricted,
        json!({"kind": "email", "target": "a@b.example"}),
    )
    .await;
    assert_eq!(wide_new.error_fields(), ["location_id"]);
    let own = create(
        h,
        &restricted,
        json!({"location_id": h.fx.loc2.to_string(), "kind": "email", "target": "a@b.example"}),
    )
    .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);

    // Removed; then gone.
    let removed = h.call(Method::DELETE, &path, &manager, None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.call(Method::DELETE, &path, &manager, None).await.status,
        StatusCode::NOT_FOUND
    );

    // Every write is audited, and no audit line holds a secret.
    let audit = h.get("/api/v1/audit?limit=500", &h.admin().await).await;
    let text = audit.body.to_string();
    for action in [
        "channel.create",
        "channel.update",
        "channel.rotate_secret",
        "channel.delete",
    ] {
        assert!(text.contains(action), "{action} audited");
    }
    assert!(!text.contains(&secret) && !text.contains(new_secret));
}

async fn test_route_and_delivery_log(h: &Harness, tester: &Tester) {
    let manager = h.manager().await;
    let good = create(
        h,
        &manager,
        json!({"location_id": "loc-001", "kind": "email", "target": "bar@acme.example"}),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = create(
        h,
        &manager,
        json!({"location_id": "loc-001", "kind": "email", "target": "refuse@acme.example"}),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = h
        .call(
            Method::POST,
            &format!("/api/v1/channels/{good}/test"),
            &manager,
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body, json!({"delivered": true}));
    let failed = h
        .call(
            Method::POST,
            &format!("/api/v1/channels/{refused}/test"),
            &manager,
            None,
        )
        .await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert_eq!(failed.content_type(), "application/problem+json");
    assert_eq!(
        failed.body["type"],
        "urn:scalesense:problem:delivery-failed"
    );
    assert!(
        failed.body["detail"]
            .as_str()
            .unwrap()
            .contains("550 5.1.1 mailbox unavailable")
    );
    let asked: Vec<String> = tester
        .asked
        .lock()
        .unwrap()
        .iter()
        .map(|(a, c)| format!("{a}/{c}"))
        .collect();
    assert_eq!(asked, [format!("acme/{good}"), format!("acme/{refused}")]);
    // Another account's admin cannot test it (and nothing is sent).
    let other = h
        .call(
            Method::POST,
            &format!("/api/v1/channels/{good}/test"),
            &h.other_admin().await,
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(tester.asked.lock().unwrap().len(), 2);

    // The delivery log: this location's channels and the account-wide ones, newest first, with
    // states; an account-wide channel's item about another location is not listed here.
    let wide = create(
        h,
        &manager,
        json!({"kind": "webhook", "target": "https://hooks.acme.example/"}),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let enqueue = |channel: &str, key: &str, payload: Value, at: i64| {
        let note = NewNotification {
            channel_id: RecordId::try_from(channel).unwrap(),
            idempotency_key: key.into(),
            payload,
            next_attempt_at: at,
            created_at: at,
        };
        let store = h.store.clone();
        let account = h.fx.acme.clone();
        async move {
            store
                .enqueue_notification(&account, &note)
                .await
                .unwrap()
                .id
        }
    };
    let alert = |location: &str| {
        json!({"type": "alert", "event": "fired", "location_id": location, "kind": "low_keg",
               "entity": format!("{location}#TAP#01"), "severity": "warning"})
    };
    let sent = enqueue(&good, "k-sent", alert("loc-001"), T0).await;
    let retrying = enqueue(&good, "k-retry", alert("loc-001"), T0 + 1).await;
    let dead = enqueue(&wide, "k-dead", alert("loc-001"), T0 + 2).await;
    let elsewhere = enqueue(&wide, "k-else", alert(h.fx.loc2.as_str()), T0 + 3).await;
    let pending = enqueue(&refused, "k-pending", json!({"type": "test"}), T0 + 4).await;
    h.store.mark_notification_sent(sent, T0 + 10).await.unwrap();
    h.store
        .mark_notification_failed(retrying, "SMTP: 451 try later", Some(T0 + 60_000))
        .await
        .unwrap();
    h.store
        .mark_notification_failed(dead, "webhook answered HTTP 500", None)
        .await
        .unwrap();
    let log = h
        .get(
            "/api/v1/locations/loc-001/notifications?limit=500",
            &manager,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let items = log.body["items"].as_array().unwrap();
    let state_of = |id: i64| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state_of(sent).as_deref(), Some("sent"));
    assert_eq!(state_of(retrying).as_deref(), Some("failed"));
    assert_eq!(state_of(dead).as_deref(), Some("dead"));
    assert_eq!(state_of(pending).as_deref(), Some("pending"));
    assert_eq!(state_of(elsewhere), None, "about loc2");
    let dead_item = items.iter().find(|i| i["id"] == dead).unwrap();
    assert_eq!(dead_item["last_error"], "webhook answered HTTP 500");
    assert_eq!(dead_item["alert_kind"], "low_keg");
    assert_eq!(dead_item["notification"], "alert");
    let ids: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first);
    // One channel, paged.
    let first = h
        .get(
            &format!("/api/v1/locations/loc-001/notifications?channel={good}&limit=1"),
            &manager,
        )
        .await;
    assert_eq!(first.body["items"][0]["id"], retrying);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = h
        .get(
            &format!(
                "/api/v1/locations/loc-001/notifications?channel={good}&limit=1&cursor={cursor}"
            ),
            &manager,
        )
        .await;
    let rest: Vec<i64> = second.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert!(
        rest.contains(&sent) && !rest.contains(&retrying),
        "{rest:?}"
    );
    // The list shows each channel's newest delivery.
    let list = h.get("/api/v1/locations/loc-001/channels", &manager).await;
    let wide_view = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == wide.as_str())
        .unwrap();
    assert_eq!(wide_view["last_delivery"]["id"], dead);
    assert_eq!(wide_view["last_delivery"]["state"], "dead");
    // Staff never see it.
    let staff = h
        .get("/api/v1/locations/loc-001/notifications", &h.staff().await)
        .await;
    assert_eq!(staff.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_channels_and_secrets() {
    let (h, _) = harness_with_tester(Some(Harness::sqlite().await)).unwrap();
    channels_and_secrets(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_channels_and_secrets() {
    if let Some((h, _)) = harness_with_tester(Harness::postgres().await) {
        channels_and_secrets(&h).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_test_route_and_delivery_log() {
    let (h, tester) = harness_with_tester(Some(Harness::sqlite().await)).unwrap();
    test_route_and_delivery_log(&h, &tester).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_test_route_and_delivery_log() {
    if let Some((h, tester)) = harness_with_tester(Harness::postgres().await) {
        test_route_and_delivery_log(&h, &tester).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_route_without_a_notifier_is_503() {
    let h = Harness::sqlite().await;
    let manager = h.manager().await;
    let id = create(
        &h,
        &manager,
        json!({"location_id": "loc-001", "kind": "email", "target": "bar@acme.example"}),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = h
        .call(
            Method::POST,
            &format!("/api/v1/channels/{id}/test"),
            &manager,
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.content_type(), "application/problem+json");
}
