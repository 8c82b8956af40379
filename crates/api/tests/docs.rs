//! The OpenAPI document and the docs page are served from the binary, without credentials.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::{Method, StatusCode, header};
use support::{Auth, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_and_docs_page_are_served() {
    let h = Harness::sqlite().await;
    let doc = h.get("/api/v1/openapi.json", &Auth::None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    assert!(doc.body["paths"]["/api/v1/taps/{id}/command"]["post"].is_object());

    let page = h.get("/api/docs/", &Auth::None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8(page.raw.clone()).unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Assets are embedded: no CDN.
    assert!(!html.contains("https://"), "{html}");
    let config = h.get("/api/docs/swagger-initializer.js", &Auth::None).await;
    assert_eq!(config.status, StatusCode::OK);
    assert!(
        String::from_utf8(config.raw)
            .unwrap()
            .contains("/api/v1/openapi.json")
    );
    let bundle = h
        .call_raw(
            Method::GET,
            "/api/docs/swagger-ui-bundle.js",
            &Auth::None,
            None,
            "",
            &[],
        )
        .await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(bundle.raw.len() > 100_000);
    assert!(
        bundle.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
}
