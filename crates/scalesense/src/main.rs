//! The `scalesense` command: every deployment shape of Scale Sense (BRIEF §2) is a subcommand of
//! this one binary, so a bar owner installs one file. This file only parses the command line and
//! hands over to library code; nothing here is worth testing apart from the CLI surface itself.

use clap::Parser;

mod cli;

fn main() -> anyhow::Result<()> {
    // rustls (MQTT and PostgreSQL TLS) uses ring, never aws-lc-rs; it must be chosen before any
    // TLS configuration is built. An error means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    cli.run()
}
