//! The flags of `scalesense up` and `scalesense serve`, each with a `SCALESENSE_*` environment
//! variable and help text, and the entry points the binary calls. The binary stays a thin
//! parser: it flattens these argument structs into its command line and prints what these
//! functions report; everything else happens here and in [`crate::app`].

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use scalesense_alerts::{SmtpConfig, SmtpSecurity};

use crate::app::{self, AlertsSetup, AppError, ServeConfig};
#[cfg(feature = "embedded-broker")]
use crate::app::{DEFAULT_HTTP, DEFAULT_MQTT, ListenAddr, Up, UpConfig, UpReport};
use crate::subscriber::BrokerUrl;

/// How alert e-mails leave: an SMTP relay. Without `--smtp-host` no e-mail is sent (e-mail
/// channels' notifications fail visibly in the outbox); live dashboard alerts work regardless.
#[derive(Debug, Clone, clap::Args)]
pub struct AlertArgs {
    /// SMTP server for alert e-mails and digests.
    #[arg(long, env = "SCALESENSE_SMTP_HOST", value_name = "HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port. [default: 25 plain, 587 starttls, 465 tls]
    #[arg(long, env = "SCALESENSE_SMTP_PORT", value_name = "PORT")]
    pub smtp_port: Option<u16>,
    /// How the SMTP connection is secured: plain (a local relay only), starttls or tls.
    #[arg(
        long,
        env = "SCALESENSE_SMTP_SECURITY",
        value_enum,
        default_value = "starttls"
    )]
    pub smtp_security: SmtpMode,
    /// SMTP user name, when the relay needs a login.
    #[arg(long, env = "SCALESENSE_SMTP_USER", value_name = "USER")]
    pub smtp_user: Option<String>,
    /// SMTP password.
    #[arg(long, env = "SCALESENSE_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// The From: mailbox of alert e-mails.
    #[arg(
        long,
        env = "SCALESENSE_SMTP_FROM",
        default_value = "Scale Sense <alerts@scalesense.invalid>"
    )]
    pub smtp_from: String,
    /// The dashboard's public URL, for links in e-mails and webhooks. [default: the HTTP
    /// address]
    #[arg(long, env = "SCALESENSE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Directory for inventory exports (CSV/PDF, removed after 24 h) and the secret that signs
    /// their download links; enables the daily export e-mail. [default for `up`: its data
    /// directory; for `serve`: none, exports answer 503]
    #[arg(long, env = "SCALESENSE_REPORTS_DIR", value_name = "DIR")]
    pub reports_dir: Option<PathBuf>,
}

/// `--smtp-security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpMode {
    Plain,
    Starttls,
    Tls,
}

impl AlertArgs {
    pub fn setup(&self) -> AlertsSetup {
        AlertsSetup {
            smtp: self.smtp_host.as_ref().map(|host| SmtpConfig {
                host: host.clone(),
                port: self.smtp_port,
                security: match self.smtp_security {
                    SmtpMode::Plain => SmtpSecurity::Plain,
                    SmtpMode::Starttls => SmtpSecurity::StartTls,
                    SmtpMode::Tls => SmtpSecurity::Tls,
                },
                username: self.smtp_user.clone(),
                password: self.smtp_password.clone(),
                from: self.smtp_from.clone(),
                timeout: std::time::Duration::from_secs(30),
            }),
            dashboard_url: self.public_url.clone(),
            reports_dir: self.reports_dir.clone(),
        }
    }
}

/// `scalesense up`: everything in one process.
#[cfg(feature = "embedded-broker")]
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Directory for the SQLite database (created if missing).
    #[arg(long, env = "SCALESENSE_DATA_DIR", default_value = "./scalesense-data")]
    pub data_dir: PathBuf,
    /// Address for HTTP: dashboard, API, /metrics, /healthz. [default: 127.0.0.1:8080; when that
    /// port is taken a free one is picked and shown]
    #[arg(long, env = "SCALESENSE_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Address for the embedded MQTT broker. [default: 127.0.0.1:1883; when that port is taken
    /// a free one is picked and shown]
    #[arg(long, env = "SCALESENSE_MQTT", value_name = "ADDR")]
    pub mqtt: Option<SocketAddr>,
    /// Number of simulated scales, one per tap of the demo bar.
    #[arg(long, env = "SCALESENSE_SCALES", default_value_t = 12,
          value_parser = clap::value_parser!(u16).range(1..=999))]
    pub scales: u16,
    /// Simulated seconds per real second (60: one simulated minute per second).
    #[arg(long, env = "SCALESENSE_SPEED", default_value_t = 1.0)]
    pub speed: f64,
    /// Password of the demo admin (admin@demo.local) on first run; generated and printed once
    /// when not given.
    #[arg(long, env = "SCALESENSE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Seed of the simulated bar (same seed, same pours).
    #[arg(long, env = "SCALESENSE_SEED", default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub alerts: AlertArgs,
}

#[cfg(feature = "embedded-broker")]
impl UpArgs {
    pub fn config(&self) -> UpConfig {
        UpConfig {
            data_dir: self.data_dir.clone(),
            http: ListenAddr::or_default(self.http, DEFAULT_HTTP),
            mqtt: ListenAddr::or_default(self.mqtt, DEFAULT_MQTT),
            scales: self.scales,
            speed: self.speed,
            admin_password: self.admin_password.clone(),
            seed: self.seed,
            alerts: self.alerts.setup(),
        }
    }
}

/// `scalesense serve`: one production replica.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The database: `postgres://user@host/db` or a SQLite file path.
    #[arg(long, env = "SCALESENSE_DATABASE", value_name = "URL")]
    pub database: String,
    /// The MQTT broker the scales publish to: `mqtt://host:port`.
    #[arg(long, env = "SCALESENSE_BROKER", value_name = "URL")]
    pub broker: BrokerUrl,
    /// Address for HTTP: API, /metrics, /healthz, /readyz.
    #[arg(
        long,
        env = "SCALESENSE_HTTP",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http: SocketAddr,
    /// Split ingest with the other replicas of this group through MQTT shared subscriptions
    /// (`$share/NAME/…`).
    #[arg(long, env = "SCALESENSE_SHARED_GROUP", value_name = "NAME")]
    pub shared_group: Option<String>,
    /// This replica's name, unique per replica: its MQTT client id is
    /// `scalesense-server-NAME`, so the broker keeps its session across restarts.
    #[arg(
        long,
        env = "SCALESENSE_SERVER_NAME",
        value_name = "NAME",
        default_value = "main"
    )]
    pub name: String,
    #[command(flatten)]
    pub alerts: AlertArgs,
}

impl ServeArgs {
    pub fn config(&self) -> ServeConfig {
        ServeConfig {
            database: self.database.clone(),
            broker: self.broker.clone(),
            http: self.http,
            shared_group: self.shared_group.clone(),
            name: self.name.clone(),
            alerts: self.alerts.setup(),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Task(format!("cannot start the async runtime: {e}")))
}

/// Runs `scalesense up` until SIGINT/SIGTERM; `started` is told what runs once it does.
#[cfg(feature = "embedded-broker")]
pub fn up(args: &UpArgs, started: impl FnOnce(&UpReport)) -> Result<(), AppError> {
    runtime()?.block_on(async {
        let token = CancellationToken::new();
        app::run_until_signal(token.clone(), async {
            let up = Up::start(args.config(), token.clone()).await?;
            started(up.report());
            up.wait().await
        })
        .await
    })
}

/// Runs `scalesense serve` until SIGINT/SIGTERM.
pub fn serve(args: &ServeArgs) -> Result<(), AppError> {
    runtime()?.block_on(async {
        let token = CancellationToken::new();
        app::run_until_signal(token.clone(), app::serve(args.config(), token.clone())).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        #[cfg(feature = "embedded-broker")]
        Up(UpArgs),
        Serve(ServeArgs),
    }

    #[test]
    #[cfg(feature = "embedded-broker")]
    fn up_ports_are_explicit_only_when_given() {
        let Sub::Up(args) = Probe::parse_from(["x", "up", "--mqtt", "127.0.0.1:1999"]).command
        else {
            panic!("not up")
        };
        let config = args.config();
        assert_eq!(config.mqtt.addr, "127.0.0.1:1999".parse().unwrap());
        assert!(config.mqtt.explicit);
        assert_eq!(config.http.addr, DEFAULT_HTTP);
        assert!(!config.http.explicit);
        assert_eq!(config.scales, 12);
        assert!(Probe::try_parse_from(["x", "up", "--scales", "0"]).is_err());
    }

    #[test]
    fn serve_parses_the_broker_url() {
        let Sub::Serve(args) = Probe::parse_from([
            "x",
            "serve",
            "--database",
            "/tmp/x.db",
            "--broker",
            "mqtt://127.0.0.1:1884",
            "--shared-group",
            "g",
        ])
        .command
        else {
            panic!("not serve")
        };
        let config = args.config();
        assert_eq!(config.broker.port, 1884);
        assert_eq!(config.shared_group.as_deref(), Some("g"));
        assert_eq!(config.name, "main");
        assert!(
            Probe::try_parse_from(["x", "serve", "--database", "d", "--broker", "http://x"])
                .is_err()
        );
    }
}
