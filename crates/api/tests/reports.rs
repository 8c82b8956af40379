//! Reports over HTTP: the location reports answer managers with the fixture's taps, and an
//! inventory export answers with a signed link that downloads the file without credentials,
//! until it expires; an expired, tampered or unsigned link is `403` problem+json.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Auth, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_reports_answer_in_the_locations_terms() {
    let h = Harness::sqlite().await;
    let manager = h.manager().await;
    let inv = h
        .get("/api/v1/locations/loc-001/reports/inventory", &manager)
        .await;
    assert_eq!(inv.status, 200, "{:?}", inv.body);
    assert_eq!(inv.body["location_id"], "loc-001");
    assert!(!inv.body["taps"].as_array().unwrap().is_empty());
    assert_eq!(
        inv.body["pour_by_hour"]["hours"].as_array().unwrap().len(),
        24
    );
    for report in ["pour-by-hour", "styles", "lifespans", "kicked", "battery"] {
        let a = h
            .get(
                &format!("/api/v1/locations/loc-001/reports/{report}"),
                &manager,
            )
            .await;
        assert_eq!(a.status, 200, "{report}: {:?}", a.body);
        assert!(a.body["time_zone"].is_string(), "{report}");
    }
    let staff = h.staff().await;
    let refused = h
        .get("/api/v1/locations/loc-001/reports/styles", &staff)
        .await;
    assert_eq!(refused.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_links_download_until_they_expire_and_refuse_tampering() {
    let h = Harness::sqlite().await;
    let manager = h.manager().await;
    let csv = h
        .get(
            "/api/v1/locations/loc-001/inventory/export?format=csv",
            &manager,
        )
        .await;
    assert_eq!(csv.status, 200, "{:?}", csv.body);
    let url = csv.body["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("/api/v1/downloads/inventory-loc-001-"),
        "{url}"
    );
    assert_eq!(csv.body["format"], "csv");

    let file = h.get(&url, &Auth::None).await;
    assert_eq!(file.status, 200);
    assert!(
        file.content_type().starts_with("text/csv"),
        "{}",
        file.content_type()
    );
    let text = String::from_utf8(file.raw.clone()).unwrap();
    assert!(text.starts_with("tap_number,tap_name,"), "{text}");
    assert!(
        file.headers[axum::http::header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );

    let pdf = h
        .get(
            "/api/v1/locations/loc-001/inventory/export?format=pdf",
            &manager,
        )
        .await;
    let pdf_url = pdf.body["url"].as_str().unwrap().to_owned();
    let got = h.get(&pdf_url, &Auth::None).await;
    assert_eq!(got.content_type(), "application/pdf");
    assert!(got.raw.starts_with(b"%PDF-"));

    let refused = |a: &support::Answer| {
        a.status == 403
            && a.content_type() == "application/problem+json"
            && a.body["type"] == "urn:scalesense:problem:download-link"
    };
    let tampered = url.replace("expires=", "expires=9");
    assert!(
        refused(&h.get(&tampered, &Auth::None).await),
        "longer expiry"
    );
    let other_file = url.replace(".csv?", ".pdf?");
    assert!(
        refused(&h.get(&other_file, &Auth::None).await),
        "other file"
    );
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert!(
        refused(&h.get(&unsigned, &Auth::None).await),
        "no signature"
    );
    let bad = h.get(&format!("{url}&extra=1"), &Auth::None).await;
    assert_eq!(
        bad.status, 422,
        "unknown query keys are refused: {:?}",
        bad.body
    );

    h.clock.advance(Duration::from_mins(15));
    let expired = h.get(&url, &Auth::None).await;
    assert!(refused(&expired), "{:?}", expired.body);
    assert!(expired.body["detail"].as_str().unwrap().contains("expired"));

    let bad_format = h
        .get(
            "/api/v1/locations/loc-001/inventory/export?format=xls",
            &manager,
        )
        .await;
    assert_eq!(bad_format.status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_export_time_is_a_location_setting() {
    let h = Harness::sqlite().await;
    let manager = h.manager().await;
    let path = "/api/v1/locations/loc-001/settings";
    assert_eq!(h.get(path, &manager).await.body["export_time"], "10:00");
    let set = h
        .call(
            axum::http::Method::PATCH,
            path,
            &manager,
            Some(serde_json::json!({"export_time": "07:30"})),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.body["export_time"], "07:30");
    let off = h
        .call(
            axum::http::Method::PATCH,
            path,
            &manager,
            Some(serde_json::json!({"export_time": "off"})),
        )
        .await;
    assert_eq!(off.body["export_time"], "off");
    let bad = h
        .call(
            axum::http::Method::PATCH,
            path,
            &manager,
            Some(serde_json::json!({"export_time": "25:00"})),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.error_fields(), ["export_time"]);
}
