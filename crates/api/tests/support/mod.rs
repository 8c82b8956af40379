//! Test harness: the API router over a real store (a SQLite file in a temp dir, or a fresh
//! PostgreSQL schema from `SCALESENSE_TEST_PG`, dropped afterwards even on panic), seeded with
//! [`fixture`], a fixed clock and a recording command sink; requests go through
//! `tower::ServiceExt::oneshot`.
//!
//! Without `SCALESENSE_TEST_PG` the PostgreSQL tests print why they were skipped and pass —
//! except under `CI=true`, where they fail so CI can never silently skip a backend.
#![allow(dead_code, clippy::unwrap_used)]

pub mod fixture;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use scalesense_api::auth::password::PasswordCost;
use scalesense_api::auth::{CSRF_HEADER, SESSION_COOKIE, secrets};
use scalesense_api::{ApiConfig, ApiState, FixedClock, RecordingCommandSink};
use scalesense_store::{
    AccountId, NewApiToken, NewSession, PgStore, RecordId, Role, SqliteStore, Store, UserId,
};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use tower::ServiceExt;

use fixture::{Fixture, T0};

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// A session cookie, with the CSRF token sent on writes when `Some`.
    Cookie {
        token: String,
        csrf: Option<String>,
    },
    Bearer(String),
}

impl Auth {
    /// The same session without the CSRF header.
    pub fn without_csrf(&self) -> Self {
        match self {
            Self::Cookie { token, .. } => Self::Cookie {
                token: token.clone(),
                csrf: None,
            },
            other => other.clone(),
        }
    }
}

/// An answer: status, headers and the body as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The field names of a validation problem.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

enum Cleanup {
    Dir(tempfile::TempDir),
    Schema { url: String, schema: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Self::Schema { url, schema } = self {
            let url = url.clone();
            let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
            // Drop cannot await; a short-lived runtime on its own thread does the cleanup.
            let cleanup = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await;
                    }
                });
            });
            let _ = cleanup.join();
        }
    }
}

pub struct Harness {
    pub state: ApiState,
    pub router: Router,
    pub clock: Arc<FixedClock>,
    pub sink: Arc<RecordingCommandSink>,
    pub fx: Fixture,
    pub store: Arc<dyn Store>,
    /// Where inventory exports are written (issue 9).
    pub exports_dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The settings tests run with: cheap password hashing, plain-HTTP cookies.
pub fn test_config() -> ApiConfig {
    ApiConfig {
        password_cost: PasswordCost::TEST_ONLY,
        ..ApiConfig::default()
    }
}

impl Harness {
    async fn build(store: Arc<dyn Store>, cleanup: Cleanup, config: ApiConfig) -> Self {
        let fx = fixture::seed(store.as_ref()).await.unwrap();
        let clock = Arc::new(FixedClock::new(T0));
        let sink = Arc::new(RecordingCommandSink::default());
        let exports_dir = tempfile::tempdir().unwrap();
        let exporter = scalesense_reports::Exporter::new(
            store.clone(),
            exports_dir.path(),
            scalesense_reports::LinkSigner::new(b"api tests: download link secret".to_vec()),
        );
        let state = ApiState::new(store.clone(), clock.clone(), sink.clone(), config)
            .unwrap()
            .with_exports(Arc::new(exporter));
        Self {
            router: scalesense_api::router(state.clone()),
            state,
            clock,
            sink,
            fx,
            store,
            exports_dir,
            _cleanup: cleanup,
        }
    }

    pub async fn sqlite() -> Self {
        Self::sqlite_with(test_config()).await
    }

    pub async fn sqlite_with(config: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("api.db")).await.unwrap();
        Self::build(Arc::new(store), Cleanup::Dir(dir), config).await
    }

    /// A PostgreSQL harness in a fresh schema, or `None` (printed) outside CI when PostgreSQL
    /// is not configured.
    pub async fn postgres() -> Option<Self> {
        let Ok(url) = std::env::var("SCALESENSE_TEST_PG") else {
            assert!(
                !ci(),
                "CI=true but SCALESENSE_TEST_PG is not set: the API's PostgreSQL tests must run"
            );
            println!("skipped: SCALESENSE_TEST_PG not set");
            return None;
        };
        let admin = match PgPoolOptions::new().max_connections(1).connect(&url).await {
            Ok(pool) => pool,
            Err(e) => {
                assert!(!ci(), "CI=true and PostgreSQL is unreachable: {e}");
                println!("skipped: PostgreSQL at SCALESENSE_TEST_PG is unreachable: {e}");
                return None;
            }
        };
        let schema = unique_schema();
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let cleanup = Cleanup::Schema {
            url: url.clone(),
            schema: schema.clone(),
        };
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let store = PgStore::connect_with(options, 4).await.unwrap();
        Some(Self::build(Arc::new(store), cleanup, test_config()).await)
    }

    /// Sends a request; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.call_raw(method, path, auth, bytes, "application/json", &[])
            .await
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Answer {
        self.call(Method::GET, path, auth, None).await
    }

    /// Sends a request with a raw body and extra headers.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Vec<u8>>,
        content_type: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        match auth {
            Auth::None => {}
            Auth::Cookie { token, csrf } => {
                req = req.header(header::COOKIE, format!("{SESSION_COOKIE}={token}"));
                if let Some(csrf) = csrf {
                    req = req.header(CSRF_HEADER, csrf);
                }
            }
            Auth::Bearer(token) => {
                req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, content_type);
        }
        for (name, value) in extra {
            req = req.header(*name, *value);
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            raw,
        }
    }

    /// A fresh session for a user, straight in the store (no password hashing).
    pub async fn session(&self, account: &AccountId, user: &str) -> Auth {
        let token = secrets::new_session_token();
        self.store
            .create_session(
                account,
                &NewSession {
                    token_hash: secrets::token_hash(&token),
                    user_id: UserId::try_from(user).unwrap(),
                    created_at: self.clock_now(),
                    expires_at: self.clock_now() + 12 * 3_600_000,
                },
            )
            .await
            .unwrap();
        Auth::Cookie {
            csrf: Some(secrets::csrf_token(&token)),
            token,
        }
    }

    /// A session that expired an hour ago.
    pub async fn expired_session(&self, account: &AccountId, user: &str) -> Auth {
        let token = secrets::new_session_token();
        self.store
            .create_session(
                account,
                &NewSession {
                    token_hash: secrets::token_hash(&token),
                    user_id: UserId::try_from(user).unwrap(),
                    created_at: self.clock_now() - 13 * 3_600_000,
                    expires_at: self.clock_now() - 3_600_000,
                },
            )
            .await
            .unwrap();
        Auth::Cookie {
            csrf: Some(secrets::csrf_token(&token)),
            token,
        }
    }

    /// A fresh API token with `role`; revoked at once when `revoked`.
    pub async fn token(&self, account: &AccountId, role: Role, revoked: bool) -> Auth {
        let secret = secrets::new_api_token();
        let id = RecordId::try_from(format!("tok-{}", secrets::random_suffix(6)).as_str()).unwrap();
        self.store
            .create_api_token(
                account,
                &NewApiToken {
                    id: id.clone(),
                    token_hash: secrets::token_hash(&secret),
                    name: "test".into(),
                    role,
                    created_at: self.clock_now(),
                },
            )
            .await
            .unwrap();
        if revoked {
            self.store
                .revoke_api_token(account, &id, self.clock_now())
                .await
                .unwrap();
        }
        Auth::Bearer(secret)
    }

    pub fn clock_now(&self) -> i64 {
        use scalesense_api::Clock;
        self.clock.now_ms()
    }

    pub async fn staff(&self) -> Auth {
        self.session(&self.fx.acme, "usr-staff").await
    }

    pub async fn manager(&self) -> Auth {
        self.session(&self.fx.acme, "usr-manager").await
    }

    pub async fn admin(&self) -> Auth {
        self.session(&self.fx.acme, "usr-admin").await
    }

    pub async fn other_admin(&self) -> Auth {
        self.session(&self.fx.other, "usr-other-admin").await
    }
}

fn unique_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "api_{:x}_{:x}_{n}",
        nanos & 0xffff_ffff_ffff,
        std::process::id()
    )
}

/// Instantiates each test for SQLite and PostgreSQL (`pg_*`).
#[macro_export]
macro_rules! both_backends {
    ($($test:ident => $sqlite:ident, $pg:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $sqlite() {
                let h = support::Harness::sqlite().await;
                $test(&h).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $pg() {
                if let Some(h) = support::Harness::postgres().await {
                    $test(&h).await;
                }
            }
        )*
    };
}
