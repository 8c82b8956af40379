//! Property tests through the router: any id in a path and any query string answers a client
//! error or a success, never a server error, and every error is problem+json; every valid tap id
//! round-trips through its percent-encoded path.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{Answer, Auth, Harness};

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const ID_ROUTES: [&str; 12] = [
    "/api/v1/locations/{}",
    "/api/v1/locations/{}/taps",
    "/api/v1/locations/{}/alerts/history",
    "/api/v1/taps/{}",
    "/api/v1/taps/{}/history",
    "/api/v1/beers/{}",
    "/api/v1/kegs/{}",
    "/api/v1/kegs/{}/readings",
    "/api/v1/devices/{}",
    "/api/v1/devices/{}/calibration",
    "/api/v1/commands/{}",
    "/api/v1/users/{}",
];

const QUERY_ROUTES: [&str; 7] = [
    "/api/v1/locations",
    "/api/v1/locations/loc-001/taps",
    "/api/v1/taps/loc-001%23TAP%2301/history",
    "/api/v1/beers",
    "/api/v1/kegs/keg-fixture-tapped/readings",
    "/api/v1/locations/loc-001/kegs",
    "/api/v1/audit",
];

const PARAMS: [&str; 9] = [
    "range",
    "limit",
    "cursor",
    "q",
    "start",
    "end",
    "state",
    "location_id",
    "format",
];

fn check(answer: &Answer, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        answer.status.is_success() || answer.status.is_client_error(),
        "{what}: {}",
        answer.status
    );
    if !answer.status.is_success() {
        prop_assert_eq!(
            answer.content_type(),
            "application/problem+json",
            "{}",
            what
        );
        prop_assert!(
            answer.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:scalesense:problem:"))
        );
    }
    Ok(())
}

fn setup() -> (tokio::runtime::Runtime, Harness, Auth) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::sqlite());
    let admin = rt.block_on(h.admin());
    (rt, h, admin)
}

#[test]
fn any_id_in_a_path_is_a_clean_answer() {
    let (rt, h, admin) = setup();
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&("\\PC{0,48}", 0..ID_ROUTES.len()), |(id, i)| {
            let path = ID_ROUTES[i].replace("{}", &encode(&id));
            let answer = rt.block_on(h.get(&path, &admin));
            check(&answer, &path)
        })
        .unwrap();
}

#[test]
fn any_query_string_is_a_clean_answer() {
    let (rt, h, admin) = setup();
    let param = prop_oneof![
        (0..PARAMS.len()).prop_map(|i| PARAMS[i].to_owned()),
        "\\PC{0,8}",
    ];
    let pairs = proptest::collection::vec((param, "\\PC{0,24}"), 0..4);
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&(pairs, 0..QUERY_ROUTES.len()), |(pairs, i)| {
            let query: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            let path = format!("{}?{}", QUERY_ROUTES[i], query.join("&"));
            let answer = rt.block_on(h.get(&path, &admin));
            check(&answer, &path)
        })
        .unwrap();
}

#[test]
fn valid_tap_ids_round_trip_through_the_path() {
    let (rt, h, admin) = setup();
    let mut runner = TestRunner::new(Config::with_cases(64));
    runner
        .run(&(1u16..=24, prop::bool::ANY), |(n, lower_hex)| {
            let id = format!("loc-001#TAP#{n:02}");
            let mut path = format!("/api/v1/taps/{}", encode(&id));
            if lower_hex {
                path = path.replace("%23", "%23".to_lowercase().as_str());
            }
            let answer = rt.block_on(h.get(&path, &admin));
            prop_assert_eq!(answer.status, StatusCode::OK);
            prop_assert_eq!(answer.body["id"].as_str(), Some(id.as_str()));
            prop_assert_eq!(answer.body["number"].as_u64(), Some(u64::from(n)));
            Ok(())
        })
        .unwrap();
}
