//! Command-line surface. Each subcommand lives in the library crate that owns its behaviour; this
//! module maps flags and `SCALESENSE_*` environment variables onto their typed configuration.

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Scale Sense — keg monitoring from load cell to dashboard.
///
/// Scales under every keg report their weight over MQTT; Scale Sense stores the readings,
/// shows every tap's level live and warns before a keg runs dry.
#[derive(Debug, Parser)]
#[command(name = "scalesense", version, about, long_about)]
pub struct Cli {
    /// Log line format on stderr. Filter with RUST_LOG (default: info,rmqtt=warn).
    #[arg(long, global = true, value_enum, env = "SCALESENSE_LOG_FORMAT", default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the MQTT contract version this build speaks and the topics it uses.
    Contract,
    /// Run a fleet of virtual scales against an MQTT broker: the real firmware core on
    /// simulated kegs, pours, batteries and Wi-Fi.
    Sim(scalesense_sim::cli::SimArgs),
    /// Run the bar gateway: durable store-and-forward from the bar's MQTT broker to the server,
    /// commands and OTA notices back to the scales, health on gw/status and /healthz.
    Gateway(scalesense_gateway::GatewayArgs),
    /// Run everything in one process: the embedded MQTT broker, a SQLite database in
    /// --data-dir, the server with its demo bar, and simulated scales.
    Up(scalesense_server::cli::UpArgs),
    /// Run one production server replica: PostgreSQL (or SQLite) and an external MQTT broker.
    Serve(scalesense_server::cli::ServeArgs),
    /// Operator commands on the database: create a dashboard user.
    Admin(scalesense_api::admin::AdminArgs),
    /// Benchmarks: measure the product against baselines in one run (build with --release).
    Bench(scalesense_bench::cli::BenchArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        let log_format = self.log_format;
        match self.command {
            None => {
                use clap::CommandFactory;
                Cli::command().print_help()?;
                Ok(())
            }
            Some(Command::Contract) => {
                use scalesense_proto::topic;
                println!(
                    "MQTT contract version {} (docs/contract.md)",
                    scalesense_proto::CONTRACT_VERSION
                );
                for (filter, what) in [
                    (topic::READINGS_FILTER, "scale → server: readings (QoS 1)"),
                    (
                        topic::STATUS_FILTER,
                        "scale → server: status and last will (QoS 1, retained)",
                    ),
                    (
                        topic::RESPONSE_FILTER,
                        "scale → server: command answers (QoS 1)",
                    ),
                    (
                        topic::COMMAND_FILTER,
                        "server → scale: commands (QoS 1, retained)",
                    ),
                    (topic::OTA_FILTER, "server → scale: firmware offers (QoS 1)"),
                    (
                        topic::GATEWAY_STATUS_FILTER,
                        "gateway → server: health (QoS 1, retained)",
                    ),
                    (
                        topic::GATEWAY_ACK_FILTER,
                        "server → gateway: commit confirmations (QoS 1)",
                    ),
                ] {
                    println!("  {filter:<18} {what}");
                }
                Ok(())
            }
            Some(Command::Gateway(args)) => {
                init_logging(log_format);
                scalesense_gateway::run(args).context("scalesense gateway")
            }
            Some(Command::Sim(args)) => {
                init_logging(log_format);
                let report = scalesense_sim::cli::run(&args).context("scalesense sim")?;
                anyhow::ensure!(report.failed == 0, "{} scale task(s) failed", report.failed);
                Ok(())
            }
            Some(Command::Up(args)) => {
                init_logging(log_format);
                scalesense_server::cli::up(&args, |report| println!("{report}"))?;
                Ok(())
            }
            Some(Command::Admin(args)) => {
                let report = scalesense_api::admin::run(&args).context("scalesense admin")?;
                println!("{report}");
                Ok(())
            }
            Some(Command::Bench(args)) => {
                init_logging(log_format);
                match &args.command {
                    scalesense_bench::cli::BenchCommand::Ingest(ingest) => {
                        let report = scalesense_bench::cli::ingest(ingest)
                            .context("scalesense bench ingest")?;
                        println!("{report}");
                    }
                }
                Ok(())
            }
            Some(Command::Serve(args)) => {
                init_logging(log_format);
                scalesense_server::cli::serve(&args)?;
                Ok(())
            }
        }
    }
}

/// Logs to stderr, `info` and up (the embedded broker's chatter from `warn`) unless `RUST_LOG`
/// says otherwise; a log line clears the simulator's progress line first. A subscriber
/// installed before (by a test, say) is kept.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmqtt=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(scalesense_sim::cli::log_writer);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
