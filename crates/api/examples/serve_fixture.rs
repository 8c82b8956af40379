//! Serves the API over the test fixture (`tests/support/fixture.rs`) for schemathesis and the
//! benchmark: `cargo run -p scalesense-api --example serve_fixture -- --port 0 --database PATH`
//! (a SQLite file, created; or `postgres://…`, where a fresh schema is created and dropped on
//! exit). Prints one JSON line with the port and an admin API token, then serves until
//! interrupted. The clock is fixed at the fixture's "now" so every run sees the same data.

// Shared with the tests, which read fields this example does not.
#[allow(dead_code)]
#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use scalesense_api::auth::password::PasswordCost;
use scalesense_api::{ApiConfig, ApiState, FixedClock, RecordingCommandSink};
use scalesense_store::{PgStore, SqliteStore, Store};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

struct Args {
    port: u16,
    database: String,
}

fn args() -> anyhow::Result<Args> {
    let mut port = 0;
    let mut database = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse().context("--port")?,
            "--database" => database = Some(value),
            other => bail!("unknown flag {other}; use --port N --database PATH|URL"),
        }
    }
    Ok(Args {
        port,
        database: database.context("--database is required")?,
    })
}

async fn open(url: &str) -> anyhow::Result<(Arc<dyn Store>, Option<(String, String)>)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let schema = format!("fixture_{}", std::process::id());
        let admin = PgPoolOptions::new().max_connections(1).connect(url).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&admin)
        .await?;
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let options = PgConnectOptions::from_str(url)?.options([("search_path", schema.as_str())]);
        let store = PgStore::connect_with(options, 16).await?;
        Ok((Arc::new(store), Some((url.to_owned(), schema))))
    } else {
        let path = std::path::Path::new(url);
        if path.exists() {
            bail!("{url} exists: the fixture needs a new database file");
        }
        Ok((Arc::new(SqliteStore::open(path).await?), None))
    }
}

async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let admin = PgPoolOptions::new().max_connections(1).connect(url).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&admin)
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let (store, schema) = open(&args.database).await?;
    let fx = fixture::seed(store.as_ref())
        .await
        .context("seeding the fixture")?;
    let config = ApiConfig {
        password_cost: PasswordCost::TEST_ONLY,
        ..ApiConfig::default()
    };
    let state = ApiState::new(
        store,
        Arc::new(FixedClock::new(fixture::T0)),
        Arc::new(RecordingCommandSink::default()),
        config,
    )?;
    // Exports land in a directory of this run's own; the link secret is the fixture's.
    let exports_dir =
        std::env::temp_dir().join(format!("scalesense-fixture-exports-{}", std::process::id()));
    std::fs::create_dir_all(&exports_dir).context("creating the exports directory")?;
    let exporter = scalesense_reports::Exporter::new(
        state.store.clone(),
        &exports_dir,
        scalesense_reports::LinkSigner::new(b"fixture: download link secret".to_vec()),
    );
    let state = state.with_exports(Arc::new(exporter));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    println!(
        "{}",
        serde_json::json!({"port": port, "admin_token": fx.admin_token, "account": fx.acme.as_str()})
    );
    let app = scalesense_api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = std::fs::remove_dir_all(&exports_dir);
    if let Some((url, schema)) = schema {
        drop_schema(&url, &schema).await?;
    }
    Ok(())
}
