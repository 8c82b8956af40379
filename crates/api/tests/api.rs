//! The API through its router, on both backends: login and sessions, CSRF, throttling, tokens,
//! tenancy, errors, pagination, ETags, commands, history, reports and the audit log.
// Tests read better with exact float comparisons of values that must round-trip unchanged.
#![allow(clippy::unwrap_used, clippy::float_cmp, clippy::too_many_lines)]

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use scalesense_store::Role;
use serde_json::{Value, json};
use support::fixture::PASSWORD;
use support::{Auth, Harness};

const TAP1: &str = "loc-001%23TAP%2301";

both_backends! {
    login_sets_a_cookie_that_works_until_it_expires => sqlite_login_session, pg_login_session;
    unknown_user_and_wrong_password_answer_the_same => sqlite_same_answer, pg_same_answer;
    failed_logins_are_throttled => sqlite_throttle, pg_throttle;
    cookie_writes_need_the_csrf_token => sqlite_csrf, pg_csrf;
    revoked_tokens_stop_working => sqlite_token_revocation, pg_token_revocation;
    other_accounts_and_other_locations_are_invisible => sqlite_tenancy, pg_tenancy;
    bad_requests_are_problems_naming_the_field => sqlite_problems, pg_problems;
    tap_list_pages_and_etags => sqlite_taps_pages, pg_taps_pages;
    assigning_beer_and_keg_is_audited => sqlite_assign, pg_assign;
    commands_are_recorded_published_and_role_checked => sqlite_commands, pg_commands;
    history_and_report_follow_the_domain_rules => sqlite_history, pg_history;
    alerts_acknowledge_by_the_alert_machine => sqlite_alerts, pg_alerts;
    beers_kegs_and_devices => sqlite_library, pg_library;
    users_and_tokens_for_admins => sqlite_users, pg_users;
    settings_are_checked_by_the_domain => sqlite_settings, pg_settings;
    editing_users_and_beers_is_checked_and_audited => sqlite_edits, pg_edits;
}

async fn login(h: &Harness, email: &str, password: &str) -> support::Answer {
    h.call(
        Method::POST,
        "/api/v1/auth/login",
        &Auth::None,
        Some(json!({"account": "acme", "email": email, "password": password})),
    )
    .await
}

/// The session cookie's value from a login answer.
fn cookie_token(answer: &support::Answer) -> String {
    let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"));
    set.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

async fn login_sets_a_cookie_that_works_until_it_expires(h: &Harness) {
    let answer = login(h, "Manager@Acme.test", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["user"]["role"], "manager");
    assert_eq!(answer.body["expires_at"], "2026-03-19T00:00:00Z");
    let token = cookie_token(&answer);
    let csrf = answer.body["csrf_token"].as_str().unwrap().to_owned();
    let auth = Auth::Cookie {
        token: token.clone(),
        csrf: Some(csrf.clone()),
    };
    let me = h.get("/api/v1/auth/me", &auth).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["kind"], "session");
    assert_eq!(me.body["name"], "manager@acme.test");
    assert_eq!(me.body["csrf_token"], csrf);

    // Twelve hours later the session is gone.
    h.clock.advance(Duration::from_hours(12));
    let expired = h.get("/api/v1/auth/me", &auth).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.content_type(), "application/problem+json");
    assert_eq!(
        expired.body["type"],
        "urn:scalesense:problem:unauthenticated"
    );

    // Logout revokes at once.
    let fresh = login(h, "manager@acme.test", PASSWORD).await;
    let auth = Auth::Cookie {
        token: cookie_token(&fresh),
        csrf: fresh.body["csrf_token"].as_str().map(str::to_owned),
    };
    let out = h
        .call(Method::POST, "/api/v1/auth/logout", &auth, None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        h.get("/api/v1/auth/me", &auth).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The login is in the audit log.
    let audit = h.get("/api/v1/audit", &h.admin().await).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"auth.login") && actions.contains(&"auth.logout"));
}

async fn unknown_user_and_wrong_password_answer_the_same(h: &Harness) {
    let wrong = login(h, "staff@acme.test", "not the password").await;
    let unknown = login(h, "nobody@acme.test", "not the password").await;
    let other_account = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            &Auth::None,
            Some(
                json!({"account": "no-such-account", "email": "staff@acme.test", "password": "x"}),
            ),
        )
        .await;
    for a in [&wrong, &unknown, &other_account] {
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.body["type"], "urn:scalesense:problem:invalid-credentials");
    }
    assert_eq!(wrong.raw, unknown.raw);
    assert_eq!(wrong.raw, other_account.raw);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
}

async fn failed_logins_are_throttled(h: &Harness) {
    for _ in 0..5 {
        assert_eq!(
            login(h, "staff@acme.test", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: even the right password is refused, and no hashing happens.
    let locked = login(h, "staff@acme.test", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.headers[header::RETRY_AFTER], "1");
    // An unknown e-mail is throttled the same way.
    for _ in 0..5 {
        login(h, "ghost@acme.test", "guess").await;
    }
    assert_eq!(
        login(h, "ghost@acme.test", "guess").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(
        login(h, "staff@acme.test", PASSWORD).await.status,
        StatusCode::OK
    );
}

async fn cookie_writes_need_the_csrf_token(h: &Harness) {
    let manager = h.manager().await;
    let body = json!({"beer_id": "guinness-draught"});
    let path = "/api/v1/taps/loc-001%23TAP%2305";
    let no_csrf = h
        .call(
            Method::PATCH,
            path,
            &manager.without_csrf(),
            Some(body.clone()),
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(no_csrf.body["type"], "urn:scalesense:problem:csrf");
    let Auth::Cookie { token, .. } = &manager else {
        unreachable!()
    };
    let wrong = Auth::Cookie {
        token: token.clone(),
        csrf: Some("forged".into()),
    };
    assert_eq!(
        h.call(Method::PATCH, path, &wrong, Some(body.clone()))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Reads need no CSRF token; writes with it work; bearer writes need none.
    assert_eq!(
        h.get(path, &manager.without_csrf()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.call(Method::PATCH, path, &manager, Some(body.clone()))
            .await
            .status,
        StatusCode::OK
    );
    let token = h.token(&h.fx.acme, Role::Manager, false).await;
    assert_eq!(
        h.call(Method::PATCH, path, &token, Some(body)).await.status,
        StatusCode::OK
    );
}

async fn revoked_tokens_stop_working(h: &Harness) {
    let admin = Auth::Bearer(h.fx.admin_token.clone());
    let created = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            &admin,
            Some(json!({"name": "home-assistant", "role": "staff"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sst_"));
    let id = created.body["token"]["id"].as_str().unwrap().to_owned();
    let integration = Auth::Bearer(secret);
    let me = h.get("/api/v1/auth/me", &integration).await;
    assert_eq!(me.body["kind"], "token");
    assert_eq!(me.body["role"], "staff");
    // The secret is never listed.
    let list = h.get("/api/v1/tokens", &admin).await;
    assert!(!list.body.to_string().contains("sst_"));
    let revoked = h
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(revoked.body["revoked_at"].is_string());
    assert_eq!(
        h.get("/api/v1/auth/me", &integration).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A token's role cannot exceed its creator's: a manager cannot mint tokens at all.
    let manager = h.manager().await;
    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/tokens",
            &manager,
            Some(json!({"name": "x", "role": "admin"}))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // Malformed bearer credentials are 401, not 400 or 500.
    for bad in ["", "sst_nope", &"x".repeat(300)] {
        let a = h
            .get("/api/v1/auth/me", &Auth::Bearer(bad.to_owned()))
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
}

async fn other_accounts_and_other_locations_are_invisible(h: &Harness) {
    let other = h.other_admin().await;
    let locations = h.get("/api/v1/locations", &other).await;
    assert_eq!(locations.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(locations.body["items"][0]["id"], "loc-901");
    for path in [
        "/api/v1/locations/loc-001",
        "/api/v1/locations/loc-001/taps",
        "/api/v1/taps/loc-001%23TAP%2301",
        "/api/v1/devices/SCALE-0001",
        "/api/v1/kegs/keg-fixture-tapped",
        "/api/v1/beers/loc-001%23house-ipa",
        "/api/v1/commands/cmd-fixture-1",
        "/api/v1/users/usr-staff",
    ] {
        let a = h.get(path, &other).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        // Indistinguishable from an id that does not exist at all.
        assert_eq!(a.body["type"], "urn:scalesense:problem:not-found");
    }
    let beers = h.get("/api/v1/beers", &other).await;
    let ids: Vec<&str> = beers.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, ["guinness-draught", "loc-901#their-ale"]);

    // A user limited to loc-002 sees only it.
    let restricted = h.session(&h.fx.acme, "usr-restricted").await;
    let mine = h.get("/api/v1/locations", &restricted).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine.body["items"][0]["id"], "loc-002");
    assert_eq!(
        h.get("/api/v1/locations/loc-001/taps", &restricted)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/api/v1/devices/SCALE-0001", &restricted)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/api/v1/devices/SCALE-0201", &restricted)
            .await
            .status,
        StatusCode::OK
    );
    let beers = h.get("/api/v1/beers", &restricted).await;
    assert!(!beers.body.to_string().contains("house-ipa"));
}

async fn bad_requests_are_problems_naming_the_field(h: &Harness) {
    let manager = h.manager().await;
    let path = "/api/v1/taps/loc-001%23TAP%2305";
    let unknown = h
        .call(
            Method::PATCH,
            path,
            &manager,
            Some(json!({"beer_id": null, "colour": "red"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.content_type(), "application/problem+json");
    assert_eq!(unknown.body["type"], "urn:scalesense:problem:validation");
    assert_eq!(unknown.error_fields(), ["colour"]);

    let wrong_type = h
        .call(Method::PATCH, path, &manager, Some(json!({"beer_id": 7})))
        .await;
    assert_eq!(wrong_type.error_fields(), ["beer_id"]);

    let malformed = h
        .call_raw(
            Method::PATCH,
            path,
            &manager,
            Some(b"{\"beer_id\":".to_vec()),
            "application/json",
            &[],
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);

    let text = h
        .call_raw(
            Method::PATCH,
            path,
            &manager,
            Some(b"{}".to_vec()),
            "text/plain",
            &[],
        )
        .await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = format!("{{\"beer_id\":\"{}\"}}", "x".repeat(70 * 1024));
    let too_big = h
        .call_raw(
            Method::PATCH,
            path,
            &manager,
            Some(huge.into_bytes()),
            "application/json",
            &[],
        )
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big.content_type(), "application/problem+json");

    let bad_query = h.get("/api/v1/locations?limit=0", &manager).await;
    assert_eq!(bad_query.error_fields(), ["limit"]);
    let not_a_number = h.get("/api/v1/locations?limit=ten", &manager).await;
    assert_eq!(not_a_number.error_fields(), ["limit"]);
    let unknown_param = h.get("/api/v1/locations?colour=red", &manager).await;
    assert_eq!(unknown_param.status, StatusCode::UNPROCESSABLE_ENTITY);

    let wrong_method = h
        .call(Method::DELETE, "/api/v1/locations", &manager, None)
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.content_type(), "application/problem+json");
    assert_eq!(wrong_method.headers[header::ALLOW], "GET,HEAD");

    // Ids that cannot exist are 404s; so are unknown routes.
    for p in [
        "/api/v1/taps/loc-001%23TAP%237",
        "/api/v1/taps/%FF",
        "/api/v1/devices/SCALE%2F42",
        "/api/v1/nope",
    ] {
        assert_eq!(
            h.get(p, &manager).await.status,
            StatusCode::NOT_FOUND,
            "{p}"
        );
    }
}

async fn tap_list_pages_and_etags(h: &Harness) {
    let staff = h.staff().await;
    let first = h
        .get("/api/v1/locations/loc-001/taps?limit=10", &staff)
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let items = first.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    assert_eq!(items[0]["id"], "loc-001#TAP#01");
    assert_eq!(first.body["units"], "metric");
    assert_eq!(items[0]["keg_id"], "keg-fixture-tapped");
    assert_eq!(items[0]["device_id"], "SCALE-0001");
    // The last reading: 60 − 35 × 0.25 kg gross.
    assert_eq!(items[0]["weight_kg"], 51.25);
    let lbs = items[0]["weight_lbs"].as_f64().unwrap();
    assert!((lbs - 51.25 / 0.453_592_37).abs() < 1e-9);
    assert!(items[0]["volume_gal"].as_f64().unwrap() > 0.0);
    let mut seen = 10;
    let mut cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let next = h
            .get(
                &format!("/api/v1/locations/loc-001/taps?limit=10&cursor={cursor}"),
                &staff,
            )
            .await;
        seen += next.body["items"].as_array().unwrap().len();
        match next.body["next_cursor"].as_str() {
            Some(c) => c.clone_into(&mut cursor),
            None => break,
        }
    }
    assert_eq!(seen, 24);

    let all = h.get("/api/v1/locations/loc-001/taps", &staff).await;
    let etag = all.headers[header::ETAG].to_str().unwrap().to_owned();
    let again = h
        .call_raw(
            Method::GET,
            "/api/v1/locations/loc-001/taps",
            &staff,
            None,
            "",
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.raw.is_empty());
    let manager = h.manager().await;
    h.call(
        Method::PATCH,
        "/api/v1/taps/loc-001%23TAP%2306",
        &manager,
        Some(json!({"beer_id": "guinness-draught"})),
    )
    .await;
    let changed = h
        .call_raw(
            Method::GET,
            "/api/v1/locations/loc-001/taps",
            &staff,
            None,
            "",
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.headers[header::ETAG].to_str().unwrap(), etag);
}

async fn assigning_beer_and_keg_is_audited(h: &Harness) {
    let manager = h.manager().await;
    let path = "/api/v1/taps/loc-001%23TAP%2310";
    let tapped = h
        .call(
            Method::PATCH,
            path,
            &manager,
            Some(json!({"keg_id": "keg-fixture-new"})),
        )
        .await;
    assert_eq!(tapped.status, StatusCode::OK, "{}", tapped.body);
    assert_eq!(tapped.body["keg_id"], "keg-fixture-new");
    assert_eq!(
        tapped.body["beer_id"], "guinness-draught",
        "the beer follows the keg"
    );
    // Tapping it again elsewhere is a conflict.
    let again = h
        .call(
            Method::PATCH,
            "/api/v1/taps/loc-001%23TAP%2311",
            &manager,
            Some(json!({"keg_id": "keg-fixture-new"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    // A custom beer of another location, and a missing beer, are field errors.
    let foreign = h
        .call(
            Method::PATCH,
            path,
            &manager,
            Some(json!({"beer_id": "loc-901#their-ale"})),
        )
        .await;
    assert_eq!(foreign.error_fields(), ["beer_id"]);
    // Kick it: the tap is free again.
    let kicked = h
        .call(
            Method::PATCH,
            path,
            &manager,
            Some(json!({"keg_id": null, "beer_id": null})),
        )
        .await;
    assert_eq!(kicked.status, StatusCode::OK);
    assert_eq!(kicked.body["keg_id"], Value::Null);
    assert_eq!(kicked.body["beer_id"], Value::Null);
    let keg = h.get("/api/v1/kegs/keg-fixture-new", &manager).await;
    assert_eq!(keg.body["state"], "kicked");

    let audit = h.get("/api/v1/audit?limit=5", &h.admin().await).await;
    let latest = &audit.body["items"][0];
    assert_eq!(latest["action"], "tap.update");
    assert_eq!(latest["entity"], "tap:loc-001#TAP#10");
    assert!(
        latest["actor"]
            .as_str()
            .unwrap()
            .starts_with("user:usr-manager")
    );
    assert_eq!(latest["before"]["keg_id"], "keg-fixture-new");
    assert_eq!(latest["after"]["keg_id"], Value::Null);
    assert_eq!(latest["at"], "2026-03-18T12:00:00Z");
}

async fn commands_are_recorded_published_and_role_checked(h: &Harness) {
    let staff = h.staff().await;
    let path = format!("/api/v1/taps/{TAP1}/command");
    let sent = h
        .call(
            Method::POST,
            &path,
            &staff,
            Some(json!({"command": "identify", "duration_s": 15})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let id = sent.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        sent.headers[header::LOCATION],
        format!("/api/v1/commands/{id}")
    );
    assert_eq!(sent.body["state"], "pending");
    assert_eq!(sent.body["expires_at"], "2026-03-18T12:10:00Z");
    let published = h.sink.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].device.as_str(), "SCALE-0001");
    assert_eq!(published[0].command.id.as_str(), id);
    assert_eq!(published[0].command.params.duration_s, Some(15));
    let polled = h.get(&format!("/api/v1/commands/{id}"), &staff).await;
    assert_eq!(polled.body["command"], "identify");

    // Staff may not calibrate; managers may, with the contract's parameters.
    let calibrate = json!({"command": "calibrate", "known_weight_lbs": 20.0});
    assert_eq!(
        h.call(Method::POST, &path, &staff, Some(calibrate.clone()))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let manager = h.manager().await;
    assert_eq!(
        h.call(Method::POST, &path, &manager, Some(calibrate))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let missing = h
        .call(
            Method::POST,
            &path,
            &manager,
            Some(json!({"command": "calibrate"})),
        )
        .await;
    assert_eq!(missing.error_fields(), ["known_weight_lbs"]);
    let unknown = h
        .call(
            Method::POST,
            &path,
            &manager,
            Some(json!({"command": "format_disk"})),
        )
        .await;
    assert_eq!(unknown.error_fields(), ["command"]);
    // A tap without a scale cannot take a command.
    h.call(
        Method::PATCH,
        "/api/v1/devices/SCALE-0024",
        &manager,
        Some(json!({"tap_id": null})),
    )
    .await;
    let no_scale = h
        .call(
            Method::POST,
            "/api/v1/taps/loc-001%23TAP%2324/command",
            &staff,
            Some(json!({"command": "tare_empty"})),
        )
        .await;
    assert_eq!(no_scale.status, StatusCode::CONFLICT);
    assert_eq!(h.sink.published().len(), 2);
}

async fn history_and_report_follow_the_domain_rules(h: &Harness) {
    let staff = h.staff().await;
    let hist = h
        .get(&format!("/api/v1/taps/{TAP1}/history?range=2h"), &staff)
        .await;
    assert_eq!(hist.status, StatusCode::OK, "{}", hist.body);
    assert_eq!(hist.body["bin_secs"], 300);
    assert_eq!(hist.body["keg_id"], "keg-fixture-tapped");
    let data = hist.body["data"].as_array().unwrap();
    // Two hours of 5-minute readings: 24 bins.
    assert_eq!(data.len(), 24, "{}", hist.body);
    assert_eq!(hist.body["battery_data"].as_array().unwrap().len(), 24);
    assert_eq!(
        h.get(&format!("/api/v1/taps/{TAP1}/history?range=7d"), &staff)
            .await
            .body["bin_secs"],
        3600
    );
    let bad = h
        .get(
            &format!("/api/v1/taps/{TAP1}/history?range=7%20days"),
            &staff,
        )
        .await;
    assert_eq!(bad.error_fields(), ["range"]);
    let long = h
        .get(&format!("/api/v1/taps/{TAP1}/history?range=2y"), &staff)
        .await;
    assert_eq!(long.error_fields(), ["range"]);

    // The tap's forecast is for everyone at the bar; location reports are for managers.
    let staff_report = h.get(&format!("/api/v1/taps/{TAP1}/report"), &staff).await;
    assert_eq!(staff_report.status, StatusCode::OK, "{}", staff_report.body);
    assert_eq!(
        h.get("/api/v1/locations/loc-001/reports/inventory", &staff)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let report = h
        .get(&format!("/api/v1/taps/{TAP1}/report"), &h.manager().await)
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["window_secs"], 21_600);
    let rate = &report.body["pour_rate"];
    assert!(
        rate["litres_per_hour"].as_f64().unwrap() > 0.0,
        "{}",
        report.body
    );
    assert!(rate["hours_remaining"].as_f64().unwrap() > 0.0);
    assert_eq!(report.body["keg"]["keg_id"], "keg-fixture-tapped");
    // A tap without readings: unknown, never a division by zero.
    let quiet = h
        .get("/api/v1/taps/loc-001%23TAP%2309/report", &h.manager().await)
        .await;
    assert_eq!(quiet.body["pour_rate"], Value::Null);
    assert_eq!(quiet.body["keg"], Value::Null);

    let readings = h
        .get("/api/v1/kegs/keg-fixture-tapped/readings?limit=20", &staff)
        .await;
    assert_eq!(readings.body["items"].as_array().unwrap().len(), 20);
    let cursor = readings.body["next_cursor"].as_str().unwrap();
    let rest = h
        .get(
            &format!("/api/v1/kegs/keg-fixture-tapped/readings?limit=20&cursor={cursor}"),
            &staff,
        )
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 16);
    assert_eq!(rest.body["next_cursor"], Value::Null);
    assert_eq!(rest.body["items"][0]["seq"], 20);
}

async fn alerts_acknowledge_by_the_alert_machine(h: &Harness) {
    let staff = h.staff().await;
    let active = h.get("/api/v1/locations/loc-001/alerts", &staff).await;
    assert_eq!(active.body["items"].as_array().unwrap().len(), 2);
    let ack = h
        .call(
            Method::POST,
            "/api/v1/locations/loc-001/alerts/low_keg/loc-001%23TAP%2302/acknowledge",
            &staff,
            None,
        )
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.body);
    assert_eq!(ack.body["state"], "acknowledged");
    assert!(
        ack.body["acknowledged_by"]
            .as_str()
            .unwrap()
            .starts_with("user:usr-staff")
    );
    // Twice changes nothing.
    let twice = h
        .call(
            Method::POST,
            "/api/v1/locations/loc-001/alerts/low_keg/loc-001%23TAP%2302/acknowledge",
            &staff,
            None,
        )
        .await;
    assert_eq!(twice.status, StatusCode::OK);
    // Still in its grace period: nobody was told, nothing to acknowledge.
    let firing = h
        .call(
            Method::POST,
            "/api/v1/locations/loc-001/alerts/low_battery/SCALE-0003/acknowledge",
            &staff,
            None,
        )
        .await;
    assert_eq!(firing.status, StatusCode::CONFLICT);
    let missing = h
        .call(
            Method::POST,
            "/api/v1/locations/loc-001/alerts/low_keg/SCALE-0009/acknowledge",
            &staff,
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let log = h
        .get("/api/v1/locations/loc-001/alerts/history", &staff)
        .await;
    assert_eq!(log.body["items"][0]["state"], "acknowledged");
}

async fn beers_kegs_and_devices(h: &Harness) {
    let manager = h.manager().await;
    let found = h.get("/api/v1/beers?q=stout", &manager).await;
    assert_eq!(found.body["items"][0]["id"], "guinness-draught");
    let beer = h.get("/api/v1/beers/guinness-draught", &manager).await;
    assert_eq!(beer.body["keg_weights"][0]["keg_type"], "half_barrel");
    assert_eq!(beer.body["keg_weights"][0]["source"], "default");

    let created = h
        .call(
            Method::POST,
            "/api/v1/beers",
            &manager,
            Some(json!({"location_id": "loc-001", "name": "Quay Pils", "style": "Pilsner", "abv": 4.9})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let beer_id = created.body["id"].as_str().unwrap().to_owned();
    assert!(beer_id.starts_with("loc-001#quay-pils-"));
    let fetched = h
        .get(
            created.headers[header::LOCATION].to_str().unwrap(),
            &manager,
        )
        .await;
    assert_eq!(fetched.body["name"], "Quay Pils");

    let keg = h
        .call(
            Method::POST,
            "/api/v1/kegs",
            &manager,
            Some(json!({"location_id": "loc-001", "beer_id": beer_id, "keg_type": "sixth_barrel"})),
        )
        .await;
    assert_eq!(keg.status, StatusCode::CREATED, "{}", keg.body);
    assert!(
        keg.body["id"]
            .as_str()
            .unwrap()
            .starts_with("keg-20260318-")
    );
    // Reference weights: 61.0 / 16.5 lb.
    assert!((keg.body["full_lbs"].as_f64().unwrap() - 61.0).abs() < 1e-9);
    assert!((keg.body["empty_lbs"].as_f64().unwrap() - 16.5).abs() < 1e-9);
    let custom = h
        .call(
            Method::POST,
            "/api/v1/kegs",
            &manager,
            Some(json!({"location_id": "loc-001", "beer_id": beer_id, "keg_type": "euro_30l"})),
        )
        .await;
    assert_eq!(custom.error_fields(), ["full_kg"]);
    let keg_path = format!("/api/v1/kegs/{}", keg.body["id"].as_str().unwrap());
    let moved = h
        .call(
            Method::PATCH,
            &keg_path,
            &manager,
            Some(json!({"state": "tapped", "tap_id": "loc-001#TAP#12"})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(moved.body["tap_id"], "loc-001#TAP#12");
    let removed = h
        .call(
            Method::PATCH,
            &keg_path,
            &manager,
            Some(json!({"state": "removed"})),
        )
        .await;
    assert_eq!(removed.body["state"], "removed");
    let back = h
        .call(
            Method::PATCH,
            &keg_path,
            &manager,
            Some(json!({"state": "kicked"})),
        )
        .await;
    assert_eq!(back.status, StatusCode::CONFLICT);
    let list = h
        .get("/api/v1/locations/loc-001/kegs?state=removed", &manager)
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    let admin = h.admin().await;
    let registered = h
        .call(
            Method::POST,
            "/api/v1/devices",
            &admin,
            Some(json!({"id": "SCALE-0777", "location_id": "loc-001"})),
        )
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    let taken = h
        .call(
            Method::POST,
            "/api/v1/devices",
            &admin,
            Some(json!({"id": "SCALE-0777"})),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    let placed = h
        .call(
            Method::PATCH,
            "/api/v1/devices/SCALE-0777",
            &manager,
            Some(json!({"tap_id": "loc-001#TAP#01"})),
        )
        .await;
    assert_eq!(
        placed.status,
        StatusCode::CONFLICT,
        "tap 1 already has a scale"
    );
    let telemetry = h
        .get("/api/v1/devices/SCALE-0001/telemetry", &manager)
        .await;
    assert_eq!(telemetry.body["rssi"], -60);
    let cal = h
        .call(
            Method::POST,
            "/api/v1/devices/SCALE-0001/calibration",
            &manager,
            Some(json!({"scale_factor": 21_500.0, "zero_offset": 8_400, "method": "known_weight", "known_weight_kg": 9.07})),
        )
        .await;
    assert_eq!(cal.status, StatusCode::CREATED, "{}", cal.body);
    let current = h
        .get("/api/v1/devices/SCALE-0001/calibration", &manager)
        .await;
    assert_eq!(current.body["current"]["scale_factor"], 21_500.0);
    assert_eq!(current.body["history"].as_array().unwrap().len(), 1);
}

async fn users_and_tokens_for_admins(h: &Harness) {
    let admin = h.admin().await;
    let created = h
        .call(
            Method::POST,
            "/api/v1/users",
            &admin,
            Some(json!({"email": "New.Bartender@acme.test", "password": "long enough pw", "role": "staff", "allowed_locations": ["loc-002"]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["email"], "new.bartender@acme.test");
    assert!(!created.body.to_string().contains("argon2"));
    let duplicate = h
        .call(
            Method::POST,
            "/api/v1/users",
            &admin,
            Some(json!({"email": "new.bartender@acme.test", "password": "long enough pw", "role": "staff"})),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    let weak = h
        .call(
            Method::POST,
            "/api/v1/users",
            &admin,
            Some(json!({"email": "x@acme.test", "password": "short", "role": "staff", "allowed_locations": ["loc-999"]})),
        )
        .await;
    assert_eq!(weak.error_fields(), ["password"]);
    let nowhere = h
        .call(
            Method::POST,
            "/api/v1/users",
            &admin,
            Some(json!({"email": "y@acme.test", "password": "long enough pw", "role": "staff", "allowed_locations": ["loc-999"]})),
        )
        .await;
    assert_eq!(nowhere.error_fields(), ["allowed_locations.0"]);
    // The new user can log in with the password just set, and sees only loc-002.
    let answer = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            &Auth::None,
            Some(json!({"account": "acme", "email": "new.bartender@acme.test", "password": "long enough pw"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["user"]["allowed_locations"], json!(["loc-002"]));

    // Log a user out everywhere.
    let victim = h.session(&h.fx.acme, "usr-victim").await;
    let revoked = h
        .call(
            Method::DELETE,
            "/api/v1/users/usr-victim/sessions",
            &admin,
            None,
        )
        .await;
    assert_eq!(revoked.body["revoked"], 1);
    assert_eq!(
        h.get("/api/v1/auth/me", &victim).await.status,
        StatusCode::UNAUTHORIZED
    );
    let users = h.get("/api/v1/users?limit=2", &admin).await;
    assert_eq!(users.body["items"].as_array().unwrap().len(), 2);
    assert!(users.body["next_cursor"].is_string());
}

async fn settings_are_checked_by_the_domain(h: &Harness) {
    let manager = h.manager().await;
    let path = "/api/v1/locations/loc-001/settings";
    let before = h.get(path, &manager).await;
    assert_eq!(before.body["thresholds"]["low_keg_warning_pct"], 20.0);
    assert_eq!(before.body["pour_rate"]["window_secs"], 21_600);
    let changed = h
        .call(
            Method::PATCH,
            path,
            &manager,
            Some(json!({"units": "imperial", "thresholds": {"low_keg_warning_pct": 25.0}, "quiet_hours": {"open": "16:00", "close": "02:00"}})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["units"], "imperial");
    assert_eq!(changed.body["thresholds"]["low_keg_warning_pct"], 25.0);
    assert_eq!(changed.body["thresholds"]["low_keg_critical_pct"], 10.0);
    assert_eq!(changed.body["quiet_hours"]["close"], "02:00");
    let inverted = h
        .call(
            Method::PATCH,
            path,
            &manager,
            Some(json!({"thresholds": {"low_keg_critical_pct": 40.0}})),
        )
        .await;
    assert_eq!(inverted.error_fields(), ["thresholds"]);
    let bad_tz = h
        .call(
            Method::PATCH,
            path,
            &manager,
            Some(json!({"time_zone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(bad_tz.error_fields(), ["time_zone"]);
    // Staff may neither read nor change settings.
    assert_eq!(
        h.get(path, &h.staff().await).await.status,
        StatusCode::FORBIDDEN
    );
    let export = h
        .get(
            "/api/v1/locations/loc-001/inventory/export?format=csv",
            &manager,
        )
        .await;
    assert_eq!(export.status, StatusCode::OK, "{:?}", export.body);
    assert!(
        export.body["url"]
            .as_str()
            .unwrap()
            .starts_with("/api/v1/downloads/")
    );
}

async fn latest_audit(h: &Harness, admin: &Auth) -> Value {
    h.get("/api/v1/audit?limit=1", admin).await.body["items"][0].clone()
}

async fn editing_users_and_beers_is_checked_and_audited(h: &Harness) {
    let admin = h.admin().await;
    let manager = h.manager().await;

    // Users: role and locations, each alone, audited with before and after.
    let promoted = h
        .call(
            Method::PATCH,
            "/api/v1/users/usr-victim",
            &admin,
            Some(json!({"role": "manager"})),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
    assert_eq!(promoted.body["role"], "manager");
    assert_eq!(promoted.body["allowed_locations"], Value::Null);
    let line = latest_audit(h, &admin).await;
    assert_eq!(line["action"], "user.update");
    assert_eq!(line["entity"], "user:usr-victim");
    assert_eq!(line["before"]["role"], "staff");
    assert_eq!(line["after"]["role"], "manager");
    let narrowed = h
        .call(
            Method::PATCH,
            "/api/v1/users/usr-victim",
            &admin,
            Some(json!({"allowed_locations": ["loc-002"]})),
        )
        .await;
    assert_eq!(narrowed.body["role"], "manager");
    assert_eq!(narrowed.body["allowed_locations"], json!(["loc-002"]));
    let widened = h
        .call(
            Method::PATCH,
            "/api/v1/users/usr-victim",
            &admin,
            Some(json!({"allowed_locations": null})),
        )
        .await;
    assert_eq!(widened.body["allowed_locations"], Value::Null);
    assert_eq!(
        h.get("/api/v1/users/usr-victim", &admin).await.body["role"],
        "manager"
    );
    // Bad bodies name their field; another account's location is not grantable.
    for (body, field) in [
        (json!({}), "body"),
        (json!({"role": "owner"}), "role"),
        (
            json!({"allowed_locations": ["loc-901"]}),
            "allowed_locations.0",
        ),
        (
            json!({"allowed_locations": ["not an id"]}),
            "allowed_locations.0",
        ),
    ] {
        let answer = h
            .call(
                Method::PATCH,
                "/api/v1/users/usr-victim",
                &admin,
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.body
        );
        if field != "role" {
            assert_eq!(answer.error_fields(), [field], "{body}");
        }
    }
    let unknown = h
        .call(
            Method::PATCH,
            "/api/v1/users/usr-victim",
            &admin,
            Some(json!({"email": "x@acme.test"})),
        )
        .await;
    assert!(unknown.status.is_client_error(), "{}", unknown.body);
    assert_eq!(
        h.get("/api/v1/users/usr-victim", &admin).await.body["email"],
        "victim@acme.test"
    );
    // Beers: a custom beer of the caller's location is editable, field by field.
    let path = "/api/v1/beers/loc-001%23house-ipa";
    let before = h.get(path, &manager).await.body;
    let edited = h
        .call(
            Method::PATCH,
            path,
            &manager,
            Some(json!({"name": "  Hazy House IPA ", "abv": 6.8})),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(edited.body["name"], "Hazy House IPA");
    assert_eq!(edited.body["abv"], 6.8);
    assert_eq!(edited.body["brewery"], before["brewery"]);
    assert_eq!(edited.body["location_id"], "loc-001");
    assert_eq!(h.get(path, &manager).await.body["name"], "Hazy House IPA");
    let line = latest_audit(h, &admin).await;
    assert_eq!(line["action"], "beer.update");
    assert_eq!(line["entity"], "beer:loc-001#house-ipa");
    assert_eq!(line["before"]["name"], before["name"]);
    assert_eq!(line["after"]["name"], "Hazy House IPA");
    assert!(
        line["actor"]
            .as_str()
            .unwrap()
            .starts_with("user:usr-manager")
    );
    // Unknown fields (the location among them) are refused, and so are bad values.
    for body in [
        json!({"location_id": "loc-002"}),
        json!({"colour": "amber"}),
    ] {
        let answer = h
            .call(Method::PATCH, path, &manager, Some(body.clone()))
            .await;
        assert!(answer.status.is_client_error(), "{body}: {}", answer.body);
    }
    for (body, field) in [
        (json!({}), "body"),
        (json!({"abv": 101.0}), "abv"),
        (json!({"specific_gravity": 2.0}), "specific_gravity"),
        (json!({"name": ""}), "name"),
    ] {
        let answer = h
            .call(Method::PATCH, path, &manager, Some(body.clone()))
            .await;
        assert_eq!(answer.error_fields(), [field], "{body}");
    }
    assert_eq!(h.get(path, &manager).await.body["location_id"], "loc-001");
    // A library beer is shared: 409. Another account's beer: 404. Staff: 403.
    let library = h
        .call(
            Method::PATCH,
            "/api/v1/beers/guinness-draught",
            &manager,
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_eq!(library.status, StatusCode::CONFLICT, "{}", library.body);
    let theirs = h
        .call(
            Method::PATCH,
            "/api/v1/beers/loc-901%23their-ale",
            &manager,
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let staff = h
        .call(
            Method::PATCH,
            path,
            &h.staff().await,
            Some(json!({"name": "Staff Ale"})),
        )
        .await;
    assert_eq!(staff.status, StatusCode::FORBIDDEN);
    assert_eq!(h.get(path, &manager).await.body["name"], "Hazy House IPA");
    // The last admin cannot step down; once there is a second admin, they can.
    let alone = h
        .call(
            Method::PATCH,
            "/api/v1/users/usr-admin",
            &admin,
            Some(json!({"role": "manager"})),
        )
        .await;
    assert_eq!(alone.status, StatusCode::CONFLICT, "{}", alone.body);
    assert_eq!(
        h.get("/api/v1/users/usr-admin", &admin).await.body["role"],
        "admin"
    );
    let second = h
        .call(
            Method::PATCH,
            "/api/v1/users/usr-victim",
            &admin,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(second.body["role"], "admin");
    let stepped_down = h
        .call(
            Method::PATCH,
            "/api/v1/users/usr-admin",
            &admin,
            Some(json!({"role": "manager"})),
        )
        .await;
    assert_eq!(stepped_down.status, StatusCode::OK, "{}", stepped_down.body);
    assert_eq!(stepped_down.body["role"], "manager");
}
