//! Command-line surface. Each subcommand lives in the library crate that owns its behaviour; this
//! module maps flags and `SCALESENSE_*` environment variables onto their typed configuration.

use clap::{Parser, Subcommand};

/// Scale Sense — keg monitoring from load cell to dashboard.
///
/// Scales under every keg report their weight over MQTT; Scale Sense stores the readings,
/// shows every tap's level live and warns before a keg runs dry.
#[derive(Debug, Parser)]
#[command(name = "scalesense", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the MQTT contract version this build speaks and the topics it uses.
    Contract,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            None => {
                use clap::CommandFactory;
                Cli::command().print_help()?;
                Ok(())
            }
            Some(Command::Contract) => {
                println!("contract version: 1");
                Ok(())
            }
        }
    }
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
