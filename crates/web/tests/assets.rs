//! The dashboard's files over HTTP, through the router: content types, caching, compression,
//! the page's security policy, and nothing served that is not part of the app.
#![allow(clippy::unwrap_used)]

use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

async fn get(path: &str, headers: &[(header::HeaderName, &str)]) -> Answer {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = scalesense_web::assets::router()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn asset(path: &str) -> String {
    format!("/assets/{}/{path}", scalesense_web::assets::version())
}

#[tokio::test]
async fn the_page_is_html_revalidated_and_locked_down() {
    let page = get("/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header(header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_eq!(page.header(header::CACHE_CONTROL), "no-cache");
    assert_eq!(page.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    let csp = page.header(header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text();
    assert!(
        html.contains(&asset("app/main.js")),
        "the page loads this version's app"
    );
    assert!(
        html.contains(r#""view_taps":"staff""#),
        "the permission matrix is in the page"
    );
    assert_eq!(get("/index.html", &[]).await.body, page.body);
}

#[tokio::test]
async fn a_revalidation_with_the_etag_is_not_modified() {
    let page = get("/", &[]).await;
    let etag = page.header(header::ETAG).to_owned();
    assert!(etag.starts_with('"'), "{etag}");
    let again = get("/", &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    let changed = get("/", &[(header::IF_NONE_MATCH, "\"something-else\"")]).await;
    assert_eq!(changed.status, StatusCode::OK);
}

#[tokio::test]
async fn text_is_gzipped_for_clients_that_accept_it() {
    let plain = get(&asset("app/main.js"), &[]).await;
    let gzipped = get(
        &asset("app/main.js"),
        &[(header::ACCEPT_ENCODING, "gzip, br")],
    )
    .await;
    assert_eq!(plain.header(header::CONTENT_ENCODING), "");
    assert_eq!(gzipped.header(header::CONTENT_ENCODING), "gzip");
    assert_eq!(gzipped.header(header::VARY), "accept-encoding");
    assert_ne!(
        plain.header(header::ETAG),
        gzipped.header(header::ETAG),
        "each encoding has its own ETag"
    );
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&gzipped.body[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, plain.body);
    assert!(gzipped.body.len() < plain.body.len());
    // A PNG is already compressed: sent as it is.
    let icon = get(
        &asset("icons/icon-192.png"),
        &[(header::ACCEPT_ENCODING, "gzip")],
    )
    .await;
    assert_eq!(icon.header(header::CONTENT_TYPE), "image/png");
    assert_eq!(icon.header(header::CONTENT_ENCODING), "");
    assert_eq!(&icon.body[..4], b"\x89PNG");
}

#[tokio::test]
async fn versioned_files_are_immutable_and_others_revalidate() {
    let module = get(&asset("vendor/preact/preact.mjs"), &[]).await;
    assert_eq!(module.status, StatusCode::OK);
    assert_eq!(
        module.header(header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        module.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    let old = get("/assets/0123456789ab/vendor/preact/preact.mjs", &[]).await;
    assert_eq!(
        old.status,
        StatusCode::OK,
        "an old page still gets today's file"
    );
    assert_eq!(old.header(header::CACHE_CONTROL), "no-cache");
    let css = get(&asset("styles/app.css"), &[]).await;
    assert_eq!(css.header(header::CONTENT_TYPE), "text/css; charset=utf-8");
}

#[tokio::test]
async fn the_service_worker_and_manifest_have_their_types() {
    let sw = get("/sw.js", &[]).await;
    assert_eq!(
        sw.header(header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(sw.header(header::CACHE_CONTROL), "no-cache");
    let text = sw.text();
    assert!(text.contains(scalesense_web::assets::version()));
    assert!(
        text.contains(&asset("app/main.js")),
        "the app is kept for offline use"
    );
    assert!(!text.contains(".map\""), "source maps are not kept offline");
    let manifest = get("/manifest.webmanifest", &[]).await;
    assert_eq!(
        manifest.header(header::CONTENT_TYPE),
        "application/manifest+json"
    );
    let json: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    let icons = json["icons"].as_array().unwrap();
    assert!(icons.iter().any(|i| i["sizes"] == "512x512"));
    for icon in icons {
        let src = icon["src"].as_str().unwrap();
        assert_eq!(get(src, &[]).await.status, StatusCode::OK, "{src}");
    }
}

#[tokio::test]
async fn nothing_outside_the_app_is_served() {
    for path in [
        asset("vendor/README"),
        asset("vendor/preact/LICENSE"),
        asset("e2e/package.json"),
        asset("tools/make-icons.mjs"),
        asset("../Cargo.toml"),
        asset("index.html"),
        asset("app/does-not-exist.js"),
    ] {
        assert_eq!(
            get(&path, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}
