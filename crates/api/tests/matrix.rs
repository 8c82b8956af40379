//! The permission matrix, generated: every route × {staff, manager, admin, another account's
//! admin, no credentials, expired session, revoked token}, every cell asserted.
//!
//! Each route names the domain [`Action`] it needs; the expected answer for each role comes from
//! `scalesense_domain::roles::permits`, the one matrix. Another account's admin gets `404` for
//! anything of this account (or success for routes about their own account); missing, expired
//! and revoked credentials get `401`. Writes that change state get a fresh target per request so
//! that every cell tests authorisation, not a leftover conflict.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod support;

use axum::http::{Method, StatusCode};
use scalesense_api::auth::command_action;
use scalesense_domain::roles::{Action, Role, permits};
use scalesense_proto::CommandName;
use scalesense_store::{KegId, NewKeg, Role as StoreRole};
use serde_json::{Value, json};
use support::fixture::T0;
use support::{Auth, Harness};

/// What another account's admin gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Other {
    /// The resource is this account's: `404`.
    NotFound,
    /// The route is about the caller's own account: the success status.
    Own,
}

/// A target that must be fresh for every request.
#[derive(Debug, Clone, Copy)]
enum Fresh {
    None,
    /// `{keg}` in the path: a new keg in state `created`.
    Keg,
    /// `{n}` in the path or body: a unique number.
    Unique,
    /// `{token}` in the path: a new live token.
    Token,
    /// `{channel}` in the path: a new e-mail channel of `loc-001`.
    Channel,
}

struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    /// `None`: any authenticated caller.
    action: Option<Action>,
    ok: StatusCode,
    other: Other,
    fresh: Fresh,
}

fn route(
    method: Method,
    path: &'static str,
    action: Option<Action>,
    ok: u16,
    other: Other,
) -> Route {
    Route {
        method,
        path,
        body: None,
        action,
        ok: StatusCode::from_u16(ok).unwrap(),
        other,
        fresh: Fresh::None,
    }
}

impl Route {
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn fresh(mut self, fresh: Fresh) -> Self {
        self.fresh = fresh;
        self
    }
}

fn routes() -> Vec<Route> {
    use Other::{NotFound, Own};
    let (get, post, patch, delete) = (Method::GET, Method::POST, Method::PATCH, Method::DELETE);
    let tap1 = "/api/v1/taps/loc-001%23TAP%2301";
    let mut all = vec![
        route(post.clone(), "/api/v1/auth/logout", None, 204, Own),
        route(get.clone(), "/api/v1/auth/me", None, 200, Own),
        route(get.clone(), "/api/v1/locations", Some(Action::ViewTaps), 200, Own),
        route(get.clone(), "/api/v1/locations/loc-001", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/settings", Some(Action::ManageSettings), 200, NotFound),
        route(patch.clone(), "/api/v1/locations/loc-001/settings", Some(Action::ManageSettings), 200, NotFound)
            .body(json!({"name": "Acme Quay"})),
        route(get.clone(), "/api/v1/locations/loc-001/taps", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/kegs", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/devices", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/alerts", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/alerts/history", Some(Action::ViewTaps), 200, NotFound),
        route(post.clone(), "/api/v1/locations/loc-001/alerts/low_keg/loc-001%23TAP%2302/acknowledge", Some(Action::AcknowledgeAlert), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/inventory/export?format=csv", Some(Action::ViewReports), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/reports/inventory", Some(Action::ViewReports), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/reports/pour-by-hour", Some(Action::ViewReports), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/reports/styles", Some(Action::ViewReports), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/reports/lifespans", Some(Action::ViewReports), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/reports/kicked", Some(Action::ViewReports), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/reports/battery", Some(Action::ViewReports), 200, NotFound),
        route(get.clone(), tap1, Some(Action::ViewTaps), 200, NotFound),
        route(patch.clone(), "/api/v1/taps/loc-001%23TAP%2305", Some(Action::AssignBeerKeg), 200, NotFound)
            .body(json!({"beer_id": "guinness-draught"})),
        route(get.clone(), "/api/v1/taps/loc-001%23TAP%2301/history?range=2h", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/taps/loc-001%23TAP%2301/report", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/commands/cmd-fixture-1", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/beers?q=a", Some(Action::ViewTaps), 200, Own),
        route(get.clone(), "/api/v1/beers/loc-001%23house-ipa", Some(Action::ViewTaps), 200, NotFound),
        route(patch.clone(), "/api/v1/beers/loc-001%23house-ipa", Some(Action::ManageBeers), 200, NotFound)
            .body(json!({"style": "IPA"})),
        route(post.clone(), "/api/v1/beers", Some(Action::ManageBeers), 201, NotFound)
            .body(json!({"location_id": "loc-001", "name": "Matrix Ale", "abv": 5.0})),
        route(post.clone(), "/api/v1/kegs", Some(Action::ManageKegs), 201, NotFound)
            .body(json!({"location_id": "loc-001", "beer_id": "guinness-draught", "keg_type": "half_barrel"})),
        route(get.clone(), "/api/v1/kegs/keg-fixture-tapped", Some(Action::ViewTaps), 200, NotFound),
        route(patch.clone(), "/api/v1/kegs/{keg}", Some(Action::ManageKegs), 200, NotFound)
            .body(json!({"state": "removed"}))
            .fresh(Fresh::Keg),
        route(get.clone(), "/api/v1/kegs/keg-fixture-tapped/readings", Some(Action::ViewTaps), 200, NotFound),
        route(post.clone(), "/api/v1/devices", Some(Action::RegisterDevice), 201, NotFound)
            .body(json!({"id": "MATRIX-{n}", "location_id": "loc-001"}))
            .fresh(Fresh::Unique),
        route(get.clone(), "/api/v1/devices/SCALE-0001", Some(Action::ViewTaps), 200, NotFound),
        route(patch.clone(), "/api/v1/devices/SCALE-0030", Some(Action::ManageDevices), 200, NotFound)
            .body(json!({"tap_id": null})),
        route(get.clone(), "/api/v1/devices/SCALE-0001/telemetry", Some(Action::ViewTaps), 200, NotFound),
        route(get.clone(), "/api/v1/devices/SCALE-0001/calibration", Some(Action::ViewTaps), 200, NotFound),
        route(post.clone(), "/api/v1/devices/SCALE-0001/calibration", Some(Action::Calibrate), 201, NotFound)
            .body(json!({"scale_factor": 21000.0, "zero_offset": 100, "method": "known_weight"})),
        route(get.clone(), "/api/v1/users", Some(Action::ManageUsers), 200, Own),
        route(post.clone(), "/api/v1/users", Some(Action::ManageUsers), 201, Own)
            .body(json!({"email": "matrix-{n}@example.test", "password": "long enough pw", "role": "staff"}))
            .fresh(Fresh::Unique),
        route(get.clone(), "/api/v1/users/usr-victim", Some(Action::ManageUsers), 200, NotFound),
        route(patch.clone(), "/api/v1/users/usr-victim", Some(Action::ManageUsers), 200, NotFound)
            .body(json!({"role": "staff"})),
        route(delete.clone(), "/api/v1/users/usr-victim/sessions", Some(Action::ManageUsers), 200, NotFound),
        route(get.clone(), "/api/v1/tokens", Some(Action::ManageTokens), 200, Own),
        route(post.clone(), "/api/v1/tokens", Some(Action::ManageTokens), 201, Own)
            .body(json!({"name": "matrix", "role": "staff"})),
        route(delete.clone(), "/api/v1/tokens/{token}", Some(Action::ManageTokens), 200, NotFound)
            .fresh(Fresh::Token),
        route(get.clone(), "/api/v1/locations/loc-001/channels", Some(Action::ManageSettings), 200, NotFound),
        route(get.clone(), "/api/v1/locations/loc-001/notifications", Some(Action::ManageSettings), 200, NotFound),
        route(post.clone(), "/api/v1/channels", Some(Action::ManageSettings), 201, NotFound)
            .body(json!({"location_id": "loc-001", "kind": "email", "target": "matrix@bar.example"})),
        route(patch.clone(), "/api/v1/channels/ch-matrix", Some(Action::ManageSettings), 200, NotFound)
            .body(json!({"enabled": true})),
        route(delete, "/api/v1/channels/{channel}", Some(Action::ManageSettings), 204, NotFound)
            .fresh(Fresh::Channel),
        // The matrix's state has no notifier: an authorised caller gets 503, after the checks.
        route(post.clone(), "/api/v1/channels/ch-matrix/test", Some(Action::ManageSettings), 503, NotFound),
        route(get, "/api/v1/audit", Some(Action::ViewAuditLog), 200, Own),
    ];
    // One row per command: the action depends on which command.
    for name in CommandName::ALL {
        let body = match name {
            CommandName::Calibrate => json!({"command": name.as_str(), "known_weight_lbs": 20.0}),
            CommandName::SetConfig => json!({"command": name.as_str(), "interval_s": 60}),
            _ => json!({"command": name.as_str()}),
        };
        all.push(
            route(
                post.clone(),
                "/api/v1/taps/loc-001%23TAP%2301/command",
                Some(command_action(name)),
                202,
                NotFound,
            )
            .body(body),
        );
    }
    all
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Role(Role),
    OtherAdmin,
    Nobody,
    Expired,
    Revoked,
}

const WHO: [Who; 7] = [
    Who::Role(Role::Staff),
    Who::Role(Role::Manager),
    Who::Role(Role::Admin),
    Who::OtherAdmin,
    Who::Nobody,
    Who::Expired,
    Who::Revoked,
];

fn expected(r: &Route, who: Who) -> StatusCode {
    match who {
        Who::Nobody | Who::Expired | Who::Revoked => StatusCode::UNAUTHORIZED,
        Who::OtherAdmin => match r.other {
            Other::Own => r.ok,
            Other::NotFound => StatusCode::NOT_FOUND,
        },
        Who::Role(role) => match r.action {
            Some(action) if !permits(role, action) => StatusCode::FORBIDDEN,
            _ => r.ok,
        },
    }
}

async fn auth_for(h: &Harness, who: Who) -> Auth {
    match who {
        Who::Role(Role::Staff) => h.staff().await,
        Who::Role(Role::Manager) => h.manager().await,
        Who::Role(Role::Admin) => h.admin().await,
        Who::OtherAdmin => h.other_admin().await,
        Who::Nobody => Auth::None,
        Who::Expired => h.expired_session(&h.fx.acme, "usr-admin").await,
        Who::Revoked => h.token(&h.fx.acme, StoreRole::Admin, true).await,
    }
}

/// The path and body of one request, with fresh targets filled in.
async fn prepare(h: &Harness, r: &Route, n: usize) -> (String, Option<Value>) {
    let mut path = r.path.to_owned();
    let mut body = r.body.clone();
    match r.fresh {
        Fresh::None => {}
        Fresh::Unique => {
            let text = body.map(|b| b.to_string().replace("{n}", &n.to_string()));
            body = text.map(|t| serde_json::from_str(&t).unwrap());
        }
        Fresh::Keg => {
            let id = KegId::try_from(format!("keg-matrix-{n}").as_str()).unwrap();
            h.store
                .create_keg(
                    &h.fx.acme,
                    &NewKeg {
                        id: id.clone(),
                        location_id: h.fx.loc.clone(),
                        beer_id: scalesense_store::BeerId::try_from("guinness-draught").unwrap(),
                        keg_type: "half_barrel".into(),
                        full_kg: 73.0,
                        empty_kg: 13.0,
                        specific_gravity: 1.0,
                        created_at: T0,
                    },
                )
                .await
                .unwrap();
            path = path.replace("{keg}", id.as_str());
        }
        Fresh::Channel => {
            let id = format!("ch-matrix-{n}");
            create_channel(h, &id).await;
            path = path.replace("{channel}", &id);
        }
        Fresh::Token => {
            let secret = scalesense_api::auth::secrets::new_api_token();
            let id = format!("tok-matrix-{n}");
            h.store
                .create_api_token(
                    &h.fx.acme,
                    &scalesense_store::NewApiToken {
                        id: scalesense_store::RecordId::try_from(id.as_str()).unwrap(),
                        token_hash: scalesense_api::auth::secrets::token_hash(&secret),
                        name: "victim".into(),
                        role: StoreRole::Staff,
                        created_at: T0,
                    },
                )
                .await
                .unwrap();
            path = path.replace("{token}", &id);
        }
    }
    (path, body)
}

async fn create_channel(h: &Harness, id: &str) {
    h.store
        .create_channel(
            &h.fx.acme,
            &scalesense_store::NewChannel {
                id: scalesense_store::RecordId::try_from(id).unwrap(),
                location_id: Some(h.fx.loc.clone()),
                kind: scalesense_store::ChannelKind::Email,
                target: "bar@acme.example".into(),
                settings: json!({}),
                enabled: true,
            },
        )
        .await
        .unwrap();
}

async fn run_matrix(h: &Harness) {
    create_channel(h, "ch-matrix").await;
    // The alert must be active for acknowledgements to succeed (the fixture's is).
    let mut failures = Vec::new();
    let mut cells = 0;
    let mut n = 0;
    for r in routes() {
        for who in WHO {
            n += 1;
            let (path, body) = prepare(h, &r, n).await;
            let auth = auth_for(h, who).await;
            let answer = h.call(r.method.clone(), &path, &auth, body).await;
            let want = expected(&r, who);
            cells += 1;
            if answer.status != want {
                failures.push(format!(
                    "{} {path} as {who:?}: got {}, want {want}: {}",
                    r.method, answer.status, answer.body
                ));
            }
            if !answer.status.is_success() {
                assert_eq!(
                    answer.content_type(),
                    "application/problem+json",
                    "{} {path} as {who:?}",
                    r.method
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cells, routes().len() * WHO.len());
}

/// Every route of the router is in the matrix, and every OpenAPI operation too.
#[test]
fn matrix_covers_every_documented_operation() {
    let doc = serde_json::to_value(scalesense_api::openapi::document()).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let normalise = |p: &str| -> String {
        let p = p.split('?').next().unwrap();
        p.split('/')
            .map(|seg| {
                if seg.starts_with('{')
                    || seg.contains('-')
                    || seg.contains('%')
                    || seg == "low_keg"
                {
                    "*".to_owned()
                } else {
                    seg.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let covered: Vec<(String, String)> = routes()
        .iter()
        .map(|r| (r.method.to_string(), normalise(r.path)))
        .collect();
    for (method, path) in &documented {
        if path == "/api/v1/auth/login" {
            continue; // public: tested in tests/api.rs
        }
        if path == "/api/v1/downloads/{file}" {
            continue; // the signed link is the credential: tested in tests/reports.rs
        }
        assert!(
            covered.contains(&(method.clone(), normalise(path))),
            "{method} {path} is documented but not in the matrix"
        );
    }
    assert_eq!(documented.len(), 56);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_permission_matrix() {
    let h = Harness::sqlite().await;
    run_matrix(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_permission_matrix() {
    if let Some(h) = Harness::postgres().await {
        run_matrix(&h).await;
    }
}
