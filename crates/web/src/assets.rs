//! The dashboard's files: `web/` embedded in the binary at build time (also in debug builds, so
//! any copy of the binary serves the same files and nothing is read from disk at run time).
//!
//! Every file the app loads lives under `/assets/{version}/…`, where `version` is a digest of
//! all embedded files: those URLs never change meaning, so they are cached for a year
//! (`immutable`). Only the entry points keep stable URLs and are revalidated on every load
//! (`no-cache` with an `ETag`): `/` (the page, which names the current version), `/sw.js` (the
//! service worker) and `/manifest.webmanifest`. Those three are templates: `{{BASE}}` becomes
//! `/assets/{version}/`, `{{VERSION}}` the version, `{{SHELL}}` the JSON list of URLs the
//! service worker keeps for offline use, `{{PERMISSIONS}}` the domain's permission matrix.
//!
//! Text files are gzipped once, on first use, and sent compressed to clients that accept it.
//! This module must never serve a file outside the embedded set, and never let a page run a
//! script that is not one of these files (the page's `Content-Security-Policy` allows exactly
//! the files and the inline import map, by hash).

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use rust_embed::RustEmbed;
use scalesense_domain::roles::Action;
use sha2::{Digest, Sha256};

/// The files of `web/` that are served; `web/e2e` (browser tests), `web/vendor/README` and the
/// vendored packages' `LICENSE` files are not.
#[derive(RustEmbed)]
#[folder = "../../web/"]
#[include = "index.html"]
#[include = "sw.js"]
#[include = "manifest.webmanifest"]
#[include = "app/**"]
#[include = "styles/**"]
#[include = "vendor/**"]
#[include = "icons/**"]
#[exclude = "vendor/README"]
#[exclude = "vendor/*/LICENSE"]
struct Files;

/// The entry points: templates served at fixed URLs.
const INDEX: &str = "index.html";
const SERVICE_WORKER: &str = "sw.js";
const MANIFEST: &str = "manifest.webmanifest";

/// Long-lived caching for versioned URLs.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Revalidate every time (with the `ETag`, so an unchanged file costs a `304`).
const REVALIDATE: &str = "no-cache";

/// One file ready to send.
#[derive(Debug)]
struct Asset {
    body: Bytes,
    gzip: Option<Bytes>,
    content_type: &'static str,
    /// Hex digest of the body; the `ETag` is derived from it per encoding.
    digest: String,
}

impl Asset {
    fn new(path: &str, body: Bytes) -> Self {
        let content_type = content_type(path);
        let digest = hex(&Sha256::digest(&body)[..12]);
        let gzip = compressible(content_type)
            .then(|| gzip(&body))
            .flatten()
            .filter(|gz| gz.len() * 10 < body.len() * 9);
        Self {
            body,
            gzip,
            content_type,
            digest,
        }
    }

    fn etag(&self, gzipped: bool) -> String {
        if gzipped {
            format!("\"{}-gz\"", self.digest)
        } else {
            format!("\"{}\"", self.digest)
        }
    }
}

/// Everything served, built once on first use.
#[derive(Debug)]
struct Site {
    version: String,
    /// Files under `/assets/{version}/`, by path relative to `web/`.
    assets: HashMap<String, Asset>,
    index: Asset,
    service_worker: Asset,
    manifest: Asset,
    /// The page's `Content-Security-Policy`.
    csp: HeaderValue,
}

static SITE: LazyLock<Site> = LazyLock::new(Site::build);

impl Site {
    fn build() -> Self {
        let mut paths: Vec<String> = Files::iter().map(std::borrow::Cow::into_owned).collect();
        paths.sort();
        let mut version = Sha256::new();
        let mut assets = HashMap::new();
        let mut templates = HashMap::new();
        for path in paths {
            let Some(file) = Files::get(&path) else {
                continue;
            };
            version.update(path.as_bytes());
            version.update(file.metadata.sha256_hash());
            let body = match file.data {
                std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
                std::borrow::Cow::Owned(v) => Bytes::from(v),
            };
            if matches!(path.as_str(), INDEX | SERVICE_WORKER | MANIFEST) {
                templates.insert(path, body);
            } else {
                assets.insert(path, body);
            }
        }
        let version = hex(&version.finalize()[..6]);
        let base = format!("/assets/{version}/");
        let mut shell: Vec<String> = vec!["/".into(), format!("/{MANIFEST}")];
        let mut offline: Vec<&String> = assets.keys().filter(|p| !is_source_map(p)).collect();
        offline.sort();
        shell.extend(offline.into_iter().map(|p| format!("{base}{p}")));
        let shell = serde_json::to_string(&shell).unwrap_or_else(|_| "[]".into());
        let permissions = permissions_json();
        let render = |name: &str| {
            let raw = templates.get(name).map_or(&b""[..], |b| &b[..]);
            String::from_utf8_lossy(raw)
                .replace("{{BASE}}", &base)
                .replace("{{VERSION}}", &version)
                .replace("{{SHELL}}", &shell)
                .replace("{{PERMISSIONS}}", &permissions)
        };
        let index = render(INDEX);
        let csp = HeaderValue::from_str(&content_security_policy(&index))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
        Self {
            index: Asset::new(INDEX, Bytes::from(index)),
            service_worker: Asset::new(SERVICE_WORKER, Bytes::from(render(SERVICE_WORKER))),
            manifest: Asset::new(MANIFEST, Bytes::from(render(MANIFEST))),
            assets: assets
                .into_iter()
                .map(|(path, body)| {
                    let asset = Asset::new(&path, body);
                    (path, asset)
                })
                .collect(),
            version,
            csp,
        }
    }
}

/// The version in asset URLs: changes whenever any embedded file does.
pub fn version() -> &'static str {
    &SITE.version
}

/// The dashboard's routes: `/`, `/index.html`, `/sw.js`, `/manifest.webmanifest` and
/// `/assets/{version}/{*path}`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/sw.js", get(service_worker))
        .route("/manifest.webmanifest", get(manifest))
        .route("/assets/{version}/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    let site = &*SITE;
    respond(
        &site.index,
        &headers,
        REVALIDATE,
        &[
            (header::CONTENT_SECURITY_POLICY, site.csp.clone()),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
        ],
    )
}

async fn service_worker(headers: HeaderMap) -> Response {
    respond(&SITE.service_worker, &headers, REVALIDATE, &[])
}

async fn manifest(headers: HeaderMap) -> Response {
    respond(&SITE.manifest, &headers, REVALIDATE, &[])
}

async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let site = &*SITE;
    let Some(asset) = site.assets.get(&path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    // A page from before an upgrade may still ask for its old version: it gets today's file,
    // which must not be cached under the old URL.
    let cache = if version == site.version {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    respond(asset, &headers, cache, &[])
}

fn respond(
    asset: &Asset,
    request: &HeaderMap,
    cache: &'static str,
    extra: &[(HeaderName, HeaderValue)],
) -> Response {
    let gzipped = asset.gzip.is_some() && accepts_gzip(request);
    let etag = asset.etag(gzipped);
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(tag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, tag);
    }
    if not_modified(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (name, value) in extra {
        headers.insert(name, value.clone());
    }
    let body = match (&asset.gzip, gzipped) {
        (Some(gz), true) => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz.clone()
        }
        _ => asset.body.clone(),
    };
    (headers, body).into_response()
}

/// Whether `Accept-Encoding` allows gzip (and does not refuse it with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Source maps are served (for a developer's tools) but never part of a load.
fn is_source_map(path: &str) -> bool {
    std::path::Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("map"))
}

fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/manifest+json")
        || content_type.starts_with("image/svg+xml")
}

fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 3), Compression::best());
    encoder.write_all(body).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The domain's permission matrix as `{"view_taps":"staff",…}`, for the page to hide what the
/// user's role may not do (the API refuses it anyway). Safe inside a `<script>` data block.
fn permissions_json() -> String {
    let matrix: serde_json::Map<String, serde_json::Value> = Action::ALL
        .into_iter()
        .filter_map(|action| {
            let key = serde_json::to_value(action).ok()?.as_str()?.to_owned();
            Some((key, serde_json::to_value(action.least_role()).ok()?))
        })
        .collect();
    serde_json::to_string(&matrix)
        .unwrap_or_else(|_| "{}".into())
        .replace("</", "<\\/")
}

/// The page's policy: scripts only from this origin plus the page's inline import maps (by
/// hash), no plugins, no framing, no foreign connections.
fn content_security_policy(page: &str) -> String {
    let hashes: Vec<String> = inline_scripts(page, "importmap")
        .into_iter()
        .map(|body| {
            let digest = Sha256::digest(body.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    format!(
        "default-src 'self'; script-src 'self' {}; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        hashes.join(" ")
    )
}

/// The bodies of `<script type="{kind}">…</script>` in `page`.
fn inline_scripts<'a>(page: &'a str, kind: &str) -> Vec<&'a str> {
    let open = format!("<script type=\"{kind}\">");
    let mut found = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find("</script>") else {
            break;
        };
        found.push(&after[..end]);
        rest = &after[end..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_chosen_by_accept_encoding() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=1.0, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn inline_import_maps_are_found_for_the_policy() {
        let page = r#"<script type="importmap">{"a":1}</script><script type="module" src="x.js"></script><script type="importmap">{"b":2}</script>"#;
        assert_eq!(
            inline_scripts(page, "importmap"),
            [r#"{"a":1}"#, r#"{"b":2}"#]
        );
        let csp = content_security_policy(page);
        assert_eq!(csp.matches("'sha256-").count(), 2);
        assert!(csp.contains("object-src 'none'"));
    }

    #[test]
    fn the_permission_matrix_is_the_domains() {
        let json: serde_json::Value = serde_json::from_str(&permissions_json()).unwrap();
        assert_eq!(json["view_taps"], "staff");
        assert_eq!(json["assign_beer_keg"], "manager");
        assert_eq!(json["manage_users"], "admin");
        assert_eq!(json.as_object().unwrap().len(), Action::ALL.len());
    }

    #[test]
    fn templates_are_filled_in() {
        let site = &*SITE;
        let index = std::str::from_utf8(&site.index.body).unwrap();
        assert!(!index.contains("{{"), "unfilled placeholder in index.html");
        assert!(index.contains(&format!("/assets/{}/", site.version)));
        let sw = std::str::from_utf8(&site.service_worker.body).unwrap();
        assert!(!sw.contains("{{"), "unfilled placeholder in sw.js");
        assert!(sw.contains(&site.version));
        let manifest: serde_json::Value =
            serde_json::from_slice(&site.manifest.body).expect("the manifest is JSON");
        assert_eq!(manifest["start_url"], "/");
        // Every module the page imports is served.
        for asset in index
            .split('"')
            .filter_map(|s| s.strip_prefix(&format!("/assets/{}/", site.version)))
        {
            assert!(site.assets.contains_key(asset), "{asset} is not embedded");
        }
    }

    /// Issue 6: the first load stays under 300 KB compressed. Everything the page can load is
    /// counted (the chart library too, which only the tap page loads).
    #[test]
    fn the_whole_app_is_under_the_first_load_budget() {
        let site = &*SITE;
        let sent = |a: &Asset| a.gzip.as_ref().map_or(a.body.len(), Bytes::len);
        let total: usize = site
            .assets
            .iter()
            .filter(|(path, _)| !is_source_map(path) && !path.starts_with("icons/"))
            .map(|(_, a)| sent(a))
            .sum::<usize>()
            + sent(&site.index)
            + sent(&site.manifest);
        assert!(
            total < 300 * 1024,
            "first load would be {total} bytes compressed"
        );
        assert!(total > 10 * 1024, "suspiciously small app: {total} bytes");
    }
}
